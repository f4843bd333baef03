"""plan(), merge_states(), DeviceProfile, Policy, and the package itself
(docstrings, stubs, what importing it imports)."""

import copy
import importlib.resources
import inspect
import subprocess
import sys

import numpy as np
import pytest

import longattn
from longattn import _core
from support import as_float64, check, randn, reference, requires_torch, to_torch

FRAMEWORKS = ["numpy", pytest.param("torch", marks=requires_torch)]


def zeros(shape):
    """A [B, H, L, D] float16 array of any size backed by 8 bytes (stride 0):
    enough for plan(), which reads shapes only."""
    return np.broadcast_to(np.zeros((1, 1, 1, 1), np.float16), shape)


def covered_pairs(plan, Lq, Lk):
    """How often each (query, key) of [0, Lq) x [0, Lk) is in a dispatch; in
    a plan by KV head (one pass per KV head), how often in each pass, which
    must agree."""
    seen = {}
    for s in plan.submissions:
        head = seen.setdefault(s.kv_head, np.zeros((Lq, Lk), np.int32))
        for d in s.dispatches:
            head[d.rect.q0 : d.rect.q1, d.rect.k0 : d.rect.k1] += 1
    if plan.by_kv_head:
        assert sorted(seen) == list(range(len(seen))), f"passes of KV heads {sorted(seen)}"
    else:
        assert list(seen) == [-1]
    first = next(iter(seen.values()))
    assert all((h == first).all() for h in seen.values()), "the passes cover different pairs"
    return first


def test_plan_long_problem():
    """A 1M x 1M causal plan from zero-memory views, for a device as fast as
    the CUDA backend's starting profile: chunked, within the budget, nothing
    run."""
    n = 1 << 20
    q, k = zeros((1, 32, n, 128)), zeros((1, 8, n, 128))
    p = longattn.plan(q, k, k, causal=True, budget_ms=50, profile=longattn.default_profile("cuda"))
    assert isinstance(p, longattn.Plan) and p.chunked and p.budget_kept
    assert len(p.submissions) > 10 and p.num_dispatches >= len(p.submissions)
    assert all(s.predicted_ms <= 50 * 0.8 * 1.001 for s in p.submissions)
    assert p.total_flops == pytest.approx(4 * 32 * 128 * (n * (n + 1) / 2), rel=1e-9)
    modes = {d.mode for s in p.submissions for d in s.dispatches}
    assert modes <= {"single_pass", "init", "accumulate", "finalize"} and "finalize" in modes
    assert "Plan(chunked=True" in repr(p)


def test_plan_covers_each_pair_once():
    Lq, Lk = 300, 1000
    p = longattn.plan(
        zeros((1, 4, Lq, 64)), zeros((1, 4, Lk, 64)), zeros((1, 4, Lk, 64)), causal=True,
        policy=longattn.Policy(fixed_chunk_keys=128, fixed_query_rows=96),
    )
    seen = covered_pairs(p, Lq, Lk)
    visible = np.arange(Lk)[None, :] <= np.arange(Lq)[:, None] + (Lk - Lq)
    assert (seen[visible] == 1).all()  # hidden tiles may be skipped or not
    assert p.chunk_keys == 128 and p.query_rows == 96


def test_plan_is_what_attention_runs(rng):
    """With fixed sizes (no re-plan), the plan equals the executed one."""
    q, k, v = (randn(rng, s, "float32") for s in [(1, 2, 50, 32), (1, 2, 200, 32), (1, 2, 200, 32)])
    policy = longattn.Policy(fixed_chunk_keys=64, fixed_query_rows=25)
    p = longattn.plan(q, k, v, policy=policy, return_lse=True)
    _, rep = longattn.attention(q, k, v, policy=policy, report=True)
    rects = lambda plan: [(d.rect, d.mode) for s in plan.submissions for d in s.dispatches]  # noqa: E731
    assert rects(p) == rects(rep.plan)


