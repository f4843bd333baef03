"""Values against the float64 reference: every framework x dtype x layout, GQA,
causal, masks, sinks, LSE, rows that see no key, chunked runs."""

import numpy as np
import pytest

import longattn
from support import (
    DTYPES,
    as_float64,
    check,
    numpy_dtype,
    randn,
    reference,
    requires_torch,
    to_torch,
    torch,
)

FRAMEWORKS = ["numpy", pytest.param("torch", marks=requires_torch)]

# (B, Hq, Hkv, Lq, Lk, D, Dv, causal)
SHAPES = {
    "plain": (2, 4, 4, 33, 70, 64, 64, False),
    "gqa_causal": (1, 8, 2, 17, 129, 32, 32, True),
    "dv_differs": (1, 2, 1, 5, 40, 24, 40, False),
    "decode": (2, 8, 1, 1, 300, 128, 128, True),
    "lq_over_lk_causal": (1, 2, 2, 40, 16, 16, 16, True),
}


class Case:
    """Inputs of one call in a framework and layout, and their reference."""

    def __init__(self, rng, framework, dtype, layout, B, Hq, Hkv, Lq, Lk, D, Dv):
        self.framework, self.dtype, self.layout = framework, dtype, layout
        self.bhsd = [
            randn(rng, (B, Hq, Lq, D), dtype),
            randn(rng, (B, Hkv, Lk, D), dtype),
            randn(rng, (B, Hkv, Lk, Dv), dtype),
        ]
        self.q, self.k, self.v = (self.arrange(x) for x in self.bhsd)

    def arrange(self, a):
        """A bhsd NumPy array in this case's layout and framework."""
        if self.layout == "bshd":
            a = np.ascontiguousarray(a.transpose(0, 2, 1, 3))
        return to_torch(a, self.dtype) if self.framework == "torch" else a

    def reference(self, **kw):
        return reference(*(x.astype(np.float64) for x in self.bhsd), **kw)

    def as_bhsd(self, out):
        o = as_float64(out)
        return o.transpose(0, 2, 1, 3) if self.layout == "bshd" else o

    def check_type(self, out):
        if self.framework == "torch":
            assert isinstance(out, torch.Tensor) and out.dtype == self.q.dtype
        else:
            assert isinstance(out, np.ndarray) and out.dtype == numpy_dtype(self.dtype)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["bhsd", "bshd"])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference(rng, framework, dtype, layout, shape):
    B, Hq, Hkv, Lq, Lk, D, Dv, causal = SHAPES[shape]
    c = Case(rng, framework, dtype, layout, B, Hq, Hkv, Lq, Lk, D, Dv)
    out, lse = longattn.attention(c.q, c.k, c.v, causal=causal, layout=layout, return_lse=True)
    c.check_type(out)
    want_shape = (B, Lq, Hq, Dv) if layout == "bshd" else (B, Hq, Lq, Dv)
    assert tuple(out.shape) == want_shape
    assert tuple(lse.shape) == (B, Hq, Lq)  # whatever the layout
    assert as_float64(lse).dtype == np.float64 and str(lse.dtype).endswith("float32")
    check(c.as_bhsd(out), c.reference(causal=causal), dtype, lse=lse)
    if shape == "lq_over_lk_causal":  # rows that see no key: O = 0, LSE = -inf
        first = Lq - Lk
        assert (c.as_bhsd(out)[:, :, :first] == 0).all()
        assert (as_float64(lse)[:, :, :first] == -np.inf).all()


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("align", ["top_left", "bottom_right"])
@pytest.mark.parametrize("lengths", [(20, 70), (70, 20), (33, 33)])
def test_causal_alignment(rng, framework, dtype, align, lengths):
    """top_left (PyTorch's is_causal): query i sees keys j <= i, so with
    Lk > Lq the last keys are never seen; bottom_right: j <= i + Lk - Lq."""
    Lq, Lk = lengths
    c = Case(rng, framework, dtype, "bhsd", 1, 4, 2, Lq, Lk, 32, 32)
    out, lse = longattn.attention(c.q, c.k, c.v, causal=align, return_lse=True)
    check(out, c.reference(causal=align), dtype, lse=lse)
    if Lq != Lk:  # the two differ
        other = "bottom_right" if align == "top_left" else "top_left"
        assert np.abs(as_float64(out) - c.reference(causal=other)[0]).max() > 1e-2


