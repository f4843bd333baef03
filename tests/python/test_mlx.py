"""longattn.mlx: the drop-in for mx.fast.scaled_dot_product_attention, on MLX's
CPU device (mlx[cpu] from PyPI), through both paths: "native" (longattn's C++
CPU backend reading the MLX arrays in place) and "ops" (the chunked algorithm
as MLX operations, what a Metal stream runs). With
LONGATTN_MLX_TEST_DEVICE=gpu the same cases run on MLX's GPU (the GPU
machine's mlx[cuda13], where "native" is longattn's CUDA kernels; run them
with MLX_ENABLE_TF32=0, or MLX's float32 products, both its fused call's
and the operations path's, carry TF32's 1e-3 error). Each case is checked against
the float64 reference and against MLX's own fused call: every mask form and
broadcast, sinks, GQA, dtypes, Lq > Lk and Lq < Lk, rows that see no key,
chunked against single pass, the memory limit, cancellation, the report and
the errors."""

import math
import os
import time

import numpy as np
import pytest

from support import check, output_error, reference, tolerance

mx = pytest.importorskip("mlx.core", reason="mlx is not installed (pip install 'mlx[cpu]')")

import longattn  # noqa: E402
import longattn.mlx as lmx  # noqa: E402

sdpa = lmx.scaled_dot_product_attention
PATHS = ("native", "ops")
MX_DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
# Rectangles of 8 queries x 16 keys, one dispatch a submission.
SPLIT = longattn.Policy(fixed_query_rows=8, fixed_chunk_keys=16, budget_ms=1e-4)


DEVICE = mx.gpu if os.environ.get("LONGATTN_MLX_TEST_DEVICE") == "gpu" else mx.cpu


@pytest.fixture(autouse=True)
def on_device():
    with mx.stream(DEVICE):
        yield


def rand(rng, shape, dtype="float32"):
    """Standard normal values as an mx.array of `dtype`."""
    return mx.array(rng.standard_normal(shape, dtype=np.float32)).astype(MX_DTYPES[dtype])


def f64(a):
    """An mx.array's values (any dtype) as float64 NumPy."""
    return np.array(a.astype(mx.float32) if a.dtype != mx.bool_ else a).astype(
        np.float64 if a.dtype != mx.bool_ else bool)


def want(q, k, v, *, mask=None, scale, sinks=None):
    """The float64 reference on the values the call sees (MLX's causal is
    bottom-right, as the reference's causal=True)."""
    causal = isinstance(mask, str)
    arr = None if mask is None or causal else f64(mask)
    return reference(f64(q), f64(k), f64(v), causal=causal, mask=arr, scale=scale,
                     sinks=None if sinks is None else f64(sinks))


def rows_seen(w):
    """Rows (B, H, L) of a reference result that see at least one key."""
    return np.isfinite(w[1])


def check_vs_mlx(out, q, k, v, dtype, keys, **kw):
    """Equal to MLX's fused call on every row that sees a key (MLX's rows
    without one are the mean of V or NaN, longattn's are 0)."""
    theirs = mx.fast.scaled_dot_product_attention(q, k, v, **kw)
    seen = rows_seen(want(q, k, v, **kw))[..., None]
    err = output_error(np.where(seen, f64(out), 0), np.where(seen, f64(theirs), 0))
    # Both sides round to `dtype`: twice the table's tolerance.
    assert err <= 2 * tolerance(dtype, keys), f"against MLX: {err:.3g} ({dtype})"


def run_path(q, k, v, *, path, **kw):
    """The drop-in's output on `path`. On "ops" the LSE is asked for, so that
    a single pass runs as MLX operations rather than through MLX's fused call
    (the route a short call takes, which would compare MLX with itself), and
    the report must say the operations ran."""
    if path != "ops":
        return sdpa(q, k, v, path=path, **kw)
    out, _, rep = sdpa(q, k, v, path=path, return_lse=True, report=True, **kw)
    assert {x for s in rep.submissions for x in s.kernels} <= {"mlx.ops"}
    return out


# ---- values --------------------------------------------------------------------

