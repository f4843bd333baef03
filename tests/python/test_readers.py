"""The native module's fast readers of NumPy arrays and torch tensors
(python/src/views.hpp) and the options cache (longattn/_api.py), the two
things that keep a call's overhead small (issue 11).

What a fast reader takes is read exactly as the general route (DLPack, the
buffer protocol, after longattn._arrays.native()) reads it: results agree
bit for bit. What it cannot describe takes the general route, whose checks
and errors are unchanged; so does anything that is not a plain ndarray,
torch.Tensor or nn.Parameter. The readers are shown to be taken (native() is
not called) on the calls that matter for speed.
"""

import gc

import numpy as np
import pytest

import longattn
from longattn import _api, _arrays
from support import BF16, as_float64, check, randn, reference, requires_torch, to_torch, torch

FRAMEWORKS = ["numpy", pytest.param("torch", marks=requires_torch)]
DTYPES = ["float32", "float16", "bfloat16"]


@pytest.fixture
def native_calls(monkeypatch):
    """The names native() is called for (the general route), per call."""
    calls = []
    real = _arrays.native

    def spy(op, name, x):
        calls.append(name)
        return real(op, name, x)

    monkeypatch.setattr(_arrays, "native", spy)
    return calls


if torch is not None:

    class TensorSub(torch.Tensor):
        """A torch.Tensor subclass: the fast reader leaves it to the general route."""


class ArraySub(np.ndarray):
    """An ndarray subclass: the fast reader leaves it to the general route."""


def general(x):
    """The same memory as an object only the general route reads."""
    if torch is not None and isinstance(x, torch.Tensor):
        return x.as_subclass(TensorSub)
    return x.view(ArraySub)


def inputs(rng, framework, dtype, kind):
    """q, k, v, mask, sinks, out, lse of one call; k and v are views of the
    kind under test (strided, offset, broadcast or empty)."""
    B, Hq, Hkv, Lq, Lk, D = 2, 4, 2, 5, 40, 16
    q = randn(rng, (B, Hq, Lq, D), dtype)
    if kind == "contiguous":
        k, v = randn(rng, (B, Hkv, Lk, D), dtype), randn(rng, (B, Hkv, Lk, D), dtype)
    elif kind == "transposed":  # last dim not contiguous
        k = randn(rng, (B, Hkv, D, Lk), dtype).transpose(0, 1, 3, 2)
        v = randn(rng, (B, Hkv, D, Lk), dtype).transpose(0, 1, 3, 2)
    elif kind == "cache_slice":  # an offset into a larger buffer
        k = randn(rng, (B + 1, Hkv + 1, Lk + 9, D), dtype)[1:, 1:, 3 : 3 + Lk]
        v = randn(rng, (B + 1, Hkv + 1, Lk + 9, D), dtype)[1:, 1:, 3 : 3 + Lk]
    elif kind == "broadcast":  # stride 0
        k = np.broadcast_to(randn(rng, (1, Hkv, Lk, D), dtype), (B, Hkv, Lk, D))
        v = np.broadcast_to(randn(rng, (B, Hkv, 1, D), dtype), (B, Hkv, Lk, D))
    else:  # "no_keys": zero-size k and v
        k = v = randn(rng, (B, Hkv, 0, D), dtype)
    Lk = k.shape[2]
    mask = rng.random((Lq, Lk)) < 0.8
    sinks = rng.standard_normal(Hq, dtype=np.float32)
    if framework == "torch":
        q, mask, sinks = to_torch(q, dtype), torch.from_numpy(mask), torch.from_numpy(sinks)
        tk, tv = to_torch(k, dtype), to_torch(v, dtype)
        if kind == "transposed":
            tk, tv = (to_torch(x.transpose(0, 1, 3, 2), dtype).transpose(2, 3) for x in (k, v))
        elif kind == "broadcast":
            tk = to_torch(k[:1], dtype).expand(B, Hkv, Lk, D)
            tv = to_torch(v[:, :, :1], dtype).expand(B, Hkv, Lk, D)
        elif kind == "cache_slice":
            tk = to_torch(np.zeros((B + 1, Hkv + 1, Lk + 9, D), np.float32), dtype)
            tk[1:, 1:, 3 : 3 + Lk] = to_torch(k, dtype)
            tk = tk[1:, 1:, 3 : 3 + Lk]
            tv = to_torch(v, dtype)
        k, v = tk, tv
        out = torch.empty(q.shape, dtype=q.dtype)
        lse = torch.empty(q.shape[:3], dtype=torch.float32)
    else:
        out, lse = np.empty_like(q), np.empty(q.shape[:3], np.float32)
    return q, k, v, mask, sinks, out, lse


