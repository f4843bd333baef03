"""Progress, cancel, the run report, and the GIL released during native work."""

import copy
import threading
import time

import numpy as np
import pytest

import longattn
from support import as_float64, check, randn, reference, requires_torch, to_torch

# Four query groups of 16 rows, key chunks of 64, one dispatch a submission
# (a budget below any dispatch): 4 x 4 = 16 submissions.
LQ, LK = 64, 256
SPLIT = longattn.Policy(fixed_query_rows=16, fixed_chunk_keys=64, budget_ms=1e-4)


@pytest.fixture
def inputs(rng):
    return [randn(rng, (1, 2, LQ, 32), "float32")] + [
        randn(rng, (1, 2, LK, 32), "float32") for _ in range(2)
    ]


def test_report(inputs):
    q, k, v = inputs
    out, rep = longattn.attention(q, k, v, policy=SPLIT, report=True)
    assert isinstance(rep, longattn.RunReport)
    assert rep.backend == "cpu" and rep.completed
    assert len(rep.submissions) == len(rep.plan.submissions) >= 4
    assert sum(s.dispatches for s in rep.submissions) == rep.plan.num_dispatches
    assert all(s.measured_ms > 0 and s.predicted_ms > 0 for s in rep.submissions)
    assert all(s.kernels and s.kernels[0] in ("cpu.avx512", "cpu.avx2", "cpu.generic") for s in rep.submissions)
    assert rep.total_ms == pytest.approx(sum(s.measured_ms for s in rep.submissions))
    assert rep.total_ms <= rep.wall_ms
    assert rep.total_flops == pytest.approx(4 * 2 * 32 * LQ * LK)
    assert rep.budget_ms == SPLIT.budget_ms and rep.budget_misses == len(rep.submissions)
    assert rep.finished_rows == [(0, LQ)]
    assert rep.plan.chunked and rep.plan.chunk_keys == 64 and rep.plan.query_rows == 16
    d = rep.plan.submissions[0].dispatches[0]
    assert isinstance(d, longattn.Dispatch) and d.mode in ("init", "single_pass")
    assert (d.rect.q0, d.rect.q1, d.rect.k0) == (0, 16, 0)
    assert "RunReport(" in repr(rep) and "Plan(" in repr(rep.plan)
    assert copy.deepcopy(rep) == rep