MASKS = [
    pytest.param(None, id="none"),
    pytest.param("causal", id="causal"),
    pytest.param(("bool", (11, 37)), id="bool-LqLk"),
    pytest.param(("bool", (37,)), id="bool-Lk"),
    pytest.param(("bool", (2, 1, 11, 37)), id="bool-B1LqLk"),
    pytest.param(("bool", (1, 4, 1, 37)), id="bool-1H1Lk"),
    pytest.param(("bool", (11, 1)), id="bool-Lq1"),
    pytest.param(("add", (4, 11, 37)), id="add-HLqLk"),
    pytest.param(("add", (2, 4, 11, 37)), id="add-full"),
    pytest.param(("add16", (11, 37)), id="add-float16-on-float32"),
    pytest.param(("int", (11, 37)), id="add-int32"),
]


def make_mask(rng, spec, dtype):
    if spec is None or isinstance(spec, str):
        return spec
    kind, shape = spec
    if kind == "bool":
        m = rng.random(shape) < 0.7
        m.reshape(-1, shape[-1])[:, 0] = True  # every row keeps a key
        return mx.array(m)
    if kind == "int":
        return mx.array(rng.integers(-3, 3, shape).astype(np.int32))
    a = rng.standard_normal(shape).astype(np.float32)
    a[rng.random(shape) < 0.2] = -np.inf
    a.reshape(-1, shape[-1])[:, 0] = 0.5
    mdtype = mx.float16 if kind == "add16" else MX_DTYPES[dtype]
    return mx.array(a).astype(mdtype)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("policy", [None, SPLIT], ids=["single", "chunked"])
def test_every_mask_form(rng, path, mask, policy):
    q = rand(rng, (2, 4, 11, 16))
    k, v = rand(rng, (2, 2, 37, 16)), rand(rng, (2, 2, 37, 16))
    m = make_mask(rng, mask, "float32")
    out, lse = sdpa(q, k, v, scale=0.3, mask=m, path=path, return_lse=True, policy=policy)
    assert isinstance(out, mx.array) and out.dtype == mx.float32 and out.shape == (2, 4, 11, 16)
    check(out, want(q, k, v, mask=m, scale=0.3), "float32", lse=lse, keys=37)
    check_vs_mlx(out, q, k, v, "float32", 37, scale=0.3, mask=m)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", MX_DTYPES)
@pytest.mark.parametrize("Lq, Lk", [(1, 70), (9, 70), (70, 70), (70, 9)])
@pytest.mark.parametrize("chunked", [False, True], ids=["single", "chunked"])
def test_dtypes_lengths_causal(rng, path, dtype, Lq, Lk, chunked):
    q = rand(rng, (1, 4, Lq, 32), dtype)
    k, v = rand(rng, (1, 1, Lk, 32), dtype), rand(rng, (1, 1, Lk, 24), dtype)
    policy = SPLIT if chunked else None
    out, lse = sdpa(q, k, v, scale=32**-0.5, mask="causal", path=path, policy=policy,
                    return_lse=True)
    assert out.dtype == MX_DTYPES[dtype] and out.shape == (1, 4, Lq, 24)
    w = want(q, k, v, mask="causal", scale=32**-0.5)
    check(out, w, dtype, lse=lse, keys=Lk)
    check_vs_mlx(out, q, k, v, dtype, Lk, scale=32**-0.5, mask="causal")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("group", [1, 2, 3, 8])
def test_gqa_with_sinks(rng, path, group):
    Hkv = 2
    q = rand(rng, (2, Hkv * group, 13, 8))
    k, v = rand(rng, (2, Hkv, 40, 8)), rand(rng, (2, Hkv, 40, 8))
    sinks = mx.array(rng.standard_normal(Hkv * group).astype(np.float32))
    for policy in (None, SPLIT):
        out, lse = sdpa(q, k, v, scale=0.5, sinks=sinks, path=path, policy=policy,
                        return_lse=True)
        check(out, want(q, k, v, scale=0.5, sinks=sinks), "float32", lse=lse, keys=40)
    check_vs_mlx(out, q, k, v, "float32", 40, scale=0.5, sinks=sinks)


@pytest.mark.parametrize("path", PATHS)
def test_mixed_dtypes_promote_as_mlx_does(rng, path):
    # float16 q with float32 k, v: float32, as MLX computes it; a float16
    # sink promotes to float32 too.
    q = rand(rng, (1, 2, 5, 8), "float16")
    k, v = rand(rng, (1, 2, 9, 8)), rand(rng, (1, 2, 9, 8))
    sinks = mx.zeros((2,), dtype=mx.float16)
    out = run_path(q, k, v, scale=1.0, sinks=sinks, path=path)
    assert out.dtype == mx.float32
    check(out, want(q, k, v, scale=1.0, sinks=sinks), "float32", keys=9)


