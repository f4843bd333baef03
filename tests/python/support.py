"""Test support: an independent float64 attention in NumPy (shares no code with
the library), the one output metric and tolerance table of the C++ tests
(tests/reference/metric.hpp), and input makers for NumPy and PyTorch.

Every array a test checks goes through `check()`; the reference sees the
inputs already rounded to the dtype under test, so what remains is the
library's float32 accumulation and the rounding of O to its dtype.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any, Optional, Tuple

import numpy as np

try:
    import ml_dtypes

    BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - the test stage installs it
    ml_dtypes = None
    BF16 = None

import pytest

try:
    import torch
except ImportError:  # pragma: no cover - the test stage installs it
    torch = None

requires_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")
requires_cuda = pytest.mark.skipif(
    torch is None or not torch.cuda.is_available(),
    reason="needs torch with a CUDA GPU (none on this machine)",
)

# ---- the tolerance table (mirrors tests/reference/metric.cpp) -----------------

# Output metric: max |got - want| / scale(row), scale(row) = max(floor,
# max |want| over the row's finite entries); rows are the last dim (Dv).
# float32's entry widens past 10K keys: max(1e-5, 1e-7 * sqrt(keys)).
TOLERANCE = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}
SCALE_FLOOR = 1e-4
# LSE is float32 whatever the dtype: |got - want| / max(1, |want|).
LSE_TOLERANCE = 2e-5

DTYPES = ("float32", "float16", "bfloat16")


# ---- the float64 reference ----------------------------------------------------


def reference(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    *,
    causal: Any = False,
    mask: Optional[np.ndarray] = None,
    scale: Optional[float] = None,
    sinks: Optional[np.ndarray] = None,
    softcap: Optional[float] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Attention over float64 [B, H, L, D] arrays, straight from the
    definition: (O [B, Hq, Lq, Dv], LSE [B, Hq, Lq]). causal: False, True or
    'bottom_right' (query i sees keys j <= i + Lk - Lq), 'top_left' (j <= i).
    A row that sees no key has O = 0, LSE = -inf (with sinks: LSE = sink).
    softcap: each logit s becomes softcap * tanh(s / softcap), before the mask."""
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    B, Hq, Lq, D = q.shape
    Hkv, Lk = k.shape[1], k.shape[2]
    group = Hq // Hkv
    k = np.repeat(k, group, axis=1)
    v = np.repeat(v, group, axis=1)
    if scale is None:
        scale = 1.0 / math.sqrt(D)
    s = np.einsum("bhqd,bhkd->bhqk", q, k) * scale
    if softcap:
        s = softcap * np.tanh(s / softcap)
    keep = np.ones((B, Hq, Lq, Lk), dtype=bool)
    if causal:
        i = np.arange(Lq)[:, None]
        j = np.arange(Lk)[None, :]
        keep &= j <= i + (0 if causal == "top_left" else Lk - Lq)
    if mask is not None:
        m = np.asarray(mask)
        m = m.reshape((1,) * (4 - m.ndim) + m.shape)
        if m.dtype == bool:
            keep &= np.broadcast_to(m, keep.shape)
        else:
            s = s + np.broadcast_to(np.asarray(m, dtype=np.float64), s.shape)
    s = np.where(keep, s, -np.inf)
    row_max = s.max(axis=-1, initial=-np.inf)
    if sinks is not None:
        sink = np.asarray(sinks, dtype=np.float64)[None, :, None]
        row_max = np.maximum(row_max, np.broadcast_to(sink, row_max.shape))
    safe_max = np.where(np.isfinite(row_max), row_max, 0.0)
    p = np.exp(s - safe_max[..., None])  # exp(-inf) = 0 for hidden keys
    denom = p.sum(axis=-1)
    if sinks is not None:
        denom = denom + np.exp(sink - safe_max)
    with np.errstate(invalid="ignore", divide="ignore"):
        o = np.einsum("bhqk,bhkd->bhqd", p, v) / denom[..., None]
        lse = safe_max + np.log(denom)
    empty = denom == 0
    o[empty] = 0.0
    lse[empty] = -np.inf
    return o, lse


# ---- the metric ---------------------------------------------------------------


def as_float64(x: Any) -> np.ndarray:
    """Any array the tests get back (NumPy incl. bfloat16, torch, MLX) as float64."""
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    if type(x).__module__ == "mlx.core":
        import mlx.core as mx  # reached only with MLX arrays

        x = x.astype(mx.float32)  # MLX's bfloat16 has no buffer format
    return np.asarray(x).astype(np.float64)