def test_plan_bshd_and_out():
    q, k = zeros((2, 100, 8, 64)), zeros((2, 400, 2, 64))
    p = longattn.plan(q, k, k, layout="bshd", policy=longattn.Policy(fixed_chunk_keys=100))
    assert (covered_pairs(p, 100, 400) == 1).all()
    out = np.empty((2, 100, 8, 64), np.float16)
    assert longattn.plan(q, k, k, layout="bshd", out=out).reason
    with pytest.raises(longattn.InvalidArgument, match=r"out.shape\[1\] = 100 but must equal q.shape\[1\] = 8"):
        longattn.plan(q, k, k, layout="bshd", out=out.transpose(0, 2, 1, 3))


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("layout", ["bhsd", "bshd"])
def test_merge_states(rng, framework, layout):
    """Attention over two key shards, merged: attention over all keys."""
    B, H, Lq, Lk, D = 1, 4, 6, 90, 32
    q, k, v = (randn(rng, s, "float32") for s in [(B, H, Lq, D), (B, H, Lk, D), (B, H, Lk, D)])
    want = reference(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64))
    t = (0, 2, 1, 3)
    arr = (lambda x: np.ascontiguousarray(x.transpose(t))) if layout == "bshd" else (lambda x: x)
    conv = (lambda x: to_torch(x, "float32")) if framework == "torch" else (lambda x: x)
    qa = conv(arr(q))
    parts = []
    for sl in (slice(0, 40), slice(40, Lk)):
        parts.append(
            longattn.attention(qa, conv(arr(k[:, :, sl])), conv(arr(v[:, :, sl])), layout=layout,
                               return_lse=True)
        )
    out, lse = longattn.merge_states(parts, return_lse=True, layout=layout)
    assert type(out) is type(qa)
    got = as_float64(out)
    check(got.transpose(t) if layout == "bshd" else got, want, "float32", lse=lse)
    given = parts[0][0] * 0
    assert longattn.merge_states(parts, out=given, layout=layout) is given


def test_device_profile(tmp_path):
    prof = longattn.default_profile("cpu")
    assert isinstance(prof, longattn.DeviceProfile) and prof.backend == "cpu"
    assert longattn.default_profile().backend == "cpu"
    assert longattn.DeviceProfile.rate_key("bfloat16", 128, causal=True) == "bfloat16/d128/causal"
    assert prof.invalid_field() == ""
    prof.gflops = {"float32/d64/full": 123.0, "float16": 45.0}
    assert dict(prof.gflops) == {"float32/d64/full": 123.0, "float16": 45.0}
    assert prof.rate_gflops("float32/d64/full") == 123.0
    assert prof.rate_gflops("float16/d32/causal") == 45.0  # falls back to the dtype's entry
    with pytest.raises(TypeError):
        prof.gflops["float32"] = 1.0  # a read-only snapshot, not a silent copy
    prof.dispatch_overhead_ms = 0.125
    path = tmp_path / "profile.json"
    prof.save(str(path))
    loaded = longattn.DeviceProfile.load(str(path))
    assert repr(loaded) == repr(prof)
    twin = copy.copy(prof)
    twin.samples += 5
    assert twin.samples == prof.samples + 5
    with pytest.raises(longattn.InvalidArgument, match="backend = 'gpu' must be 'cpu' or 'cuda'"):
        longattn.default_profile("gpu")


def test_profile_is_refined_in_place(rng):
    q, k, v = (randn(rng, (1, 4, 256, 64), "float32") for _ in range(3))
    k = v = randn(rng, (1, 4, 4096, 64), "float32")  # long enough to be measured
    prof = longattn.default_profile("cpu")
    before = prof.samples
    longattn.attention(q, k, v, profile=prof)
    assert prof.samples > before and prof.device_name


def test_policy():
    defaults = _core.default_policy()
    p = longattn.Policy()
    assert {f: getattr(p, f) for f in defaults} == defaults
    assert p.budget_ms == 200 and p.safety == 0.8


def test_budget_overrides_policy(rng):
    q, k, v = (randn(rng, (1, 2, 16, 32), "float32") for _ in range(3))
    _, rep = longattn.attention(q, k, v, policy=longattn.Policy(budget_ms=7), budget_ms=3, report=True)
    assert rep.budget_ms == 3
    _, rep = longattn.attention(q, k, v, policy=longattn.Policy(budget_ms=7), report=True)
    assert rep.budget_ms == 7


def test_docstrings_name_every_argument():
    for fn in (longattn.attention, longattn.merge_states):
        doc = inspect.getdoc(fn)
        for name in inspect.signature(fn).parameters:
            assert f"\n    {name}: " in doc, (fn.__name__, name)
    # plan() takes attention()'s arguments and says so.
    assert inspect.signature(longattn.plan).parameters.keys() == inspect.signature(
        longattn.attention
    ).parameters.keys()
    assert "attention()'s arguments" in inspect.getdoc(longattn.plan)
    for name in longattn.__all__:
        assert inspect.getdoc(getattr(longattn, name)), name


def test_stubs_are_installed():
    files = importlib.resources.files("longattn")
    assert (files / "py.typed").is_file()
    stub = (files / "_core.pyi").read_text()
    for name in ("class DeviceProfile", "def attention(", "def plan(", "def merge_states("):
        assert name in stub


def test_import_pulls_in_no_framework():
    """import longattn imports neither torch nor NumPy; only the arrays a
    caller passes bring their framework in."""
    code = "import sys, longattn; print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