def test_progress_sees_rows_and_the_report_so_far(inputs):
    q, k, v = inputs
    calls = []

    def progress(done, total, rep):
        calls.append((done, total, len(rep.submissions), rep.completed))
        return None  # None goes on

    out, rep = longattn.attention(q, k, v, policy=SPLIT, progress=progress, report=True)
    assert len(calls) == len(rep.submissions)
    assert [c[2] for c in calls] == list(range(1, len(calls) + 1))
    done = [c[0] for c in calls]
    assert done == sorted(done) and done[-1] == LQ and 0 < done[len(done) // 2] < LQ
    assert all(c[1] == LQ for c in calls)
    check(out, reference(*(x.astype(np.float64) for x in inputs)), "float32")


@pytest.mark.parametrize("framework", ["numpy", pytest.param("torch", marks=requires_torch)])
def test_cancel(inputs, framework):
    """False cancels after the first query group: Cancelled carries the
    report, the finished rows and the output whose finished rows are final."""
    q, k, v = inputs if framework == "numpy" else [to_torch(x, "float32") for x in inputs]

    def progress(done, total, rep):
        return done < 16

    with pytest.raises(longattn.Cancelled) as info:
        longattn.attention(q, k, v, policy=SPLIT, progress=progress, return_lse=True)
    e = info.value
    assert isinstance(e, longattn.Error) and "cancelled by the progress callback" in str(e)
    assert isinstance(e.report, longattn.RunReport) and not e.report.completed
    assert e.finished_rows == e.report.finished_rows == [(0, 16)]
    assert 4 <= len(e.report.submissions) < 16
    want = reference(*(as_float64(x) for x in (q, k, v)))
    rows = slice(0, 16)
    check(as_float64(e.out)[:, :, rows], (want[0][:, :, rows], want[1][:, :, rows]), "float32",
          lse=as_float64(e.lse)[:, :, rows])


def test_cancel_with_out_given(inputs):
    q, k, v = inputs
    out = np.zeros_like(q)
    with pytest.raises(longattn.Cancelled) as info:
        longattn.attention(q, k, v, out=out, policy=SPLIT, progress=lambda d, t, r: False)
    assert info.value.out is out and info.value.finished_rows == []


def test_progress_exception_propagates(inputs):
    q, k, v = inputs

    class Stop(Exception):
        pass

    def progress(done, total, rep):
        if len(rep.submissions) == 3:
            raise Stop("from the callback")
        return True

    with pytest.raises(Stop, match="from the callback"):
        longattn.attention(q, k, v, policy=SPLIT, progress=progress)
    # The module is still usable afterwards.
    check(longattn.attention(q, k, v), reference(*(x.astype(np.float64) for x in inputs)), "float32")


def test_progress_bad_answer(inputs):
    """An answer whose truth cannot be taken raises its own error."""
    q, k, v = inputs

    class NoBool:
        def __bool__(self):
            raise TypeError("no truth here")

    with pytest.raises(TypeError, match="no truth here"):
        longattn.attention(q, k, v, policy=SPLIT, progress=lambda d, t, r: NoBool())


def test_gil_released(rng):
    """Another Python thread keeps running during long native calls: with the
    GIL held it could tick only between calls, a few times; released, about
    once a millisecond."""
    q = randn(rng, (1, 8, 1024, 64), "float32")
    k = randn(rng, (1, 8, 2048, 64), "float32")
    calls = 0
    seconds = 0.0

    def work():
        nonlocal calls, seconds
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.3:  # whatever the machine's speed
            longattn.attention(q, k, k, threads=1)
            calls += 1
        seconds = time.perf_counter() - t0

    ticks = 0
    t = threading.Thread(target=work)
    t.start()
    while t.is_alive():
        ticks += 1
        time.sleep(0.001)
    t.join()
    assert ticks >= max(0.3 * seconds * 1000, 20 * calls), (ticks, calls, seconds)


def test_concurrent_calls(rng):
    """Calls from several threads at once each get their own right answer."""
    cases = [[randn(rng, (1, 2, 40, 32), "float32") for _ in range(3)] for _ in range(4)]
    outs = [None] * len(cases)

    def work(i):
        q, k, v = cases[i]
        for _ in range(5):
            outs[i] = longattn.attention(q, k, v, threads=1, policy=SPLIT if i % 2 else None)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (q, k, v), out in zip(cases, outs):
        check(out, reference(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64)), "float32")


def test_gqa_runs_kv_head_by_kv_head_and_says_so(rng):
    # 8 query heads on 2 KV heads, chunked: the CPU backend runs one pass per
    # KV head (plan.by_kv_head); rows are final only in the last pass.
    q = randn(rng, (1, 8, 128, 32), "float32")
    k, v = (randn(rng, (1, 2, 192, 32), "float32") for _ in range(2))
    prof = longattn.default_profile("cpu")
    prof.fill_rows, prof.query_tile = 1, 4  # passes on any number of threads
    policy = longattn.Policy(fixed_query_rows=32, fixed_chunk_keys=64)
    seen = []

    def progress(done, total, rep):
        seen.append((done, rep.plan.by_kv_head if rep.plan.submissions else None))

    out, rep = longattn.attention(q, k, v, causal=True, policy=policy, profile=prof,
                                  progress=progress, report=True)
    check(out, reference(*(as_float64(x) for x in (q, k, v)), causal=True), "float32")
    assert rep.completed and rep.plan.by_kv_head
    heads = [s.kv_head for s in rep.plan.submissions]
    assert heads == sorted(heads) and set(heads) == {0, 1}
    assert len(seen) == len(rep.submissions)
    # The first pass finishes no row (head 1 is not done); the last finishes all.
    first_pass = heads.count(0)
    assert all(done == 0 for done, _ in seen[:first_pass])
    assert seen[-1][0] == 128
    plan = longattn.plan(q, k, v, causal=True, policy=policy, profile=prof)
    assert plan.by_kv_head and [s.kv_head for s in plan.submissions] == heads
