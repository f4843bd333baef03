"""Framework glue: which framework the caller's arrays come from, how to
allocate outputs in it and which CUDA stream a call on its arrays runs on,
and the framework's rules for reading an array (native()).

The native module reads any array in place (NumPy arrays and torch tensors
directly, others through DLPack or the buffer protocol; python/src/views.hpp)
and makes the arrays' CUDA device current for the call; what it cannot do is
create arrays of the caller's framework. That happens here, through the
framework itself (``torch.empty``, ``numpy.empty``, an array-API namespace's
``empty``), so results come back as the caller's own type on the caller's
device. Nothing here copies an array, and no framework is imported that the
caller has not imported already (torch and mlx.core are looked up in
sys.modules, never imported).
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from typing import Any, Optional, Sequence

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
    """Allocation in one framework."""

    name = "?"

    def empty(self, shape: Shape, like: Any, float32: bool = False) -> Any:
        """An uninitialized array of `like`'s dtype (or float32), on its device."""
        raise NotImplementedError


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


class _MLX(Framework):
    """MLX arrays. MLX has no uninitialized allocation: an output is a new
    zero-filled array, evaluated so that its memory exists, which the native
    module then writes through DLPack (native() below). Nothing else refers
    to a fresh array's buffer, so writing it in place is safe; the zero fill
    is one pass of writes over the output, cheaper than filling a NumPy
    array and copying it into MLX (python/longattn/mlx/_native.py measures
    both)."""

    name = "mlx"

    def empty(self, shape, like, float32=False):
        mx = sys.modules["mlx.core"]
        return self.new(shape, mx.float32 if float32 else like.dtype)

    @staticmethod
    def new(shape, dtype, stream=None):
        """A new evaluated array of `dtype` (on `stream`, else MLX's default)."""
        mx = sys.modules["mlx.core"]
        a = mx.zeros(tuple(shape), dtype=dtype, stream=stream)
        mx.eval(a)
        return a


NUMPY = _NumPy()
TORCH = _Torch()
MLX = _MLX()


# Set while longattn.mlx routes a call on MLX's CUDA backend to longattn's CUDA
# kernels (mlx/_cuda.py): MLX arrays are then passed as CUDA managed memory.
_MLX_ON_CUDA: contextvars.ContextVar[bool] = contextvars.ContextVar("mlx_on_cuda", default=False)


@contextlib.contextmanager
def mlx_arrays_on_cuda():
    """Within: MLX arrays are read by the CUDA backend (see native())."""
    token = _MLX_ON_CUDA.set(True)
    try:
        yield
    finally:
        _MLX_ON_CUDA.reset(token)


def _mlx_array_type():
    mlx = sys.modules.get("mlx.core")
    return None if mlx is None else mlx.array


def framework_of(x: Any) -> Framework:
    """The framework whose arrays a call on `x` returns."""
    torch = _torch_module()
    if torch is not None and isinstance(x, torch.Tensor):
        return TORCH
    np = sys.modules.get("numpy")
    if np is not None and isinstance(x, np.ndarray):
        return NUMPY
    mlx_array = _mlx_array_type()
    if mlx_array is not None and isinstance(x, mlx_array):
        return MLX  # before the array API: MLX arrays have no .device
    namespace = getattr(x, "__array_namespace__", None)
    if namespace is not None:
        return _ArrayApi(namespace())
    return NUMPY  # buffer-protocol objects (memoryview, array.array, ...)


def native(op: str, name: str, x: Any) -> Any:
    """`x` as the native module takes it, still the same memory. The native
    module calls this for each array its fast readers did not take (anything
    but a plain NumPy array or torch tensor it can describe exactly), before
    importing it through DLPack or the buffer protocol.

    - A torch tensor that requires grad: longattn has no backward, so under
      autograd that is refused (the result would silently carry no
      gradient); under torch.no_grad() its detached view is passed (torch
      exports no tensor that requires grad).
    - A torch tensor with the negative bit set (torch's lazy negation: the
      .imag of a conjugated view, torch._neg_view) is refused: its memory
      holds the values negated, and DLPack would export it as if it did not.
    - A NumPy array of ml_dtypes.bfloat16, which has no DLPack or buffer
      export: its bits as a uint16 view, tagged (view, "bfloat16").
    - An MLX array: its DLPack export as host memory. MLX exports as a
      Metal buffer by default wherever Metal is present, but its arrays live
      in memory the CPU shares, and the CPU backend reads and writes them
      there. Exporting evaluates the array. Within mlx_arrays_on_cuda()
      (MLX's CUDA backend, whose arrays are CUDA managed memory that MLX
      exports as host memory), the export is tagged "cuda_managed": the
      native module checks that the memory is managed and hands it to the
      CUDA backend.
    """
    torch = _torch_module()
    if torch is not None and isinstance(x, torch.Tensor):
        if x.is_neg():
            raise InvalidArgument(
                f"[{op}] {name} has the negative bit set (a lazily negated view, such as "
                f"the .imag of a conjugated tensor): its memory holds -{name}, which longattn "
                f"cannot read in place; pass {name}.resolve_neg() (a copy)"
            )
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
    mlx_array = _mlx_array_type()
    if mlx_array is not None and isinstance(x, mlx_array):
        if _MLX_ON_CUDA.get():
            kind = x.__dlpack_device__()[0]
            if kind in (2, 13):  # kDLCUDA, kDLCUDAManaged: nothing to say
                return x
            return (x.__dlpack__(dl_device=(1, 0)), "cuda_managed")
        return x.__dlpack__(dl_device=(1, 0))  # DLPack's kDLCPU
    return x


def _torch_current_stream(device: int) -> int:
    """torch.cuda.current_stream(device).cuda_stream, without making the
    Stream object (microseconds a call): torch._C._cuda_getCurrentRawStream
    is that value (torch.compile's generated code reads it so); the public
    route where a torch lacks it."""
    torch = _torch_module()
    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    if raw is not None:
        return raw(device)
    return torch.cuda.current_stream(device).cuda_stream


def default_stream(like: Any) -> int:
    """The CUDA stream a call on `like` runs on when none is given: torch's
    current stream on the tensor's device for a torch CUDA tensor, else 0
    (the legacy default stream; unused by calls on the CPU)."""
    torch = _torch_module()
    if torch is not None and isinstance(like, torch.Tensor) and like.is_cuda:
        return _torch_current_stream(like.get_device())
    return 0


def stream_handle(op: str, stream: Any, like: Any) -> int:
    """The cudaStream_t of `stream` as an int (0: the legacy default stream).

    stream: None (default_stream(like): torch's current stream for torch
    tensors), an int handle, or an object with .cuda_stream
    (torch.cuda.Stream), __cuda_stream__() (the CUDA stream protocol) or
    .ptr (cupy).
    """
    if stream is None:
        return default_stream(like)
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