@pytest.mark.parametrize("path", PATHS)
def test_strided_inputs_are_read_in_place(rng, path):
    # A transposed cache ([B, L, H, D] as [B, H, L, D]) and a slice of it.
    base = rand(rng, (1, 50, 2, 16))
    k = base.transpose(0, 2, 1, 3)[:, :, 3:40]
    v = rand(rng, (1, 2, 37, 16))
    q = rand(rng, (1, 4, 6, 16))
    out = run_path(q, k, v, scale=0.25, mask="causal", path=path)
    check(out, want(q, k, v, mask="causal", scale=0.25), "float32", keys=37)


# ---- rows that see no key -------------------------------------------------------


def no_key_cases(rng):
    bool_mask = np.ones((7, 20), dtype=bool)
    bool_mask[[0, 4]] = False
    add_mask = np.zeros((1, 2, 7, 20), dtype=np.float32)
    add_mask[:, :, [1, 6]] = -np.inf
    return {
        "bool": dict(mask=mx.array(bool_mask), Lk=20),
        "additive": dict(mask=mx.array(add_mask), Lk=20),
        "causal-Lq>Lk": dict(mask="causal", Lk=4),
        "Lk=0": dict(mask=None, Lk=0),
    }


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", ["bool", "additive", "causal-Lq>Lk", "Lk=0"])
@pytest.mark.parametrize("policy", [None, SPLIT], ids=["single", "chunked"])
@pytest.mark.parametrize("with_sinks", [False, True], ids=["", "sinks"])
def test_rows_without_keys_are_zero_with_lse_minus_inf(rng, path, case, policy, with_sinks):
    c = no_key_cases(rng)[case]
    q = rand(rng, (1, 2, 7, 8))
    k, v = rand(rng, (1, 2, c["Lk"], 8)), rand(rng, (1, 2, c["Lk"], 8))
    sinks = mx.array([0.5, -1.0]) if with_sinks else None
    w = want(q, k, v, mask=c["mask"], scale=1.0, sinks=sinks)
    empty = ~np.isfinite(w[1]) if not with_sinks else (w[0] == 0).all(axis=-1)
    assert empty.any()
    for lse_wanted in (False, True):  # with no LSE, the ops path's single pass is MLX's kernel
        got = sdpa(q, k, v, scale=1.0, mask=c["mask"], sinks=sinks, path=path, policy=policy,
                   return_lse=lse_wanted)
        out, lse = got if lse_wanted else (got, None)
        o = f64(out)
        assert not np.isnan(o).any()
        assert (o[empty] == 0).all()
        check(out, w, "float32", lse=lse, keys=max(c["Lk"], 1))
        if lse is not None:
            l = f64(lse)
            assert not np.isnan(l).any()
            if with_sinks:
                sink = np.broadcast_to(f64(sinks)[None, :, None], l.shape)
                assert np.allclose(l[empty], sink[empty])
            else:
                assert (l[empty] == -np.inf).all()


# ---- chunking, the memory limit, re-plans ---------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_chunked_equals_single_pass(rng, path):
    q = rand(rng, (1, 4, 40, 16), "bfloat16")
    k, v = rand(rng, (1, 2, 300, 16), "bfloat16"), rand(rng, (1, 2, 300, 16), "bfloat16")
    mask = mx.array(rng.random((40, 300)) < 0.8)
    single, lse1, r1 = sdpa(q, k, v, scale=0.25, mask=mask, path=path, return_lse=True,
                            report=True, budget_ms=0)
    many, lse2, r2 = sdpa(q, k, v, scale=0.25, mask=mask, path=path, return_lse=True,
                          report=True, policy=SPLIT)
    assert len(r1.submissions) == 1 and not r1.plan.chunked
    assert r2.plan.chunked and len(r2.submissions) == 5 * math.ceil(300 / 16)
    # Same float32 state arithmetic in another order: equal to within the
    # rounding of the bfloat16 output, and LSE to float32 rounding.
    assert output_error(many, f64(single)) <= 2 * tolerance("bfloat16")
    assert np.abs(f64(lse1) - f64(lse2)).max() <= 1e-5
    check(many, want(q, k, v, mask=mask, scale=0.25), "bfloat16", lse=lse2, keys=300)