def masks(rng, kind, B, Hq, Lq, Lk, dtype):
    """(mask for the call as NumPy, the same for the reference)."""
    if kind == "bool_2d":  # [Lq, Lk], broadcast over batch and heads
        m = rng.random((Lq, Lk)) < 0.7
        m[3] = False  # a row with no key
        return m, m
    if kind == "bool_b1":  # [B, 1, Lq, Lk]
        m = rng.random((B, 1, Lq, Lk)) < 0.5
        return m, m
    if kind == "additive_heads":  # [1, Hq, 1, Lk] with dropped keys, in q's dtype
        m = rng.standard_normal((1, Hq, 1, Lk)).astype(np.float32)
        m[:, :, :, ::3] = -np.inf
        m = m.astype(numpy_dtype(dtype))
        return m, m.astype(np.float64)
    if kind == "additive_f32_full":  # [B, Hq, Lq, Lk] float32, whatever q's dtype
        m = rng.standard_normal((B, Hq, Lq, Lk)).astype(np.float32)
        m[:, :, 0, :] = -np.inf  # row 0 sees no key
        return m, m.astype(np.float64)
    raise AssertionError(kind)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["bool_2d", "bool_b1", "additive_heads", "additive_f32_full"])
@pytest.mark.parametrize("causal", [False, True])
def test_masks(rng, framework, dtype, kind, causal):
    B, Hq, Hkv, Lq, Lk, D = 2, 4, 2, 12, 50, 32
    c = Case(rng, framework, dtype, "bhsd", B, Hq, Hkv, Lq, Lk, D, D)
    mask, ref_mask = masks(rng, kind, B, Hq, Lq, Lk, dtype)
    call_mask = mask
    if framework == "torch":  # bool and float32 as they are, others in q's dtype
        plain = mask.dtype in (np.dtype(bool), np.dtype(np.float32))
        call_mask = torch.from_numpy(mask) if plain else to_torch(mask, dtype)
    out, lse = longattn.attention(c.q, c.k, c.v, mask=call_mask, causal=causal, return_lse=True)
    want = c.reference(mask=ref_mask, causal=causal)
    check(out, want, dtype, lse=lse)
    if kind == "bool_2d":
        assert (as_float64(out)[:, :, 3] == 0).all() and (as_float64(lse)[:, :, 3] == -np.inf).all()


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sinks(rng, framework, dtype):
    B, Hq, Hkv, Lq, Lk, D = 1, 4, 2, 9, 37, 32
    c = Case(rng, framework, dtype, "bhsd", B, Hq, Hkv, Lq, Lk, D, D)
    sinks = rng.standard_normal(Hq).astype(np.float32) * 3
    mask = np.ones((Lq, Lk), dtype=bool)
    mask[2] = False  # no key: O = 0, LSE = the sink
    call_sinks = torch.from_numpy(sinks) if framework == "torch" else sinks
    out, lse = longattn.attention(c.q, c.k, c.v, sinks=call_sinks, mask=mask, return_lse=True)
    want = c.reference(sinks=sinks, mask=mask)
    check(out, want, dtype, lse=lse)
    assert (as_float64(out)[:, :, 2] == 0).all()
    np.testing.assert_allclose(as_float64(lse)[0, :, 2], sinks, rtol=1e-6)  # LSE = the sink


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_chunked_equals_reference(rng, framework, dtype):
    """Forced into many small submissions: the same result."""
    B, Hq, Hkv, Lq, Lk, D = 1, 4, 1, 70, 300, 64
    c = Case(rng, framework, dtype, "bhsd", B, Hq, Hkv, Lq, Lk, D, D)
    policy = longattn.Policy(fixed_chunk_keys=64, fixed_query_rows=32)
    out, lse, rep = longattn.attention(
        c.q, c.k, c.v, causal=True, policy=policy, return_lse=True, report=True
    )
    assert rep.completed and rep.plan.chunked and len(rep.plan.submissions) >= 1
    assert rep.plan.num_dispatches > 3
    check(out, c.reference(causal=True), dtype, lse=lse)


def test_scale(rng):
    c = Case(rng, "numpy", "float32", "bhsd", 1, 2, 2, 8, 20, 16, 16)
    out = longattn.attention(c.q, c.k, c.v, scale=0.05)
    check(out, c.reference(scale=0.05), "float32")