def output_error(got: Any, want: np.ndarray) -> float:
    """The C++ tests' output metric (ref::metric with row = Dv)."""
    g = as_float64(got)
    assert g.shape == want.shape, (g.shape, want.shape)
    finite = np.isfinite(want)
    scale = np.maximum(SCALE_FLOOR, np.where(finite, np.abs(want), 0).max(axis=-1, keepdims=True))
    with np.errstate(invalid="ignore"):
        err = np.where(finite, np.abs(g - want) / scale, 0.0)
    err = np.where(np.isnan(err), np.inf, err)
    mismatch = ~finite & ~((np.isnan(want) & np.isnan(g)) | (g == want))
    return float(np.inf if mismatch.any() else err.max(initial=0.0))


def lse_error(got: Any, want: np.ndarray) -> float:
    g = as_float64(got)
    assert g.shape == want.shape, (g.shape, want.shape)
    finite = np.isfinite(want)
    with np.errstate(invalid="ignore"):
        err = np.where(finite, np.abs(g - want) / np.maximum(1.0, np.abs(want)), 0.0)
    err = np.where(np.isnan(err), np.inf, err)
    mismatch = ~finite & ~((np.isnan(want) & np.isnan(g)) | (g == want))
    return float(np.inf if mismatch.any() else err.max(initial=0.0))


def tolerance(dtype: str, keys: int = 0) -> float:
    if dtype == "float32":
        return max(TOLERANCE[dtype], 1e-7 * math.sqrt(max(0, keys)))
    return TOLERANCE[dtype]


def check(
    out: Any, want: Tuple[np.ndarray, np.ndarray], dtype: str, lse: Any = None, keys: int = 0
) -> None:
    """Asserts out (and lse) against the reference (O, LSE) at the table's
    tolerance for `dtype` (and `keys`, the most keys a row sees)."""
    err = output_error(out, want[0])
    tol = tolerance(dtype, keys)
    assert err <= tol, f"output error {err:.3g} > {tol:.3g} ({dtype})"
    if lse is not None:
        lerr = lse_error(lse, want[1])
        assert lerr <= LSE_TOLERANCE, f"LSE error {lerr:.3g} > {LSE_TOLERANCE}"


# ---- inputs -------------------------------------------------------------------


def numpy_dtype(name: str) -> np.dtype:
    return {"float32": np.dtype(np.float32), "float16": np.dtype(np.float16), "bfloat16": BF16}[name]


def torch_dtype(name: str):
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def randn(rng: np.random.Generator, shape, dtype: str) -> np.ndarray:
    """Standard normal values rounded to `dtype`, as a NumPy array of it."""
    return rng.standard_normal(shape, dtype=np.float32).astype(numpy_dtype(dtype))


def to_torch(a: np.ndarray, dtype: str):
    """The same values as a torch CPU tensor of `dtype` (bfloat16 through
    float32, which holds every bfloat16 exactly)."""
    return torch.from_numpy(np.ascontiguousarray(a.astype(np.float32))).to(torch_dtype(dtype))


# ---- a hand-made DLPack producer --------------------------------------------------


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", _DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class _DLManagedTensor(ctypes.Structure):
    _fields_ = [
        ("dl_tensor", _DLTensor),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", ctypes.c_void_p),
    ]


_PyCapsule_New = ctypes.pythonapi.PyCapsule_New
_PyCapsule_New.restype = ctypes.py_object
_PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]


class FakeDevice:
    """A NumPy array's memory exported through DLPack as if it lived on another
    device (DLPack device type and id), to test device handling without one:
    plan() reads no data, and errors come before any is read."""

    def __init__(self, a: np.ndarray, device_type: int, device_id: int = 0):
        codes = {"f": 2, "b": 6, "u": 1, "i": 0}
        self._a = a
        self._device = (device_type, device_id)
        self._code = codes[a.dtype.kind]
        self._keep = []
        self.shape = a.shape
        self.dtype = a.dtype

    def __dlpack_device__(self):
        return self._device

    def __dlpack__(self, **kwargs):
        a = self._a
        shape = (ctypes.c_int64 * a.ndim)(*a.shape)
        strides = (ctypes.c_int64 * a.ndim)(*(s // a.itemsize for s in a.strides))
        mt = _DLManagedTensor()
        mt.dl_tensor = _DLTensor(
            a.ctypes.data,
            _DLDevice(*self._device),
            a.ndim,
            _DLDataType(self._code, a.itemsize * 8, 1),
            shape,
            strides,
            0,
        )
        mt.manager_ctx = None
        mt.deleter = None
        self._keep.append((mt, shape, strides))  # alive as long as this object
        return _PyCapsule_New(ctypes.addressof(mt), b"dltensor", None)


def graph_recorder(graphs):
    """A torch.compile backend that records each traced graph's text in
    `graphs` and runs the graph as traced (no compiler)."""

    def backend(gm, example_inputs):
        graphs.append(str(gm.graph))
        return gm.forward

    return backend