def test_ops_path_keeps_the_score_workspace_under_the_limit(rng):
    """The scores of the whole call (4 heads x 256 x 2048 in float32, 8 MiB,
    three times that with exponentials and mask) go through a limit of 256
    KiB: pieces of fewer rows and keys, evaluated before they pass it. The
    result is the same, and MLX's peak memory stays near the limit."""
    q = rand(rng, (1, 4, 256, 16))
    k, v = rand(rng, (1, 4, 2048, 16)), rand(rng, (1, 4, 2048, 16))
    free = sdpa(q, k, v, scale=0.25, mask="causal", path="ops", budget_ms=0, return_lse=True)
    mx.eval(*free)
    limit = 256 << 10
    mx.reset_peak_memory()
    base = mx.get_active_memory()
    # The CPU profile's tiles on any device (a GPU profile's query groups
    # alone need more than this limit).
    out, lse = sdpa(q, k, v, scale=0.25, mask="causal", path="ops", return_lse=True,
                    policy=longattn.Policy(budget_ms=0, workspace_limit_bytes=limit),
                    profile=lmx.default_profile(mx.cpu))
    mx.eval(out, lse)
    peak = mx.get_peak_memory() - base
    outputs = 2 * (out.nbytes + lse.nbytes)  # the finished rows and their concatenation
    assert peak <= 2 * limit + outputs, f"peak {peak} B over a {limit} B limit"
    assert output_error(out, f64(free[0])) <= tolerance("float32")
    check(out, want(q, k, v, mask="causal", scale=0.25), "float32", lse=lse, keys=2048)


def test_ops_path_refuses_a_limit_below_one_row_of_scores(rng):
    q = rand(rng, (1, 4, 64, 16))
    k = rand(rng, (1, 4, 512, 16))
    with pytest.raises(longattn.InvalidArgument, match="policy.workspace_limit_bytes = 1000"):
        sdpa(q, k, k, scale=1.0, path="ops",
             policy=longattn.Policy(workspace_limit_bytes=1000, fixed_chunk_keys=64))


def test_ops_path_probes_a_fresh_profile_and_replans(rng):
    """With no rate measured for the call's key, the plan starts with a small
    probe; its measurement replaces the guess, and the rest is re-planned."""
    profile = lmx.default_profile(mx.cpu)
    profile.gflops = {}
    profile.default_gflops = 100.0  # a guess: no rate for the key
    q = rand(rng, (1, 4, 128, 32))
    k, v = rand(rng, (1, 4, 1024, 32)), rand(rng, (1, 4, 1024, 32))
    out, rep = sdpa(q, k, v, scale=32**-0.5, mask="causal", path="ops", budget_ms=20,
                    profile=profile, report=True)
    assert rep.completed and rep.replans >= 1 and "probe" in rep.plan.reason
    assert len(rep.submissions) >= 2
    key = longattn.DeviceProfile.rate_key("float32", 32, causal=True)
    assert profile.gflops[key] > 0  # measured now
    check(out, want(q, k, v, mask="causal", scale=32**-0.5), "float32", keys=1024)


@pytest.mark.skipif(DEVICE != mx.cpu, reason="sized for MLX's CPU (on a GPU the call is too "
                    "short for a 50-way split of its time)")
def test_ops_path_splits_the_group_in_flight_when_it_runs_slow(rng):
    """A profile that believes the operations path ten times faster than it
    runs here plans a query group as a few long key chunks; the first one
    overshoots, and the group's remaining chunks are split along their keys
    (one init, one finalize, accumulates between) at the rate the run now
    believes."""
    q = rand(rng, (1, 4, 64, 32))
    k, v = rand(rng, (1, 4, 8192, 32)), rand(rng, (1, 4, 8192, 32))
    t = time.perf_counter()
    mx.eval(*sdpa(q, k, v, scale=0.2, path="ops", budget_ms=0, return_lse=True))
    ms = (time.perf_counter() - t) * 1e3
    key = longattn.DeviceProfile.rate_key("float32", 32)
    profile = lmx.default_profile(mx.cpu)
    profile.gflops = {key: 10 * 4 * 4 * 32 * 64 * 8192 / (ms * 1e6)}
    budget = ms / 50  # about 5 chunks, each planned to a tenth of what it takes
    planned = longattn.plan(q, k, v, scale=0.2, policy=longattn.Policy(budget_ms=budget),
                            profile=profile)
    out, lse, rep = sdpa(q, k, v, scale=0.2, path="ops", budget_ms=budget, profile=profile,
                         return_lse=True, report=True)
    assert planned.chunked and len(planned.submissions) >= 3
    assert rep.replans >= 1 and len(rep.submissions) > len(planned.submissions)
    modes = [d.mode for s in rep.plan.submissions for d in s.dispatches]
    assert modes[0] == "init" and modes[-1] == "finalize"
    assert set(modes[1:-1]) == {"accumulate"}
    assert [d.rect.k1 for s in rep.plan.submissions for d in s.dispatches][-1] == 8192
    check(out, want(q, k, v, scale=0.2), "float32", lse=lse, keys=8192)


