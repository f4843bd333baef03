"""The CUDA path: on MLX's CUDA backend (mlx[cuda13] on Linux), the call goes
to longattn's own CUDA kernels, reading and writing the MLX arrays in place.

MLX's CUDA backend allocates every array in CUDA managed memory and exports
it through DLPack as host memory. Managed memory is a device address too, so
the arrays are handed to the CUDA backend tagged as such
(longattn._arrays.mlx_arrays_on_cuda; the native module checks with
cudaPointerGetAttributes that each one really is managed memory and refuses
it otherwise). The call then runs at the CUDA kernels' speed under the
budget, with the CUDA backend's profile and planner, where the operations
path would run MLX's generic operations.

Ordering: the inputs are evaluated before the call (mx.eval waits for
them), the outputs are fresh evaluated arrays, and the call runs on CUDA's
legacy default stream, which is waited for before returning, so MLX's
later work on its own streams sees the finished results.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import mlx.core as mx

from .. import _api, _arrays, _core
from . import _native


def available(device: mx.Device) -> bool:
    """Whether calls on `device` can run on longattn's CUDA kernels: an MLX
    GPU device of MLX's CUDA backend, and a longattn built with CUDA."""
    cuda = getattr(mx, "cuda", None)  # MLX releases before its CUDA backend have none
    return (device.type == mx.gpu and cuda is not None and cuda.is_available()
            and _api.cuda_built())


def run(q: mx.array, k: mx.array, v: mx.array, mask: Optional[mx.array],
        sinks: Optional[mx.array], stream: mx.Stream, options: Any, want_lse: bool, progress,
        want_report: bool) -> Tuple[mx.array, Optional[mx.array], Any]:
    """(O, LSE or None, the report or None) from longattn's CUDA backend:
    _native.run with MLX's arrays passed as managed memory."""
    try:
        with _arrays.mlx_arrays_on_cuda():
            return _native.run(q, k, v, mask, sinks, stream, options, want_lse, progress,
                               want_report)
    finally:
        # A call without chunking only enqueues its kernels; a stopped one
        # may leave some in flight. Either way MLX must not read out early.
        _core._synchronize_stream(_native.CUDA_STREAM)
