"""Framework glue: which framework the caller's arrays come from, and how to
allocate outputs, pick the CUDA device and stream in that framework.

The native module reads any array in place through DLPack or the buffer
protocol; what it cannot do is create arrays of the caller's framework. That
happens here, through the framework itself (``torch.empty``, ``numpy.empty``,
an array-API namespace's ``empty``), so results come back as the caller's own
type on the caller's device. Nothing here copies an array, and no framework
is imported that the caller has not imported already (torch is looked up in
sys.modules, never imported).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, ContextManager, Optional, Sequence

from ._errors import InvalidArgument, Unsupported

Shape = Sequence[int]


def _numpy():
    try:
        import numpy
    except ImportError as e:  # pragma: no cover - numpy is in every test setup
        raise Unsupported(
            "[longattn] results for arrays that are neither PyTorch tensors nor "
            "array-API arrays are NumPy arrays, and NumPy is not installed"
        ) from e
    return numpy


def _torch_module():
    return sys.modules.get("torch")


class Framework:
    """Allocation, device and stream for one framework's arrays."""

    name = "?"

    def empty(self, shape: Shape, like: Any, float32: bool = False) -> Any:
        """An uninitialized array of `like`'s dtype (or float32), on its device."""
        raise NotImplementedError

    def device_scope(self, like: Any) -> ContextManager[Any]:
        """Makes `like`'s CUDA device current around the native call."""
        return contextlib.nullcontext()

    def default_stream(self, like: Any) -> int:
        """The CUDA stream a call on `like` runs on when none is given."""
        return 0


class _NumPy(Framework):
    name = "numpy"

    def empty(self, shape, like, float32=False):
        np = _numpy()
        dtype = np.float32 if float32 else getattr(like, "dtype", None)
        if dtype is None:  # a buffer-protocol object: its format as NumPy reads it
            dtype = np.asarray(like).dtype
        return np.empty(tuple(shape), dtype=dtype)


class _Torch(Framework):
    name = "torch"

    def empty(self, shape, like, float32=False):
        torch = _torch_module()
        return torch.empty(
            tuple(shape), dtype=torch.float32 if float32 else like.dtype, device=like.device
        )

    def device_scope(self, like):
        # torch exports a CUDA tensor through DLPack only while its device is
        # the current one, and the CUDA backend runs on the current device.
        if like.is_cuda:
            torch = _torch_module()
            if like.device.index != torch.cuda.current_device():
                return torch.cuda.device(like.device)
        return contextlib.nullcontext()

    def default_stream(self, like):
        if like.is_cuda:
            return _torch_module().cuda.current_stream(like.device).cuda_stream
        return 0


class _ArrayApi(Framework):
    """Arrays with __array_namespace__ (CuPy, JAX, NumPy >= 2 subclasses...).

    Outputs come from the namespace's ``empty``. Their CUDA arrays run on the
    legacy default stream unless ``stream=`` names another.
    """

    name = "array-api"

    def __init__(self, xp: Any):
        self.xp = xp

    def empty(self, shape, like, float32=False):
        dtype = self.xp.float32 if float32 else like.dtype
        return self.xp.empty(tuple(shape), dtype=dtype, device=like.device)


NUMPY = _NumPy()
TORCH = _Torch()


def framework_of(x: Any) -> Framework:
    """The framework whose arrays a call on `x` returns."""
    torch = _torch_module()
    if torch is not None and isinstance(x, torch.Tensor):
        return TORCH
    np = sys.modules.get("numpy")
    if np is not None and isinstance(x, np.ndarray):
        return NUMPY
    namespace = getattr(x, "__array_namespace__", None)
    if namespace is not None:
        return _ArrayApi(namespace())
    return NUMPY  # buffer-protocol objects (memoryview, array.array, ...)


def native(op: str, name: str, x: Any) -> Any:
    """`x` as the native module takes it, still the same memory.

    - A torch tensor that requires grad: longattn has no backward, so under
      autograd that is refused (the result would silently carry no
      gradient); under torch.no_grad() its detached view is passed (torch
      exports no tensor that requires grad).
    - A NumPy array of ml_dtypes.bfloat16, which has no DLPack or buffer
      export: its bits as a uint16 view, tagged (view, "bfloat16").
    """
    if x is None:
        return None
    torch = _torch_module()
    if torch is not None and isinstance(x, torch.Tensor):
        if x.requires_grad:
            if torch.is_grad_enabled():
                raise Unsupported(
                    f"[{op}] {name} requires grad: longattn has no backward; call it "
                    f"under torch.no_grad() (or pass {name}.detach())"
                )
            return x.detach()
        return x
    dtype = getattr(x, "dtype", None)
    if dtype is not None and getattr(dtype, "name", None) == "bfloat16":
        np = sys.modules.get("numpy")
        if np is not None and isinstance(x, np.ndarray):
            return (x.view(np.uint16), "bfloat16")
    return x


def stream_handle(op: str, stream: Any, framework: Framework, like: Any) -> int:
    """The cudaStream_t of `stream` as an int (0: the legacy default stream).

    stream: None (the framework's current stream: torch's for torch tensors),
    an int handle, or an object with .cuda_stream (torch.cuda.Stream),
    __cuda_stream__() (the CUDA stream protocol) or .ptr (cupy).
    """
    if stream is None:
        return framework.default_stream(like)
    handle: Optional[Any] = stream
    if not isinstance(stream, int):
        handle = getattr(stream, "cuda_stream", None)
        if handle is None and hasattr(stream, "__cuda_stream__"):
            handle = stream.__cuda_stream__()[1]
        if handle is None:
            handle = getattr(stream, "ptr", None)
    if isinstance(handle, bool) or not isinstance(handle, int) or handle < 0:
        raise InvalidArgument(
            f"[{op}] stream = {stream!r} must be a CUDA stream: an int handle "
            "(cudaStream_t) or an object with .cuda_stream"
        )
    return handle