@pytest.mark.parametrize("path", PATHS)
def test_rows_that_see_keys_only_late(rng, path):
    """Row i sees keys [3i + 40, 3i + 52) only: in early key chunks it has no
    key yet (its state stays empty, -inf - (-inf) must not turn into NaN),
    and the last rows see none at all."""
    Lq, Lk = 24, 100
    i, j = np.arange(Lq)[:, None], np.arange(Lk)[None, :]
    mask = mx.array((j >= 3 * i + 40) & (j < 3 * i + 52))
    q = rand(rng, (1, 2, Lq, 8))
    k, v = rand(rng, (1, 2, Lk, 8)), rand(rng, (1, 2, Lk, 8))
    for policy in (None, SPLIT):
        out, lse = sdpa(q, k, v, scale=1.0, mask=mask, path=path, policy=policy, return_lse=True)
        check(out, want(q, k, v, mask=mask, scale=1.0), "float32", lse=lse, keys=Lk)


# ---- progress, cancel, the report ------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_progress_and_cancel(rng, path):
    q = rand(rng, (1, 2, 32, 8))
    k, v = rand(rng, (1, 2, 64, 8)), rand(rng, (1, 2, 64, 8))
    seen = []

    def progress(done, total, rep):
        seen.append((done, total, len(rep.submissions)))
        return len(rep.submissions) < 9  # stop after the 9th submission

    with pytest.raises(longattn.Cancelled, match="cancelled by the progress callback") as e:
        sdpa(q, k, v, scale=1.0, path=path, policy=SPLIT, progress=progress, return_lse=True)
    err = e.value
    assert len(seen) == 9 and all(t == 32 for _, t, _ in seen)
    assert [n for _, _, n in seen] == list(range(1, 10))
    assert not err.report.completed and len(err.report.submissions) == 9
    # 4 key chunks a group of 8 rows: 9 submissions finish 2 groups.
    assert err.finished_rows == [(0, 16)] and seen[-1][0] == 16
    w = want(q, k, v, scale=1.0)
    assert isinstance(err.out, mx.array)
    check(err.out[:, :, :16], (w[0][:, :, :16], w[1][:, :, :16]), "float32",
          lse=err.lse[:, :, :16], keys=64)


@pytest.mark.parametrize("path", PATHS)
def test_progress_exception_propagates(rng, path):
    q = rand(rng, (1, 2, 32, 8))

    class Stop(Exception):
        pass

    def progress(done, total, rep):
        raise Stop("from the callback")

    with pytest.raises(Stop, match="from the callback"):
        sdpa(q, q, q, scale=1.0, path=path, policy=SPLIT, progress=progress)


@pytest.mark.parametrize("path", PATHS)
def test_report(rng, path):
    q = rand(rng, (1, 2, 32, 8))
    k = rand(rng, (1, 2, 64, 8))
    out, rep = sdpa(q, k, k, scale=1.0, path=path, policy=SPLIT, report=True)
    assert isinstance(rep, longattn.RunReport) and rep.completed
    assert len(rep.submissions) == 4 * 4 and rep.finished_rows == [(0, 32)]
    assert rep.total_flops == pytest.approx(4 * 2 * 8 * 32 * 64)
    assert all(s.measured_ms > 0 for s in rep.submissions)
    assert rep.plan.chunked and rep.plan.num_dispatches == 16
    kernels = {k for s in rep.submissions for k in s.kernels}
    native = "cpu" if DEVICE == mx.cpu else "cuda"  # longattn's backend of MLX's device
    if path == "ops":
        assert rep.backend == f"mlx.{DEVICE.name}" and kernels == {"mlx.ops"}
    else:
        assert rep.backend == native and all(k.startswith(native + ".") for k in kernels)
    _, rep = sdpa(q, k, k, scale=1.0, path="ops", report=True)
    assert [s.kernels for s in rep.submissions] == [["mlx.fused"]]


