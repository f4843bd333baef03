"""The native path: on MLX's CPU device, the call goes to longattn's C++ CPU
backend, reading the evaluated MLX arrays in place (on MLX's CUDA backend,
_cuda.py runs the same code with the arrays passed as CUDA memory).

The inputs reach the native module as they are: longattn._arrays.native()
exports an MLX array through DLPack as host memory (MLX's default export on
a Mac is a Metal buffer; the memory is the same, shared with the CPU), so
q, k, v and the mask are read where they are, with their strides, bfloat16
included (NumPy cannot hold bfloat16 without ml_dtypes; DLPack can). Only
sinks of another dtype than float32 (Hq values) are converted.

The output. MLX arrays are immutable to MLX code, but an evaluated array is
plain memory: the cheapest correct output is a new array, evaluated so that
its buffer exists, which the C++ backend then writes through DLPack. Nothing
else refers to that buffer (a fresh array shares it with no other array,
and MLX only reuses the buffers of arrays it is done with), so the write is
seen by everything that reads the returned array. MLX has no uninitialized
allocation, so the buffer is zero-filled first: one pass of writes over the
output. The alternative, a NumPy array written by the C++ backend and then
copied into MLX (mx.array copies), adds a read and a write pass and needs
ml_dtypes for bfloat16. Measured (2-core AMD EPYC, MLX 0.32.4, a float32
[1, 32, 4096, 128] output of 64 MiB over 16 keys, median of 20): the
attention into a buffer already used 18.5 ms; into a new zero-filled MLX
array 47-51 ms; into NumPy and copied 53-64 ms (interleaved on a busy
machine: 84 against 86 ms). Touching fresh pages costs most of both; the
MLX array was never the slower.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import mlx.core as mx

from .. import _api, _arrays


# The CUDA stream of the C++ call: CUDA's legacy default stream (the CPU
# backend has none; _cuda.py waits for it).
CUDA_STREAM = 0


def run(q: mx.array, k: mx.array, v: mx.array, mask: Optional[mx.array],
        sinks: Optional[mx.array], stream: mx.Stream, options: Any, want_lse: bool, progress,
        want_report: bool) -> Tuple[mx.array, Optional[mx.array], Any]:
    """(O, LSE or None, the report or None) from longattn's C++ backend.
    `options`: the checked native options (longattn._api._native_options),
    which carry the causal flag, the scale and the policy. A run stopped part
    way raises with .out and .lse set to these arrays (_api._run)."""
    B, Hq, Lq = q.shape[:3]
    # New arrays the C++ backend may write in place (see the module note).
    out = _arrays.MLX.new((B, Hq, Lq, v.shape[3]), q.dtype, stream)
    lse = _arrays.MLX.new((B, Hq, Lq), mx.float32, stream) if want_lse else None
    rep = _api._run(q, k, v, out, lse, mask, sinks, options, CUDA_STREAM, progress, want_report)
    return out, lse, rep
