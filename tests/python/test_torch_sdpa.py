"""longattn.torch: scaled_dot_product_attention against torch's (math backend,
float64) and the float64 reference, in every form torch accepts (masks,
is_causal with L < S and L > S, GQA, broadcast batches and heads, 2-D to
5-D, scale); torch's errors; the op under torch.compile and opcheck."""

import inspect

import numpy as np
import pytest

from support import (
    DTYPES,
    as_float64,
    check,
    graph_recorder,
    output_error,
    randn,
    reference,
    to_torch,
    tolerance,
    torch,
)

if torch is None:  # pragma: no cover - the test stage installs torch
    pytest.skip("torch is not installed", allow_module_level=True)

import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import longattn
import longattn.torch as lt

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(
            not (torch.cuda.is_available() and longattn.cuda_built()),
            reason="needs a CUDA GPU and a CUDA build of longattn",
        ),
    ),
]


def torch_f64(*args, **kwargs):
    """torch's own SDPA, math backend, on the same values in float64."""
    args = [a.double() if a.is_floating_point() else a for a in args]
    mask = kwargs.get("attn_mask")
    if mask is not None and mask.is_floating_point():
        kwargs["attn_mask"] = mask.double()
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(*args, **kwargs).cpu().numpy()


def inputs(rng, dtype, device, *shapes):
    """Standard normal tensors of `dtype` (values rounded to it) on `device`."""
    return [to_torch(randn(rng, s, dtype), dtype).to(device) for s in shapes]


def compare(got, want, dtype, keys):
    err = output_error(got, want)
    tol = tolerance(dtype, keys)
    assert err <= tol, f"error {err:.3g} against torch's float64 > {tol:.3g} ({dtype})"