@pytest.mark.parametrize("path", PATHS)
def test_stream_forms(rng, path):
    """stream= as MLX takes it: a Stream, a Device, a device type, or None."""
    q = rand(rng, (1, 2, 12, 8))
    k = rand(rng, (1, 2, 30, 8))
    w = want(q, k, k, mask="causal", scale=0.5)
    for stream in (mx.new_stream(mx.cpu), mx.Device(mx.cpu), mx.cpu, None):
        out = sdpa(q, k, k, scale=0.5, mask="causal", stream=stream, path=path, policy=SPLIT)
        check(out, w, "float32", keys=30)


def test_default_budget(rng):
    q = rand(rng, (1, 1, 4, 8))
    _, rep = sdpa(q, q, q, scale=1.0, report=True)
    assert rep.budget_ms == lmx.DEFAULT_BUDGET_MS == 250
    _, rep = sdpa(q, q, q, scale=1.0, report=True, budget_ms=7)
    assert rep.budget_ms == 7


# ---- shapes MLX's own function accepts ---------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("B, Hq, Hkv, Lq, Lk, D", [
    (1, 32, 8, 1, 1000, 128),  # a decode step of a GQA model
    (2, 6, 6, 17, 17, 80),
    (1, 8, 1, 130, 260, 64),  # MQA, a prefill step over a cache
    (1, 4, 4, 1, 1, 256),  # one query, one key, the widest head
    (3, 4, 2, 33, 5, 96),  # Lq > Lk: the first 28 rows see no key
    (0, 2, 2, 4, 4, 8),
    (1, 2, 2, 0, 4, 8),
])
def test_model_shapes(rng, path, B, Hq, Hkv, Lq, Lk, D):
    q = rand(rng, (B, Hq, Lq, D), "float16")
    k, v = rand(rng, (B, Hkv, Lk, D), "float16"), rand(rng, (B, Hkv, Lk, D), "float16")
    out = run_path(q, k, v, scale=D**-0.5, mask="causal", path=path)
    assert out.shape == (B, Hq, Lq, D) and out.dtype == mx.float16
    if B * Lq:
        check(out, want(q, k, v, mask="causal", scale=D**-0.5), "float16", keys=Lk)
        check_vs_mlx(out, q, k, v, "float16", Lk, scale=D**-0.5, mask="causal")


def test_longattn_attention_takes_mlx_arrays(rng):
    q = rand(rng, (1, 2, 5, 8), "bfloat16")
    k = rand(rng, (1, 2, 9, 8), "bfloat16")
    out, lse = longattn.attention(q, k, k, causal=True, return_lse=True)
    assert isinstance(out, mx.array) and out.dtype == mx.bfloat16
    assert isinstance(lse, mx.array) and lse.dtype == mx.float32
    check(out, want(q, k, k, mask="causal", scale=8**-0.5), "bfloat16", lse=lse, keys=9)


@pytest.mark.parametrize("path", PATHS)
def test_lse_merges_key_shards(rng, path):
    """What return_lse is for: attention over two halves of the keys, merged
    by longattn.merge_states (MLX arrays in and out), is attention over all."""
    q = rand(rng, (1, 4, 9, 16), "float16")
    k, v = rand(rng, (1, 2, 60, 16), "float16"), rand(rng, (1, 2, 60, 16), "float16")
    halves = [sdpa(q, k[:, :, a:b], v[:, :, a:b], scale=0.25, path=path, return_lse=True)
              for a, b in ((0, 25), (25, 60))]
    out, lse = longattn.merge_states(halves, return_lse=True)
    assert isinstance(out, mx.array) and out.dtype == mx.float16
    check(out, want(q, k, v, scale=0.25), "float16", lse=lse, keys=60)