def test_empty_problem(rng):
    """B = 0 and Lq = 0 are valid calls that write nothing."""
    q = np.zeros((0, 2, 5, 16), np.float32)
    k = np.zeros((0, 2, 7, 16), np.float32)
    assert longattn.attention(q, k, k).shape == (0, 2, 5, 16)
    q = np.zeros((1, 2, 0, 16), np.float32)
    k = np.ones((1, 2, 7, 16), np.float32)
    out, lse = longattn.attention(q, k, k, return_lse=True)
    assert out.shape == (1, 2, 0, 16) and lse.shape == (1, 2, 0)


def test_no_keys(rng):
    """Lk = 0: every row sees no key."""
    q = randn(rng, (1, 2, 3, 16), "float32")
    k = np.zeros((1, 2, 0, 16), np.float32)
    out, lse = longattn.attention(q, k, k, return_lse=True)
    assert (out == 0).all() and (lse == -np.inf).all()


def test_threads(rng):
    c = Case(rng, "numpy", "float32", "bhsd", 1, 4, 4, 16, 64, 32, 32)
    for threads in (1, 2, None):
        check(longattn.attention(c.q, c.k, c.v, threads=threads), c.reference(), "float32")


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("window", [(0, 0), (5, None), (None, 3), (17, 4), (500, 500)])
@pytest.mark.parametrize("causal", [False, True, "top_left"])
@pytest.mark.parametrize("lengths", [(40, 90), (90, 40)])
def test_window(rng, framework, dtype, window, causal, lengths):
    """window=(left, right) around the diagonal (bottom-right unless
    causal='top_left'), None = unbounded; checked against the same
    visibility given to the reference as a boolean mask. plan() counts only
    the visible pairs."""
    Lq, Lk = lengths
    c = Case(rng, framework, dtype, "bhsd", 1, 4, 2, Lq, Lk, 32, 32)
    left, right = window
    i = np.arange(Lq)[:, None]
    j = np.arange(Lk)[None, :]
    d = i + (0 if causal == "top_left" else Lk - Lq)
    keep = np.ones((Lq, Lk), dtype=bool)
    if left is not None:
        keep &= j >= d - left
    if right is not None:
        keep &= j <= d + right
    out, lse = longattn.attention(c.q, c.k, c.v, causal=causal, window=window, return_lse=True)
    check(out, c.reference(causal=causal, mask=keep), dtype, lse=lse)
    if causal is not False:
        keep &= j <= d
    p = longattn.plan(c.q, c.k, c.v, causal=causal, window=window)
    assert p.total_flops == pytest.approx(2 * 4 * 64 * keep.sum())


def test_window_refused(rng):
    c = Case(rng, "numpy", "float32", "bhsd", 1, 2, 1, 8, 8, 16, 16)
    with pytest.raises(ValueError, match=r"window_left = -2"):
        longattn.attention(c.q, c.k, c.v, window=(-2, 0))
    with pytest.raises(longattn.InvalidArgument, match=r"window = 3 must be None or"):
        longattn.attention(c.q, c.k, c.v, window=3)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
def test_softcap(rng, framework, dtype, causal):
    """softcap=c caps each logit at c * tanh(s / c) before the mask is added;
    logits far past the cap (scale=1: |s| ~ 6) saturate instead of making
    the softmax nearly one-hot."""
    c = Case(rng, framework, dtype, "bhsd", 1, 4, 2, 33, 70, 32, 32)
    mask = rng.standard_normal((33, 70)).astype(np.float32)
    out, lse = longattn.attention(
        c.q, c.k, c.v, causal=causal, mask=mask, scale=1.0, softcap=2.0, return_lse=True
    )
    want = c.reference(causal=causal, mask=mask, scale=1.0, softcap=2.0)
    check(out, want, dtype, lse=lse)
    # None and 0 are off.
    for off in (None, 0):
        check(longattn.attention(c.q, c.k, c.v, softcap=off), c.reference(), dtype)
    assert longattn.plan(c.q, c.k, c.v, softcap=2.0).total_flops > 0


def test_softcap_refused(rng):
    c = Case(rng, "numpy", "float32", "bhsd", 1, 2, 1, 8, 8, 16, 16)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"softcap = "):
            longattn.attention(c.q, c.k, c.v, softcap=bad)
        with pytest.raises(ValueError, match=r"softcap = "):
            longattn.plan(c.q, c.k, c.v, softcap=bad)
    with pytest.raises(longattn.InvalidArgument, match=r"softcap = 'x' must be a number"):
        longattn.attention(c.q, c.k, c.v, softcap="x")