# (q shape, k shape, v shape, kwargs without attn_mask); D = Dv = 64 where the
# CUDA backend must run it.
CASES = {
    "plain": ((2, 4, 33, 64), (2, 4, 70, 64), (2, 4, 70, 64), {}),
    "causal_square": ((1, 3, 40, 64), (1, 3, 40, 64), (1, 3, 40, 64), {"is_causal": True}),
    "causal_l_lt_s": ((2, 2, 17, 64), (2, 2, 50, 64), (2, 2, 50, 64), {"is_causal": True}),
    "causal_l_gt_s": ((1, 2, 45, 64), (1, 2, 20, 64), (1, 2, 20, 64), {"is_causal": True}),
    "gqa": ((2, 8, 9, 64), (2, 2, 31, 64), (2, 2, 31, 64), {"enable_gqa": True}),
    "gqa_causal": (
        (1, 6, 21, 64),
        (1, 3, 21, 64),
        (1, 3, 21, 64),
        {"enable_gqa": True, "is_causal": True},
    ),
    "mqa_broadcast": ((2, 4, 5, 64), (2, 1, 40, 64), (2, 1, 40, 64), {}),
    "decode": ((3, 8, 1, 64), (3, 2, 300, 64), (3, 2, 300, 64), {"enable_gqa": True}),
    "scale": ((1, 2, 12, 64), (1, 2, 19, 64), (1, 2, 19, 64), {"scale": 0.37}),
    "three_d": ((3, 11, 64), (3, 23, 64), (3, 23, 64), {"is_causal": True}),
    "five_d": ((2, 3, 2, 7, 64), (2, 3, 2, 13, 64), (2, 3, 2, 13, 64), {}),
    "batch_broadcast": ((2, 3, 4, 7, 64), (1, 3, 4, 13, 64), (2, 1, 4, 13, 64), {}),
    "query_heads_broadcast": ((2, 1, 6, 64), (2, 3, 15, 64), (2, 3, 15, 64), {}),
    "two_d": ((9, 64), (14, 64), (14, 64), {"is_causal": True}),
    "q_3d_kv_4d": ((4, 5, 64), (2, 4, 9, 64), (2, 4, 9, 64), {}),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_values_match_torch(rng, device, dtype, case):
    qs, ks, vs, kw = CASES[case]
    q, k, v = inputs(rng, dtype, device, qs, ks, vs)
    out = lt.scaled_dot_product_attention(q, k, v, **kw)
    assert out.dtype == q.dtype and out.device == q.device
    want = torch_f64(q, k, v, **kw)
    assert tuple(out.shape) == want.shape
    compare(out, want, dtype, ks[-2])


@pytest.mark.parametrize("dtype", DTYPES)
def test_values_match_the_reference(rng, dtype):
    """The independent float64 reference of tests/python/support.py agrees
    (top-left causal, GQA, scale), so the harness is not only torch."""
    q, k, v = (randn(rng, s, dtype) for s in ((2, 6, 19, 40), (2, 3, 33, 40), (2, 3, 33, 24)))
    out = lt.scaled_dot_product_attention(
        *(to_torch(x, dtype) for x in (q, k, v)), is_causal=True, scale=0.2, enable_gqa=True
    )
    want = reference(*(x.astype(np.float64) for x in (q, k, v)), causal="top_left", scale=0.2)
    check(out, want, dtype, keys=33)


# ---- masks ---------------------------------------------------------------------

MASK_SHAPES = {
    "full": (2, 4, 9, 30),
    "per_batch_keys": (2, 1, 1, 30),  # a padding mask
    "per_head": (4, 1, 30),
    "lq_lk": (9, 30),
    "keys_only": (30,),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["bool", "float", "float_inf", "float_dtype_of_q"])
@pytest.mark.parametrize("shape", list(MASK_SHAPES))
def test_masks(rng, device, dtype, kind, shape):
    q, k, v = inputs(rng, dtype, device, (2, 4, 9, 64), (2, 4, 30, 64), (2, 4, 30, 64))
    mshape = MASK_SHAPES[shape]
    keep = torch.from_numpy(rng.random(mshape) > 0.3).to(device)
    if kind == "bool":
        mask = keep
    elif kind == "float":
        mask = torch.from_numpy(rng.standard_normal(mshape, dtype=np.float32)).to(device)
    elif kind == "float_inf":
        mask = torch.zeros(mshape, device=device).masked_fill(~keep, float("-inf"))
    else:  # what torch itself accepts: a float mask of query's dtype
        mask = torch.from_numpy(rng.standard_normal(mshape, dtype=np.float32)).to(device, q.dtype)
    out = lt.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    compare(out, torch_f64(q, k, v, attn_mask=mask), dtype, 30)


def test_mask_on_five_d_inputs(rng):
    """A mask with batch dims of its own on 5-D inputs: folded with them (a
    copy where its batch is partly broadcast, as torch.reshape does)."""
    q, k, v = inputs(rng, "float32", "cpu", (2, 3, 2, 5, 16), (2, 3, 2, 8, 16), (2, 3, 2, 8, 16))
    for mshape in [(2, 1, 2, 5, 8), (3, 1, 1, 8), (1, 1, 1, 5, 8)]:
        mask = torch.from_numpy(rng.random(mshape) > 0.3)
        out = lt.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        compare(out, torch_f64(q, k, v, attn_mask=mask), "float32", 8)


@pytest.mark.parametrize("kind", ["bool", "float_inf"])
def test_fully_masked_row_is_zero_as_in_torch(rng, kind):
    """A row with every key masked out: longattn gives 0; torch 2.15's math
    backend (its safe softmax) gives 0 too, and so does its default CPU
    path. (Older torch gave NaN there: the docstring says so.)"""
    q, k, v = inputs(rng, "float32", "cpu", (1, 2, 6, 16), (1, 2, 10, 16), (1, 2, 10, 16))
    keep = torch.ones(6, 10, dtype=torch.bool)
    keep[2] = False
    mask = keep if kind == "bool" else torch.zeros(6, 10).masked_fill(~keep, float("-inf"))
    out = lt.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.equal(out[:, :, 2], torch.zeros_like(out[:, :, 2]))
    assert not out.isnan().any()
    with sdpa_kernel(SDPBackend.MATH):
        theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.equal(theirs[:, :, 2], out[:, :, 2])
    default_path = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.equal(default_path[:, :, 2], out[:, :, 2])
    compare(out, torch_f64(q, k, v, attn_mask=mask), "float32", 10)


def test_finfo_min_row(rng):
    """The documented difference: a row all finfo.min counts as masked (0),
    where torch averages the row's values; -1e30 agrees, and finfo.min in a
    row that also has visible keys agrees."""
    q, k, v = inputs(rng, "float32", "cpu", (1, 2, 6, 16), (1, 2, 10, 16), (1, 2, 10, 16))
    mask = torch.zeros(6, 10)
    mask[2] = torch.finfo(torch.float32).min
    mask[3, :4] = torch.finfo(torch.float32).min
    mask[4] = -1e30
    out = lt.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.equal(out[:, :, 2], torch.zeros_like(out[:, :, 2]))
    assert torch.allclose(theirs[:, :, 2], v.mean(dim=2), atol=1e-6)
    rows = [0, 1, 3, 4, 5]
    assert torch.allclose(out[:, :, rows], theirs[:, :, rows], atol=1e-5)
    assert torch.allclose(out[:, :, 4], v.mean(dim=2), atol=1e-6)


def test_empty_sizes(rng):
    q, k, v = inputs(rng, "float32", "cpu", (2, 2, 0, 8), (2, 2, 5, 8), (2, 2, 5, 8))
    assert lt.scaled_dot_product_attention(q, k, v).shape == (2, 2, 0, 8)
    q, k, v = inputs(rng, "float32", "cpu", (2, 2, 3, 8), (2, 2, 0, 8), (2, 2, 0, 8))
    out = lt.scaled_dot_product_attention(q, k, v)
    assert torch.equal(out, F.scaled_dot_product_attention(q, k, v))  # zeros


# ---- views: nothing copied ---------------------------------------------------------


def same_memory(a, b):
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def test_inputs_are_read_in_place(rng):
    """bshd tensors seen as [B, H, S, D] (transposed views), 3-D and 5-D
    inputs, a broadcast batch: the arrays longattn gets share the caller's
    memory; values still match torch."""
    shapes = (2, 7, 4, 32), (2, 19, 2, 32), (2, 19, 2, 32)
    buf_q, buf_k, buf_v = inputs(rng, "float32", "cpu", *shapes)
    q, k, v = (x.transpose(1, 2) for x in (buf_q, buf_k, buf_v))
    f = lt._Folded(q, k, v, None, True, False)
    assert f.q is q and f.k is k and f.v is v
    out = lt.scaled_dot_product_attention(q, k, v, enable_gqa=True, is_causal=True)
    compare(out, torch_f64(q, k, v, enable_gqa=True, is_causal=True), "float32", 19)

    q5, k5, v5 = inputs(rng, "float32", "cpu", (2, 3, 4, 5, 8), (1, 1, 4, 9, 8), (2, 3, 4, 9, 8))
    mask = torch.ones(2, 3, 1, 5, 9, dtype=torch.bool)
    f = lt._Folded(q5, k5, v5, mask, False, False)
    for folded, given in ((f.q, q5), (f.k, k5), (f.v, v5), (f.mask, mask)):
        assert same_memory(folded, given)
    assert f.k.stride(0) == 0  # k's batch of one, broadcast by stride 0
    assert f.q.shape == (6, 4, 5, 8) and f.mask.shape == (6, 1, 5, 9)
    q3, k3, v3 = inputs(rng, "float32", "cpu", (4, 5, 8), (4, 9, 8), (4, 9, 8))
    f = lt._Folded(q3, k3, v3, None, False, False)
    assert all(same_memory(a, b) for a, b in ((f.q, q3), (f.k, k3), (f.v, v3)))


def test_out_keeps_the_broadcast_shape(rng):
    q, k, v = inputs(rng, "float32", "cpu", (1, 4, 5, 8), (3, 4, 9, 8), (3, 4, 9, 8))
    out = lt.scaled_dot_product_attention(q, k, v)
    assert out.shape == (3, 4, 5, 8)
    compare(out, torch_f64(q, k, v), "float32", 9)


# ---- longattn's options ----------------------------------------------------------------


def test_budget_policy_report_progress(rng):
    q, k, v = inputs(rng, "float32", "cpu", (1, 2, 40, 32), (1, 2, 300, 32), (1, 2, 300, 32))
    want = torch_f64(q, k, v, is_causal=True)
    seen = []
    out, rep = lt.scaled_dot_product_attention(
        q,
        k,
        v,
        is_causal=True,
        # a budget below any dispatch: one dispatch a submission
        policy=longattn.Policy(fixed_chunk_keys=64, fixed_query_rows=16, budget_ms=7),
        budget_ms=1e-4,
        report=True,
        progress=lambda done, total, r: seen.append((done, total)),
    )
    assert isinstance(rep, longattn.RunReport) and rep.completed
    assert rep.budget_ms == 1e-4 and rep.plan.chunked and len(rep.submissions) > 1
    assert seen and seen[-1][1] == 40
    compare(out, want, "float32", 300)


def test_cancel(rng):
    q, k, v = inputs(rng, "float32", "cpu", (1, 2, 40, 32), (1, 2, 300, 32), (1, 2, 300, 32))
    with pytest.raises(longattn.Cancelled):
        lt.scaled_dot_product_attention(
            q,
            k,
            v,
            policy=longattn.Policy(fixed_chunk_keys=64, fixed_query_rows=16, budget_ms=1e-4),
            progress=lambda *a: False,
        )


# ---- errors: torch's where torch checks, longattn's otherwise -----------------------------


def torch_error(*args, **kwargs):
    with pytest.raises(Exception) as theirs:
        with sdpa_kernel(SDPBackend.MATH):
            F.scaled_dot_product_attention(*args, **kwargs)
    return theirs.value


ERRORS = {
    "causal_and_mask": (
        [(1, 2, 4, 8), (1, 2, 6, 8), (1, 2, 6, 8)],
        {"is_causal": True, "attn_mask": torch.ones(4, 6, dtype=torch.bool)},
    ),
    "heads_without_gqa": ([(2, 4, 5, 8), (2, 2, 7, 8), (2, 2, 7, 8)], {}),
    "heads_do_not_divide": ([(2, 4, 5, 8), (2, 3, 7, 8), (2, 3, 7, 8)], {"enable_gqa": True}),
    "kv_heads_over_q_heads": ([(2, 1, 5, 8), (2, 2, 7, 8), (2, 2, 7, 8)], {"enable_gqa": True}),
    "v_heads_mismatch": ([(2, 4, 5, 8), (2, 4, 7, 8), (2, 2, 7, 8)], {}),
    "batch_mismatch": ([(2, 4, 5, 8), (3, 4, 7, 8), (3, 4, 7, 8)], {}),
    "mask_does_not_broadcast": (
        [(2, 4, 5, 8), (2, 4, 7, 8), (2, 4, 7, 8)],
        {"attn_mask": torch.ones(3, 5, 7, dtype=torch.bool)},
    ),
    "mask_over_rank": (
        [(2, 4, 5, 8), (2, 4, 7, 8), (2, 4, 7, 8)],
        {"attn_mask": torch.ones(3, 2, 4, 5, 7, dtype=torch.bool)},
    ),
    "one_d": ([(8,), (8,), (8,)], {}),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_are_torchs(rng, case):
    shapes, kw = ERRORS[case]
    q, k, v = inputs(rng, "float32", "cpu", *shapes)
    theirs = torch_error(q, k, v, **kw)
    with pytest.raises(type(theirs)) as ours:
        lt.scaled_dot_product_attention(q, k, v, **kw)
    # The texts are torch 2.15's (the version CI installs); other releases
    # word some of them differently (2.11 does for the GQA head counts), so
    # elsewhere only the exception type must match.
    if torch.__version__.startswith("2.15"):
        assert str(ours.value) == str(theirs)


def test_longattn_refusals(rng):
    q, k, v = inputs(rng, "float32", "cpu", (1, 2, 4, 8), (1, 2, 6, 8), (1, 2, 6, 8))
    with pytest.raises(ValueError, match="dropout_p = 0.1: longattn does no dropout"):
        lt.scaled_dot_product_attention(q, k, v, dropout_p=0.1)
    with pytest.raises(longattn.InvalidArgument, match="float64"):
        lt.scaled_dot_product_attention(q.double(), k.double(), v.double())
    with pytest.raises(longattn.InvalidArgument, match="k.dtype"):
        lt.scaled_dot_product_attention(q, k.half(), v)
    with pytest.raises(longattn.InvalidArgument, match="mask.dtype"):
        lt.scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(4, 6, dtype=torch.int32))
    with pytest.raises(longattn.Unsupported, match="requires grad"):
        lt.scaled_dot_product_attention(q.requires_grad_(), k, v)
    with pytest.raises(TypeError, match="key must be a torch.Tensor"):
        lt.scaled_dot_product_attention(q, k.numpy(), v)


# ---- torch.compile and the op ---------------------------------------------------------


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
@pytest.mark.parametrize("dynamic", [False, True])
def test_compile_fullgraph(rng, backend, dynamic):
    """torch.compile(fullgraph=True) traces a function that calls the drop-in
    (with folding, a mask and GQA) into one graph holding the op."""

    def block(q, k, v, mask):
        out = lt.scaled_dot_product_attention(
            q * 0.5, k, v, attn_mask=mask, enable_gqa=True, budget_ms=20
        )
        return out.sum(dim=-1)

    torch._dynamo.reset()
    graphs = []
    if backend == "eager":
        backend = graph_recorder(graphs)
    compiled = torch.compile(block, fullgraph=True, backend=backend, dynamic=dynamic)
    for Lq, Lk in ((5, 9), (7, 12)):
        q, k, v = inputs(rng, "float32", "cpu", (2, 4, Lq, 16), (2, 2, Lk, 16), (2, 2, Lk, 16))
        mask = torch.from_numpy(rng.random((Lq, Lk)) > 0.3)
        got = compiled(q, k, v, mask)
        assert torch.allclose(got, block(q, k, v, mask), rtol=0, atol=1e-6)
    if graphs:
        assert all("longattn.attention" in g for g in graphs)


def test_compile_refuses_report_and_progress(rng):
    q, k, v = inputs(rng, "float32", "cpu", (1, 2, 4, 8), (1, 2, 6, 8), (1, 2, 6, 8))
    torch._dynamo.reset()
    compiled = torch.compile(
        lambda q, k, v: lt.scaled_dot_product_attention(q, k, v, report=True)[0],
        fullgraph=True,
        backend="eager",
    )
    with pytest.raises(Exception, match="cannot be traced by torch.compile"):
        compiled(q, k, v)


OP_ARGS = {
    "plain": dict(mask=None, sinks=None, causal="none", scale=None, out_bshd=False),
    "mask_top_left": dict(mask="bool", sinks=None, causal="top_left", scale=0.3, out_bshd=False),
    "sinks_bshd": dict(mask="float", sinks=True, causal="bottom_right", scale=None, out_bshd=True),
    "window_top_left": dict(
        mask="bool", sinks=None, causal="top_left", window=(2, -1), scale=None, out_bshd=True
    ),
    "window_both_sides": dict(
        mask=None, sinks=True, causal="none", window=(1, 3), scale=None, out_bshd=False
    ),
    "softcap_window": dict(
        mask="float", sinks=None, causal="top_left", window=(3, -1), softcap=2.5, scale=None,
        out_bshd=True,
    ),  # fmt: skip
}


@pytest.mark.parametrize("case", list(OP_ARGS))
def test_opcheck(rng, case):
    """torch.library.opcheck: schema, fake tensor (shapes, strides), autograd
    registration and AOT dispatch with dynamic shapes."""
    a = OP_ARGS[case]
    q, k, v = inputs(rng, "float32", "cpu", (2, 4, 5, 16), (2, 2, 9, 16), (2, 2, 9, 16))
    mask = {
        None: None,
        "bool": torch.from_numpy(rng.random((2, 1, 5, 9)) > 0.3),
        "float": torch.from_numpy(rng.standard_normal((5, 9), dtype=np.float32)),
    }[a["mask"]]
    sinks = torch.linspace(-1, 1, 4) if a["sinks"] else None
    p = longattn.Policy()
    left, right = a.get("window", (-1, -1))
    softcap = a.get("softcap", 0.0)
    args = (
        q, k, v, mask, sinks, a["causal"], left, right, softcap, a["scale"], p.budget_ms,
        p.safety, p.chunk_threshold_keys, p.workspace_limit_bytes, p.fixed_chunk_keys,
        p.fixed_query_rows, a["out_bshd"],
    )  # fmt: skip
    result = torch.library.opcheck(torch.ops.longattn.attention.default, args)
    assert set(result.values()) == {"SUCCESS"}, result
    out = torch.ops.longattn.attention(*args)
    want = longattn.attention(
        q,
        k,
        v,
        mask=mask,
        sinks=sinks,
        causal=False if a["causal"] == "none" else a["causal"],
        window=None if "window" not in a else tuple(None if w == -1 else w for w in (left, right)),
        softcap=softcap,
        scale=a["scale"],
    )
    assert torch.equal(out.transpose(1, 2) if a["out_bshd"] else out, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", ["op", "compiled"])
def test_op_softcap(rng, dtype, path):
    """softcap reaches the C++ call through the op (called directly, and as
    torch.compile(fullgraph=True) traces longattn.torch's internal call):
    equal to the float64 reference with each logit capped at
    c * tanh(s / c), and far from the uncapped one."""
    c, scale = 1.5, 0.5  # logits of scale * q.k (|s| up to ~10 here) are capped hard
    q, k, v = (randn(rng, s, dtype) for s in ((1, 4, 13, 32), (1, 2, 21, 32), (1, 2, 21, 16)))
    mask = (rng.standard_normal((13, 21)) * 0.5).astype(np.float32)
    tq, tk, tv = (to_torch(x, dtype) for x in (q, k, v))
    tmask = torch.from_numpy(mask)
    p = longattn.Policy()
    if path == "op":
        out = torch.ops.longattn.attention(
            tq, tk, tv, tmask, None, "bottom_right", -1, -1, c, scale, p.budget_ms, p.safety,
            p.chunk_threshold_keys, p.workspace_limit_bytes, p.fixed_chunk_keys,
            p.fixed_query_rows, False,
        )  # fmt: skip
    else:

        def call(q, k, v, m):
            return lt._attention(q, k, v, m, "bottom_right", scale, True, softcap=c)[0]

        torch._dynamo.reset()
        graphs = []
        compiled = torch.compile(call, fullgraph=True, backend=graph_recorder(graphs))
        out = compiled(tq, tk, tv, tmask)
        assert graphs and all("longattn.attention" in g for g in graphs)
    f64 = [x.astype(np.float64) for x in (q, k, v)]
    want = reference(*f64, causal="bottom_right", mask=mask, scale=scale, softcap=c)
    check(out, want, dtype, keys=21)
    uncapped = reference(*f64, causal="bottom_right", mask=mask, scale=scale)
    assert output_error(out, uncapped[0]) > 10 * tolerance(dtype, 21)


def test_docstrings():
    doc = inspect.getdoc(lt.scaled_dot_product_attention)
    for name in inspect.signature(lt.scaled_dot_product_attention).parameters:
        assert f"\n    {name}: " in doc, name
    for text in ("TOP-LEFT", "gives 0", "dropout", "torch.compile"):
        assert text in doc
    assert inspect.getdoc(lt) and inspect.getdoc(lt.attention_op)
    assert "microseconds" in inspect.getdoc(lt)
