"""Zero copy: strided views read in place, outputs written in place, and proof
that no input is copied (the memory a call allocates; inputs changed during
a run are seen by the later submissions)."""

import tracemalloc

import numpy as np
import pytest

import longattn
from support import (
    FakeDevice,
    as_float64,
    check,
    randn,
    reference,
    requires_torch,
    to_torch,
    torch,
)

FRAMEWORKS = ["numpy", pytest.param("torch", marks=requires_torch)]


def f64(*arrays):
    return [as_float64(a) for a in arrays]


@requires_torch
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_torch_transposed_views(rng, dtype):
    """q, k, v and out whose last dim is not contiguous (transposes of
    [B, H, D, L] buffers): read and written through their strides."""
    B, H, Lq, Lk, D = 1, 2, 9, 33, 16
    qt = to_torch(randn(rng, (B, H, D, Lq), dtype), dtype)
    kt = to_torch(randn(rng, (B, H, D, Lk), dtype), dtype)
    vt = to_torch(randn(rng, (B, H, D, Lk), dtype), dtype)
    q, k, v = qt.transpose(2, 3), kt.transpose(2, 3), vt.transpose(2, 3)
    assert q.stride(3) != 1 and not k.is_contiguous()
    buf = torch.full((B, H, D, Lq), 7.0, dtype=qt.dtype)
    out = buf.transpose(2, 3)
    result = longattn.attention(q, k, v, out=out, causal=True)
    assert result is out and result.data_ptr() == buf.data_ptr()
    check(buf.transpose(2, 3), reference(*f64(q, k, v), causal=True), dtype)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("layout", ["bhsd", "bshd"])
def test_cache_slice(rng, framework, layout):
    """k and v: keys [5, 5 + Lk) of batch 1.. of a preallocated cache."""
    B, Hq, Hkv, Lq, Lk, Lmax, D = 2, 4, 2, 3, 50, 80, 32
    if layout == "bhsd":
        cache_k = randn(rng, (B + 1, Hkv, Lmax, D), "float32")
        cache_v = randn(rng, (B + 1, Hkv, Lmax, D), "float32")
        q = randn(rng, (B, Hq, Lq, D), "float32")
        k, v = cache_k[1:, :, 5 : 5 + Lk], cache_v[1:, :, 5 : 5 + Lk]
        ref = reference(*f64(q, k, v), causal=True)
    else:
        cache_k = randn(rng, (B + 1, Lmax, Hkv, D), "float32")
        cache_v = randn(rng, (B + 1, Lmax, Hkv, D), "float32")
        q = randn(rng, (B, Lq, Hq, D), "float32")
        k, v = cache_k[1:, 5 : 5 + Lk], cache_v[1:, 5 : 5 + Lk]
        t = (0, 2, 1, 3)
        ref = reference(*(x.transpose(t) for x in f64(q, k, v)), causal=True)
    assert not k.flags.c_contiguous
    if framework == "torch":
        q, cache_k, cache_v = (torch.from_numpy(x) for x in (q, cache_k, cache_v))
        k, v = (cache_k[1:, :, 5 : 5 + Lk], cache_v[1:, :, 5 : 5 + Lk]) if layout == "bhsd" else (
            cache_k[1:, 5 : 5 + Lk],
            cache_v[1:, 5 : 5 + Lk],
        )
    out = longattn.attention(q, k, v, causal=True, layout=layout)
    got = as_float64(out)
    check(got.transpose(0, 2, 1, 3) if layout == "bshd" else got, ref, "float32")


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_out_written_in_place(rng, framework):
    """out= (a slice of a larger buffer) is written in place and returned as
    given; the rest of the buffer is untouched."""
    B, H, Lq, Lk, D = 1, 2, 6, 20, 16
    q, k, v = (randn(rng, s, "float32") for s in [(B, H, Lq, D), (B, H, Lk, D), (B, H, Lk, D)])
    big = np.full((B, H, Lq + 4, D), 3.0, np.float32)
    lse_ref = None
    if framework == "torch":
        q, k, v, big = (torch.from_numpy(x) for x in (q, k, v, big))
    out = big[:, :, 2 : 2 + Lq]
    ptr = out.data_ptr() if framework == "torch" else out.__array_interface__["data"][0]
    result, lse_ref = longattn.attention(q, k, v, out=out, return_lse=True)
    assert result is out
    now = out.data_ptr() if framework == "torch" else out.__array_interface__["data"][0]
    assert now == ptr
    full = as_float64(big)
    check(full[:, :, 2 : 2 + Lq], reference(*f64(q, k, v)), "float32", lse=lse_ref)
    assert (full[:, :, :2] == 3).all() and (full[:, :, 2 + Lq :] == 3).all()