def torch_qkv(rng):
    return [to_torch(randn(rng, s, "float32"), "float32") for s in [(1, 2, 3, 16), (1, 2, 9, 16), (1, 2, 9, 16)]]


def run(q, k, v, mask, sinks, out, lse):
    """attention() into out and lse through run(), the internal entry point."""
    policy = {f: getattr(longattn.Policy(), f) for f in _api._DEFAULT_POLICY}
    _api.run(q, k, v, out, lse, mask=mask, sinks=sinks, causal=True, threads=1, **policy)


def bits(x):
    if torch is not None and isinstance(x, torch.Tensor):
        x = x.view(torch.int16) if x.dtype == torch.bfloat16 else x
    return np.asarray(x).tobytes()


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["contiguous", "transposed", "cache_slice", "broadcast", "no_keys"])
def test_fast_and_general_routes_agree(rng, framework, dtype, kind, native_calls):
    """Every array of a call (q, k, v, a bool mask, sinks, out, lse) read by
    the fast reader gives the bits the general route gives; the fast call
    calls native() for none of them."""
    q, k, v, mask, sinks, out, lse = inputs(rng, framework, dtype, kind)
    run(q, k, v, mask, sinks, out, lse)
    assert native_calls == []
    if framework == "torch":
        out2, lse2 = torch.full_like(out, 5), torch.full_like(lse, 5)
    else:
        out2, lse2 = np.full_like(out, 5), np.full_like(lse, 5)
    run(*(general(x) for x in (q, k, v, mask, sinks, out2, lse2)))
    assert native_calls == ["q", "k", "v", "out", "mask", "sinks", "lse"]
    assert bits(out) == bits(out2) and bits(lse) == bits(lse2)
    q, k, v, mask, sinks = (as_float64(x) for x in (q, k, v, mask, sinks))
    check(out, reference(q, k, v, causal=True, mask=mask > 0, sinks=sinks), dtype, lse=lse)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_public_call_takes_the_fast_readers(rng, framework, native_calls):
    """attention(), plan() and merge_states() on plain arrays (float and bool
    masks, bfloat16 from ml_dtypes, read-only and broadcast NumPy inputs)."""
    q, k, v, mask, sinks, out, lse = inputs(rng, framework, "bfloat16", "contiguous")
    additive = np.where(as_float64(mask) > 0, 0, -np.inf).astype(np.float32)
    if framework == "torch":
        additive = torch.from_numpy(additive)
    else:
        q.setflags(write=False)
    o, l = longattn.attention(q, k, v, mask=mask, sinks=sinks, return_lse=True)
    longattn.attention(q, k, v, mask=additive, out=out, layout="bhsd")
    longattn.plan(q, k, v, mask=mask, return_lse=True)
    longattn.merge_states([(o, l), (out, l)], return_lse=True)
    assert native_calls == []


@requires_torch
def test_torch_parameter(rng, native_calls):
    """nn.Parameter is read by the fast reader when it needs no grad; one that
    does is refused under autograd and read in place (detached) under
    no_grad, through native()."""
    q, k, v = torch_qkv(rng)
    want = longattn.attention(q, k, v)
    sinks = torch.nn.Parameter(torch.zeros(2), requires_grad=False)
    longattn.attention(torch.nn.Parameter(q, requires_grad=False), k, v, sinks=sinks)
    assert native_calls == []
    p = torch.nn.Parameter(k.clone())
    with pytest.raises(longattn.Unsupported, match="k requires grad"):
        longattn.attention(q, p, v)
    with torch.no_grad():
        got = longattn.attention(q, p, v)
    assert native_calls == ["k", "k"]
    assert torch.equal(got, want)


@requires_torch
def test_torch_requires_grad_output_under_no_grad(rng):
    """An output that requires grad (under no_grad) is written in place."""
    q, k, v = (to_torch(randn(rng, (1, 2, 4, 16), "float32"), "float32") for _ in range(3))
    out = torch.zeros(q.shape, requires_grad=True)
    with torch.no_grad():
        result = longattn.attention(q, k, v, out=out)
    assert result is out
    check(out, reference(*(as_float64(x) for x in (q, k, v))), "float32")


@requires_torch
def test_torch_subclass_takes_the_general_route(rng, native_calls):
    q, k, v = (to_torch(randn(rng, (1, 2, 4, 16), "float16"), "float16") for _ in range(3))
    want = longattn.attention(q, k, v)
    got = longattn.attention(q.as_subclass(TensorSub), k, v)
    assert native_calls == ["q"] and torch.equal(got, want)