# ---- errors ----------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("change, error, message", [
    (dict(q=np.zeros((1, 2, 3, 8), np.float32)), TypeError, "q must be an mx.array"),
    (dict(k=np.zeros((1, 2, 3, 8))), TypeError, "k must be an mx.array"),
    (dict(mask="upper"), longattn.InvalidArgument, "mask = 'upper'"),
    (dict(mask=[[True]]), TypeError, "mask must be None, 'causal' or an mx.array"),
    (dict(mask=mx.zeros((1, 1, 1, 3, 4), dtype=mx.bool_)), longattn.InvalidArgument,
     r"mask.shape = \(1, 1, 1, 3, 4\) has 5 dims"),
    (dict(mask=mx.zeros((3, 5), dtype=mx.bool_)), longattn.InvalidArgument, "mask.shape"),
    (dict(mask=mx.zeros((2, 2, 3, 4), dtype=mx.bool_)), longattn.InvalidArgument, "mask.shape"),
    (dict(sinks=mx.zeros((3,))), longattn.InvalidArgument, "sinks"),
    (dict(sinks=mx.zeros((1, 2))), longattn.InvalidArgument, "sinks"),
    (dict(sinks=np.zeros(2, np.float32)), TypeError, "sinks must be an mx.array"),
    (dict(q=mx.zeros((1, 3, 3, 8))), longattn.InvalidArgument, r"q.shape\[1\] = 3"),
    (dict(q=mx.zeros((2, 3, 8))), longattn.InvalidArgument, r"q.shape = \(2, 3, 8\)"),
    (dict(k=mx.zeros((1, 2, 4, 6))), longattn.InvalidArgument, "k.shape"),
    (dict(k=mx.zeros((1, 0, 4, 8)), v=mx.zeros((1, 0, 4, 8))), longattn.InvalidArgument,
     r"k.shape\[1\] = 0"),
    (dict(q=mx.zeros((1, 2, 3, 300)), k=mx.zeros((1, 2, 4, 300)), v=mx.zeros((1, 2, 4, 300))),
     longattn.InvalidArgument, r"q.shape\[3\] = 300"),
    (dict(v=mx.zeros((1, 2, 5, 8))), longattn.InvalidArgument, "v.shape"),
    (dict(k=mx.zeros((2, 2, 4, 8)), v=mx.zeros((2, 2, 4, 8))), longattn.InvalidArgument,
     "k.shape"),
    (dict(scale="big"), longattn.InvalidArgument, "scale = 'big'"),
    (dict(path="gpu"), longattn.InvalidArgument, "path = 'gpu'"),
    (dict(budget_ms="x"), longattn.InvalidArgument, "budget_ms = 'x'"),
    (dict(policy=5), longattn.InvalidArgument, "policy = 5"),
    (dict(progress=3), longattn.InvalidArgument, "progress = 3"),
    (dict(return_lse="yes"), longattn.InvalidArgument, "return_lse = 'yes'"),
    (dict(stream="cpu"), TypeError, "stream = 'cpu'"),
])
def test_bad_input_names_the_argument(path, change, error, message):
    args = dict(q=mx.zeros((1, 2, 3, 8)), k=mx.zeros((1, 2, 4, 8)), v=mx.zeros((1, 2, 4, 8)),
                scale=1.0, path=path)
    args.update(change)
    q, k, v = args.pop("q"), args.pop("k"), args.pop("v")
    with pytest.raises(error, match=message):
        sdpa(q, k, v, **args)


@pytest.mark.parametrize("change, error, message, mlx_too", [
    (dict(q=mx.zeros((1, 2, 3, 8), dtype=mx.int8), k=mx.zeros((1, 2, 4, 8), dtype=mx.int8),
          v=mx.zeros((1, 2, 4, 8), dtype=mx.int8)), longattn.InvalidArgument, "not a floating",
     True),
    (dict(q=mx.zeros((1, 2, 3, 8), dtype=mx.float16), k=mx.zeros((1, 2, 4, 8), dtype=mx.float16),
          v=mx.zeros((1, 2, 4, 8), dtype=mx.float16), mask=mx.zeros((3, 4))),
     longattn.InvalidArgument, "mask.dtype = mlx.core.float32 does not promote", True),
    (dict(q=mx.zeros((1, 2, 3, 8), dtype=mx.bfloat16), k=mx.zeros((1, 2, 4, 8), dtype=mx.bfloat16),
          v=mx.zeros((1, 2, 4, 8), dtype=mx.bfloat16), sinks=mx.zeros((2,), dtype=mx.float16)),
     longattn.InvalidArgument, "sinks.dtype = mlx.core.float16 does not promote", True),
    # MLX's CPU computes float64; longattn does not (a documented difference).
    # (Made on the CPU stream: MLX's GPU has no float64 arrays.)
    (dict(q=mx.zeros((1, 2, 3, 8), dtype=mx.float64, stream=mx.cpu)), longattn.Unsupported,
     "float64", False),
])
def test_dtype_rules_are_mlx_rules(change, error, message, mlx_too):
    args = dict(q=mx.zeros((1, 2, 3, 8)), k=mx.zeros((1, 2, 4, 8)), v=mx.zeros((1, 2, 4, 8)),
                scale=1.0)
    args.update(change)
    q, k, v = args.pop("q"), args.pop("k"), args.pop("v")
    with pytest.raises(error, match=message):
        sdpa(q, k, v, **args)
    if mlx_too:  # MLX refuses the same call, with a ValueError as longattn's InvalidArgument
        with pytest.raises(ValueError):
            mx.eval(mx.fast.scaled_dot_product_attention(q, k, v, **args))