def traced_peak(f):
    """Bytes of Python/NumPy memory allocated at the peak of f() (tracemalloc
    sees NumPy's data buffers; the library's own C++ allocations, such as a
    chunked run's running state, are not NumPy arrays)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        f()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("layout", ["bhsd", "bshd"])
def test_numpy_inputs_not_copied(rng, dtype, layout):
    """A call allocates its outputs and nothing the size of an input, even
    for strided views; the measurement is shown able to see a copy."""
    B, H, Lq, Lk, D = 1, 4, 128, 1024, 64
    shape = (lambda b, h, s, d: (b, s, h, d)) if layout == "bshd" else (lambda b, h, s, d: (b, h, s, d))
    q = randn(rng, shape(B, H, Lq, D), dtype)
    cache = randn(rng, shape(B, H + 2, Lk + 8, D), dtype)  # k: some heads and keys of it
    k = cache[:, 4 : 4 + Lk, 1 : 1 + H] if layout == "bshd" else cache[:, 1 : 1 + H, 4 : 4 + Lk]
    assert not k.flags.c_contiguous
    v = randn(rng, shape(B, H, Lk, D), dtype)
    mask = rng.random((Lq, Lk)) < 0.9
    smallest = min(q.nbytes, k.nbytes, v.nbytes, mask.nbytes)
    out = np.empty(q.shape, q.dtype)
    call = lambda **kw: longattn.attention(q, k, v, mask=mask, layout=layout, **kw)  # noqa: E731
    call(out=out)  # warm-up: first-call imports and caches are not the call's
    assert traced_peak(lambda: np.ascontiguousarray(k)) >= k.nbytes  # it can see a copy
    assert traced_peak(lambda: call(out=out)) < smallest // 4
    lse_bytes = B * H * Lq * 4
    assert traced_peak(lambda: call(return_lse=True)) < out.nbytes + lse_bytes + smallest // 4


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_inputs_read_in_place_during_the_run(rng, framework):
    """The keys a later submission reads are changed from the progress
    callback after the first submission; the result uses the changed values,
    so the call read the caller's memory, not a copy made at the start.
    v is a transposed view (last dim not contiguous)."""
    B, H, Lq, Lk, D = 1, 2, 16, 256, 32
    q = randn(rng, (B, H, Lq, D), "float32")
    k = randn(rng, (B, H, Lk, D), "float32")
    v_buf = randn(rng, (B, H, D, Lk), "float32")
    if framework == "torch":
        q, k, v_buf = (torch.from_numpy(x) for x in (q, k, v_buf))
    v = v_buf.transpose(2, 3) if framework == "torch" else v_buf.transpose(0, 1, 3, 2)
    tail = Lk - 64
    original = as_float64(v)

    def progress(done, total, rep):
        if len(rep.submissions) == 1:
            v[:, :, tail:] *= 2  # in place, in the caller's framework
        return True

    policy = longattn.Policy(fixed_chunk_keys=64, fixed_query_rows=Lq, budget_ms=1e-4)
    out, rep = longattn.attention(q, k, v, policy=policy, progress=progress, report=True)
    first = rep.plan.submissions[0].dispatches
    assert len(rep.plan.submissions) >= 2 and all(d.rect.k1 <= tail for d in first), rep.plan
    changed = original.copy()
    changed[:, :, tail:] *= 2
    check(out, reference(as_float64(q), as_float64(k), changed), "float32")
    assert np.abs(as_float64(out) - reference(*f64(q, k), original)[0]).max() > 1e-3


def test_read_only_and_broadcast_inputs(rng):
    """Read-only arrays and zero-stride broadcast views are inputs like any."""
    q = randn(rng, (1, 2, 5, 16), "float32")
    q.setflags(write=False)
    row = randn(rng, (1, 1, 1, 16), "float32")
    k = np.broadcast_to(row, (1, 2, 30, 16))  # every key the same, stride 0
    v = randn(rng, (1, 2, 30, 16), "float32")
    out = longattn.attention(q, k, v)
    check(out, reference(*f64(q, k, v)), "float32")


class ArrayApiArray:
    """A minimal array-API object over a NumPy array (DLPack + namespace)."""

    def __init__(self, a):
        self.a = a
        self.shape, self.dtype, self.device = a.shape, a.dtype, "cpu"

    def __array_namespace__(self, api_version=None):
        return np

    def __dlpack__(self, **kw):
        return self.a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()


def test_other_dlpack_producers(rng):
    """An object with only __dlpack__ (results as NumPy), one with an array
    namespace (outputs from its namespace), and pinned-host memory (DLPack
    CUDAHost, read by the CPU)."""
    q, k, v = (randn(rng, (1, 2, 7, 16), "float32") for _ in range(3))
    ref = reference(*f64(q, k, v))
    out = longattn.attention(FakeDevice(q, 1), FakeDevice(k, 1), FakeDevice(v, 1))
    assert isinstance(out, np.ndarray)
    check(out, ref, "float32")
    out = longattn.attention(ArrayApiArray(q), ArrayApiArray(k), ArrayApiArray(v))
    check(out, ref, "float32")
    pinned = [FakeDevice(x, 3) for x in (q, k, v)]  # kDLCUDAHost
    check(longattn.attention(*pinned, out=np.empty_like(q)), ref, "float32")
    views = [memoryview(x) for x in (q, k, v)]  # the buffer protocol alone
    out = longattn.attention(*views)
    assert isinstance(out, np.ndarray)
    check(out, ref, "float32")