@requires_torch
def test_torch_negated_and_conjugated_views(rng):
    """torch's lazy negation and conjugation: a negated view's memory holds
    -x, and DLPack would export it as if it did not, so it is refused with
    the argument named (fast reader and general route alike); the conjugate
    bit exists only on complex dtypes, refused by dtype."""
    q, k, v = (to_torch(randn(rng, (1, 2, 4, 16), "float32"), "float32") for _ in range(3))
    neg = torch._neg_view(k)
    assert neg.is_neg() and torch.equal(neg, -k)
    for bad in (neg, neg.as_subclass(TensorSub), torch.complex(k, v).conj().imag):
        assert bad.is_neg()
        with pytest.raises(longattn.InvalidArgument, match=r"\[longattn.attention\] k has the negative bit set"):
            longattn.attention(q, bad, v)
    with pytest.raises(longattn.InvalidArgument, match="out has the negative bit set"):
        longattn.attention(q, k, v, out=torch._neg_view(torch.empty_like(q)))
    check(longattn.attention(q, neg.resolve_neg(), v), reference(*(as_float64(x) for x in (q, -k, v))), "float32")
    conj = torch.complex(k, v).conj()
    assert conj.is_conj()
    with pytest.raises(longattn.InvalidArgument, match="k.dtype = complex64: longattn reads float32"):
        longattn.attention(q, conj, v)


@requires_torch
@pytest.mark.parametrize(
    "make,message",
    [
        (lambda k: k.double(), "k.dtype = float64: longattn reads"),
        (lambda k: k.int(), "k.dtype = int32: longattn reads"),
        (lambda k: k[None], "k.ndim = 5 (shape [1, 1, 2, 9, 16]): longattn's arrays have at most 4 dims"),
        (lambda k: k.to_sparse(), "__dlpack__() raised BufferError: Can't export tensors with layout"),
        (lambda k: torch.empty(k.shape, device="meta"), "k of type torch.Tensor is not an array"),
    ],
    ids=["float64", "int32", "rank_5", "sparse", "meta"],
)
def test_torch_refused(rng, make, message):
    """Tensors the fast reader declines or cannot take: the general route's
    clear error, naming the argument."""
    q, k, v = torch_qkv(rng)
    with pytest.raises(longattn.InvalidArgument) as info:
        longattn.attention(q, make(k), v)
    assert message in str(info.value), str(info.value)


def test_numpy_declined_by_the_fast_reader(rng, native_calls):
    """Byte-swapped, misaligned and structured arrays take the general route,
    which decides as it always has (misaligned float32 is read; the others
    are refused by name)."""
    q, k, v = (randn(rng, s, "float32") for s in [(1, 2, 3, 16), (1, 2, 9, 16), (1, 2, 9, 16)])
    buf = np.zeros(k.nbytes + 1, np.uint8)
    misaligned = np.frombuffer(buf, np.float32, count=k.size, offset=1).reshape(k.shape)
    misaligned[...] = k
    assert not misaligned.flags.aligned
    check(longattn.attention(q, misaligned, v), reference(*(as_float64(x) for x in (q, k, v))), "float32")
    assert native_calls == ["k"]
    for bad in (k.astype(">f4"), k.view("V4")):
        with pytest.raises(longattn.InvalidArgument, match="k of type ndarray is not an array longattn can read"):
            longattn.attention(q, bad, v)


def test_numpy_bfloat16_subclass(rng, native_calls):
    """A bfloat16 ndarray subclass goes through native() (its bits as uint16)."""
    q, k, v = (randn(rng, (1, 2, 4, 16), "bfloat16") for _ in range(3))
    want = longattn.attention(q, k, v)
    out = np.empty_like(q).view(ArraySub)
    longattn.attention(q.view(ArraySub), k, v, out=out)
    assert native_calls == ["q", "out"] and out.dtype == BF16
    assert np.asarray(out).tobytes() == want.tobytes()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_arrays_made_for_the_call_stay_alive(rng, framework):
    """Arrays only the call refers to (temporaries; the detached view native()
    makes) stay alive until it returns: the progress callback frees what it
    can and reuses memory, and the result is still right."""
    q, k, v = (randn(rng, s, "float32") for s in [(1, 2, 16, 32), (1, 2, 512, 32), (1, 2, 512, 32)])
    want = reference(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64))
    junk = []

    def progress(done, total, rep):
        if len(junk) < 8:  # twice (gc.collect takes a while)
            gc.collect()
            junk.extend(np.full(k.shape, 7.0, np.float32) for _ in range(4))

    policy = longattn.Policy(fixed_chunk_keys=64, budget_ms=1e-4)
    if framework == "torch":
        with torch.no_grad():  # native() passes a detached view of this k
            out = longattn.attention(
                torch.from_numpy(q.copy()),
                torch.from_numpy(k.copy()).requires_grad_(True),
                torch.from_numpy(v.copy()),
                policy=policy,
                progress=progress,
            )
    else:
        out = longattn.attention(q.copy(), k.copy()[:, :, ::1], v.copy(), policy=policy, progress=progress)
    assert len(junk) == 8
    check(out, want, "float32")