# ---- calibrate -------------------------------------------------------------------


def test_calibrate_measures_every_rate_key():
    lines = []
    p = lmx.calibrate(mx.cpu, dtypes=["float32"], head_dims=[16], heads=2, q_len=64, k_len=128,
                      reps=1, log=lines.append)
    assert p.backend == "mlx.cpu" and p.invalid_field() == ""
    for causal, masked in ((False, False), (True, False), (False, True)):
        assert p.gflops[longattn.DeviceProfile.rate_key("float32", 16, causal, masked)] > 0
    assert p.submission_overhead_ms > 0 and p.state_gbps > 0
    assert lines and lines[0].startswith("longattn.mlx.calibrate: mlx.cpu")
    assert lmx.default_profile(mx.cpu).gflops == p.gflops


@pytest.mark.parametrize("kwargs, message", [
    (dict(reps=0), "reps = 0"),
    (dict(dtypes=[]), "dtypes is empty"),
    (dict(dtypes=["int8"]), "'int8'"),
    (dict(head_dims=[300]), "head_dims: 300"),
])
def test_calibrate_refuses_bad_options(kwargs, message):
    with pytest.raises(longattn.InvalidArgument, match=message):
        lmx.calibrate(mx.cpu, **kwargs)


# ---- MLX's CUDA backend: its arrays handed to longattn's CUDA kernels ----------


@pytest.mark.skipif(mx.cuda.is_available(),
                    reason="MLX's CUDA backend allocates every array in managed memory")
def test_memory_that_is_not_cuda_managed_is_refused_not_read(rng):
    """The CUDA route hands MLX's arrays to the CUDA kernels as managed memory;
    memory that is not (here MLX's CPU arrays) is refused by name, never read
    as if it were."""
    from longattn import _arrays

    q = rand(rng, (1, 2, 8, 16))
    with _arrays.mlx_arrays_on_cuda():
        with pytest.raises(longattn.Unsupported, match=r"\] q was given as CUDA managed memory"):
            longattn.attention(q, q, q)
    out = longattn.attention(q, q, q)  # outside it, the CPU backend as before
    check(out, want(q, q, q, scale=16**-0.5), "float32", keys=8)


CUDA_ROUTE = pytest.mark.skipif(
    not (mx.cuda.is_available() and longattn.cuda_built()),
    reason="needs MLX's CUDA backend (mlx[cuda13]) and longattn built with CUDA")


@CUDA_ROUTE
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("mask", [None, "causal", "bool", "additive"])
def test_cuda_backend_arrays_run_on_the_cuda_kernels(rng, dtype, mask):
    """On MLX's CUDA backend the call runs on longattn's CUDA kernels (the
    report names them), chunked into one-dispatch submissions, and MLX's
    later operations (the float32 casts below, on its GPU stream) read the
    finished result: O and LSE against float64 and against MLX's call."""
    q = rand(rng, (2, 8, 300, 64), dtype)
    k, v = rand(rng, (2, 2, 700, 64), dtype), rand(rng, (2, 2, 700, 64), dtype)
    m = mask
    if mask == "bool":
        m = mx.array(rng.random((300, 700)) < 0.7)
    elif mask == "additive":
        m = mx.array(rng.standard_normal((1, 8, 300, 700), dtype=np.float32)).astype(
            MX_DTYPES[dtype])
    with mx.stream(mx.gpu):
        out, lse, rep = sdpa(q, k, v, scale=0.125, mask=m, return_lse=True, report=True,
                             policy=SPLIT)
        assert rep.backend == "cuda" and "mlx.ops" not in {
            x for s in rep.submissions for x in s.kernels}
        assert len(rep.submissions) > 1  # chunked: the running state on the GPU
        w = want(q, k, v, mask=m, scale=0.125)
        check(np.array(out.astype(mx.float32)), w, dtype, lse=np.array(lse), keys=700)
        check_vs_mlx(out, q, k, v, dtype, 700, scale=0.125, mask=m)