# ---- the options cache --------------------------------------------------------------


def test_options_are_checked_once_and_reused(rng):
    """Calls with the same options (a new but equal Policy too) reuse one
    native options object."""
    q, k, v = (randn(rng, (1, 2, 3, 16), "float32") for _ in range(3))
    _api._OPTIONS.clear()
    for _ in range(3):
        longattn.attention(q, k, v, causal=True, threads=1, scale=0.5)
    assert len(_api._OPTIONS) == 1
    (options,) = _api._OPTIONS.values()
    longattn.attention(q, k, v, causal=True, threads=1, scale=0.5)
    assert list(_api._OPTIONS.values()) == [options] and options.bshd is False
    for _ in range(3):
        longattn.attention(q, k, v, policy=longattn.Policy(fixed_chunk_keys=64), layout="bshd")
    assert len(_api._OPTIONS) == 2 and list(_api._OPTIONS.values())[1].bshd is True

    class MyPolicy(longattn.Policy):
        pass

    longattn.attention(q, k, v, policy=MyPolicy())  # a subclass: checked each time
    assert len(_api._OPTIONS) == 2


def test_options_cache_keeps_the_checks(rng):
    """Values equal to accepted ones but of other types are still refused
    (True == 1, 1 == 1.0); a Policy changed in place is seen by the next
    call; unhashable values are checked and not cached; the cache is
    bounded."""
    q, k, v = (randn(rng, (1, 2, 3, 16), "float32") for _ in range(3))
    longattn.attention(q, k, v, causal=True, threads=1)
    with pytest.raises(longattn.InvalidArgument, match="causal = 1 must be True or False"):
        longattn.attention(q, k, v, causal=1, threads=1)
    with pytest.raises(longattn.InvalidArgument, match="threads = 1.0 must be an integer"):
        longattn.attention(q, k, v, causal=True, threads=1.0)
    longattn.attention(q, k, v, causal=np.True_, threads=np.int64(1))  # NumPy scalars are fine
    with pytest.raises(longattn.InvalidArgument, match=r"causal = \[True\] must be True or False"):
        longattn.attention(q, k, v, causal=[True])  # unhashable: checked, not cached
    policy = longattn.Policy(budget_ms=7)
    assert longattn.attention(q, k, v, policy=policy, report=True)[1].budget_ms == 7
    policy.budget_ms = 3
    assert longattn.attention(q, k, v, policy=policy, report=True)[1].budget_ms == 3
    longattn.attention(q, k, v, policy=longattn.Policy(fixed_chunk_keys=64))
    with pytest.raises(longattn.InvalidArgument, match="policy.fixed_chunk_keys = 64.0 must be an integer"):
        longattn.attention(q, k, v, policy=longattn.Policy(fixed_chunk_keys=64.0))
    with pytest.raises(longattn.InvalidArgument, match="must be a longattn.Policy or None"):
        longattn.attention(q, k, v, policy={"budget_ms": 5})
    scale = np.array(0.5)  # accepted (a number), but unhashable: checked, not cached
    longattn.attention(q, k, v, scale=scale)
    for i in range(2 * _api._OPTIONS_MAX):
        longattn.attention(q, k, v, scale=1.0 + i)
    assert len(_api._OPTIONS) <= _api._OPTIONS_MAX


def test_profile_in_cached_options_is_refined(rng):
    q = randn(rng, (1, 4, 256, 64), "float32")
    k = v = randn(rng, (1, 4, 4096, 64), "float32")
    prof = longattn.default_profile("cpu")
    longattn.attention(q, k, v, profile=prof)
    after_one = prof.samples
    longattn.attention(q, k, v, profile=prof)
    assert prof.samples > after_one


def test_default_stream_on_the_cpu(rng):
    q = randn(rng, (1, 2, 3, 16), "float32")
    assert _arrays.default_stream(q) == 0 and _arrays.stream_handle("op", 5, q) == 5
    if torch is not None:
        assert _arrays.default_stream(torch.from_numpy(q)) == 0
