"""The operations path: DESIGN.md's chunked attention run as MLX operations
on the caller's MLX stream (Metal on macOS; also MLX's CPU, where tests
force it).

Why: MLX offers no way for a third party to run a Metal kernel that returns
the log-sum-exp, and its fused attention is one command over every key,
which the macOS watchdog kills after about 5 s. MLX operations can express
the chunked algorithm, and mx.eval() is where MLX commits its command
buffers and waits for them: evaluating at every submission boundary keeps
each command buffer to one submission's work at most (MLX may split a
submission over several buffers, never join two).

How a call runs (run()):

1. longattn's own planner splits it (longattn.plan with the profile of this
   MLX device, _profile.py): submissions of dispatches, each a rectangle of
   queries x keys in a mode (single_pass, init, accumulate, finalize).
2. A rectangle runs in pieces whose score workspace fits the policy's memory
   limit (_Pieces): per piece, the float32 scores s = scale q k^T (masked),
   the piece's partial state (row max m, sum l of exp(s - m), o = exp(s - m)
   v) and its merge into the float32 running state of its query rows
   (_state.py). A finalize turns the state into O and LSE.
3. Queued pieces are evaluated before their workspace would pass the limit,
   and at the end of every submission, which is timed. The first is needed
   because MLX evaluates independent branches of a graph in no fixed order:
   without it, the scores of every piece of a submission can be alive at
   once (measured on MLX's CPU: 8 pieces of 17 MB each peaked at 191 MB).
4. Between submissions: the report, the profile refined from the measured
   time (_profile.refine), a re-plan when the time was off (_replan), and
   the progress callback, which may cancel.

A plan that is one single pass takes MLX's fused kernel in one call (no
running state) unless the LSE is asked for or its scores might not fit the
memory limit (MLX falls back to unfused operations for some shapes); rows
that see no key are then set to 0, as everywhere in longattn.

Re-plans are simpler than the C++ executor's (src/core/executor.cpp): the
remaining dispatches of the query group in flight are split along their
keys at the rate now believed, and the rows after that group are planned
afresh by longattn.plan (bottom-right causal keeps its diagonal for a
suffix of the query rows, so a suffix is a problem of its own). No re-plan
overrides fixed chunk sizes (policy.fixed_chunk_keys, fixed_query_rows).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Callable, Deque, List, Optional, Tuple

import mlx.core as mx

from .. import _api
from .._api import DeviceProfile, Policy
from .._errors import Cancelled, InvalidArgument
from .._report import Dispatch, Plan, Rect, RunReport, Submission, SubmissionReport
from . import _profile
from ._state import DTYPE_NAMES, Call, State, fused, initial_state, rect_state

OP = "longattn.mlx.scaled_dot_product_attention"


# A re-plan pays off only when the rate it would plan with moved this much
# from the one the current plan was made with.
_REPLAN_RATIO = 1.25
# Re-plans per call at most (each one a longattn.plan call: under a
# millisecond), so noisy timings cannot turn a run into a planning loop.
_MAX_REPLANS = 16


def plan_rows(c: Call, q_begin: int, policy: Policy, profile: DeviceProfile,
              want_lse: bool) -> Plan:
    """longattn's plan for query rows [q_begin, Lq) (rectangles in the call's
    own row numbers). Only shapes, dtypes and options are read."""
    q, mask = c.q, c.mask4
    if q_begin:
        q = q[:, :, q_begin:]
        if mask is not None and mask.shape[2] != 1:
            mask = mask[:, :, q_begin:]
    plan = _api.plan(q, c.k, c.v, causal=c.causal, mask=mask, scale=c.scale, sinks=c.sinks32,
                     return_lse=want_lse, policy=policy, profile=profile)
    if q_begin:
        for s in plan.submissions:
            for d in s.dispatches:
                d.rect = Rect(d.rect.q0 + q_begin, d.rect.q1 + q_begin, d.rect.k0, d.rect.k1)
    return plan


def _rows(parts: List[mx.array]) -> mx.array:
    """Row blocks (axis 2) as one array."""
    return parts[0] if len(parts) == 1 else mx.concatenate(parts, axis=2)


@dataclass
class _Pieces:
    """How one query group's rectangles are cut so that the score workspace
    of what is queued stays under the memory limit: rows per piece (all of
    the group's unless even `key_step` keys of them do not fit), and keys per
    piece for those rows."""

    rows: int
    keys: int
    room: int  # bytes the queued pieces may hold beside the group's state

    @staticmethod
    def bytes(c: Call, rows: int, keys: int) -> int:
        """Workspace of one piece: per (batch, query head, query, key) the
        float32 scores, their exponentials and the mask block (at most 4
        bytes each); float32 copies of the piece's queries, partial o and
        merged o; float32 copies of its keys and values."""
        scores = c.B * c.Hq * rows * (3 * keys + c.D + 2 * c.Dv)
        return 4 * (scores + c.B * c.Hkv * keys * (c.D + c.Dv))

    @staticmethod
    def of_group(c: Call, n: int, key_step: int, limit: int) -> "_Pieces":
        step = max(1, min(key_step, c.Lk))
        # The group's running state (old and merged, m, l, o) is alive too.
        room = limit - 8 * c.B * c.Hq * n * (c.Dv + 2)
        rows = n
        if _Pieces.bytes(c, n, step) > room:
            per_row = _Pieces.bytes(c, 1, step) - _Pieces.bytes(c, 0, step)
            rows = (room - _Pieces.bytes(c, 0, step)) // per_row
            if rows < 1:
                raise InvalidArgument(
                    f"[{OP}] policy.workspace_limit_bytes = {limit} cannot hold the scores of one "
                    f"query row over {step} keys ({_Pieces.bytes(c, 1, step)} bytes) beside the "
                    f"running state: raise it")
        per_key = _Pieces.bytes(c, rows, 1) - _Pieces.bytes(c, rows, 0)
        keys = max(step, (room - _Pieces.bytes(c, rows, 0)) // per_key // step * step)
        return _Pieces(rows, keys, room)


@dataclass
class _Group:
    """The query group in flight: its rows, how they are cut, and the running
    state of each row piece."""

    q0: int
    q1: int
    pieces: _Pieces
    states: List[State]

    def row_ranges(self):
        step = self.pieces.rows
        return [(a, min(a + step, self.q1)) for a in range(self.q0, self.q1, step)]


class _Run:
    def __init__(self, c: Call, stream: mx.Stream, policy: Policy, profile: DeviceProfile,
                 want_lse: bool, progress: Optional[Callable]):
        self.c, self.stream, self.policy, self.profile = c, stream, policy, profile
        self.want_lse, self.progress = want_lse, progress
        self.dtype = c.q.dtype
        self.key = DeviceProfile.rate_key(DTYPE_NAMES[self.dtype], c.D, c.causal,
                                          c.mask4 is not None)
        self.target = policy.budget_ms * policy.safety if policy.budget_ms > 0 else math.inf
        self.fixed_sizes = policy.fixed_chunk_keys > 0 or policy.fixed_query_rows > 0
        self.group: Optional[_Group] = None
        self.next_row = 0  # rows before it are final
        self.outs: List[Tuple[int, mx.array, Optional[mx.array]]] = []  # (q0, O rows, LSE rows)
        self.queued: List[mx.array] = []  # built since the last evaluation
        self.queued_bytes = 0
        self.pieces_run = 0
        kind = _profile.device_kind(stream.device)
        self.report = RunReport(backend=f"mlx.{kind}", budget_ms=policy.budget_ms)
        self.executed: List[Submission] = []

    # ---- building and evaluating graphs -------------------------------------

    def _queue(self, nbytes: int) -> None:
        """Makes room for a piece of `nbytes` of workspace: what is queued is
        evaluated first when both would not fit the limit together."""
        room = self.policy.workspace_limit_bytes
        if self.group is not None:
            room = self.group.pieces.room
        if self.queued_bytes and self.queued_bytes + nbytes > room:
            self._evaluate()
        self.queued_bytes += nbytes

    def _evaluate(self) -> None:
        live = list(self.queued)
        if self.group is not None:
            for s in self.group.states:
                live.extend(s.arrays())
        if live:
            mx.eval(*live)
        self.queued, self.queued_bytes = [], 0

    def _finish_rows(self, q0: int, q1: int, o: mx.array, lse: Optional[mx.array]) -> None:
        self.outs.append((q0, o, lse))
        self.queued.append(o)
        if lse is not None:
            self.queued.append(lse)
        fr = self.report.finished_rows
        if fr and fr[-1][1] == q0:
            fr[-1] = (fr[-1][0], q1)
        else:
            fr.append((q0, q1))
        self.next_row = q1

    def _dispatch(self, d: Dispatch, fused_ok: bool) -> None:
        c, r, mode = self.c, d.rect, d.mode
        if mode == "single_pass" and fused_ok:
            self._queue(0)
            self._finish_rows(0, c.Lq, fused(c, self.stream), None)
            return
        if mode in ("single_pass", "init"):
            n = r.q1 - r.q0
            limit = self.policy.workspace_limit_bytes
            pieces = _Pieces.of_group(c, n, self.profile.key_tile, limit)
            self.group = _Group(r.q0, r.q1, pieces, [])
            self.group.states = [initial_state(c, b - a) for a, b in self.group.row_ranges()]
        g = self.group
        if g is None or (g.q0, g.q1) != (r.q0, r.q1):  # the planner's order, so never
            raise AssertionError(f"dispatch {r} outside the query group in flight")
        for i, (a, b) in enumerate(g.row_ranges()):
            for k0 in range(r.k0, r.k1, g.pieces.keys):
                k1 = min(r.k1, k0 + g.pieces.keys)
                self._queue(_Pieces.bytes(c, b - a, k1 - k0))
                part = rect_state(c, a, b, k0, k1)
                if part is not None:
                    g.states[i] = g.states[i].merge(part)
                    self.pieces_run += 1
        if mode in ("single_pass", "finalize"):
            final = [s.finalize(self.dtype) for s in g.states]
            o = _rows([x[0] for x in final])
            lse = _rows([x[1] for x in final]) if self.want_lse else None
            self.group = None
            self._finish_rows(r.q0, r.q1, o, lse)

    # ---- the loop -------------------------------------------------------------

    def run(self) -> Tuple[mx.array, Optional[mx.array], RunReport]:
        c = self.c
        t_call = time.perf_counter()
        plan = plan_rows(c, 0, self.policy, self.profile, self.want_lse)
        # A single pass fits MLX's fused kernel when no LSE is wanted and its
        # scores would fit the limit were MLX to materialize them.
        fused_ok = (not plan.chunked and not self.want_lse
                    and _Pieces.bytes(c, c.Lq, c.Lk) <= self.policy.workspace_limit_bytes)
        planned_rate = self.profile.rate_gflops(self.key)
        probing = (plan.chunked and math.isfinite(self.target) and not self.fixed_sizes
                   and self.key not in self.profile.gflops)
        queue: Deque[Submission] = deque(plan.submissions)
        with mx.stream(self.stream):
            while queue:
                sub = queue.popleft()
                t0 = time.perf_counter()
                pieces0 = self.pieces_run
                for d in sub.dispatches:
                    self._dispatch(d, fused_ok)
                self._evaluate()
                ms = (time.perf_counter() - t0) * 1e3
                flops = sum(d.flops for d in sub.dispatches)
                self._record(sub, flops, ms, fused_ok)
                # The fused kernel's speed says nothing about the operations'.
                if flops > 0 and not fused_ok:
                    _profile.refine(self.profile, self.key, flops, ms,
                                    max(1, self.pieces_run - pieces0))
                if queue and self._should_replan(sub, ms, queue, planned_rate, probing):
                    queue = self._replan(queue)
                    planned_rate = self.profile.rate_gflops(self.key)
                    probing = False
                if self.progress is not None:
                    answer = self.progress(self.next_row, c.Lq, self.report)
                    if answer is not None and not answer and queue:
                        raise self._cancelled(time.perf_counter() - t_call, plan)
            out, lse = self._assemble()
        self._close(plan, time.perf_counter() - t_call, completed=True)
        return out, lse, self.report

    def _record(self, sub: Submission, flops: float, ms: float, fused_run: bool) -> None:
        r = self.report
        over = r.budget_ms > 0 and ms > r.budget_ms
        r.submissions.append(SubmissionReport(
            dispatches=len(sub.dispatches), kernels=["mlx.fused" if fused_run else "mlx.ops"],
            flops=flops, predicted_ms=sub.predicted_ms, measured_ms=ms, over_budget=over))
        r.total_flops += flops
        r.total_ms += ms
        r.budget_misses += int(over)
        self.executed.append(sub)

    def _should_replan(self, sub: Submission, ms: float, queue, planned_rate: float,
                       probing: bool) -> bool:
        if self.fixed_sizes or not math.isfinite(self.target):
            return False
        if self.report.replans >= _MAX_REPLANS:
            return False
        if probing:
            return True  # the probe's measurement replaces the guess the plan came from
        rate = self.profile.rate_gflops(self.key)
        if ms > self.target and rate < planned_rate:
            return True  # over the target: the rest at the slower rate, now
        if abs(math.log(rate / planned_rate)) <= math.log(_REPLAN_RATIO):
            return False
        next_ms = queue[0].predicted_ms * planned_rate / rate
        return ms > self.target or next_ms > self.target or ms * _REPLAN_RATIO < sub.predicted_ms

    def _replan(self, queue: Deque[Submission]) -> Deque[Submission]:
        """The rest of the run at the rate now believed: the group in flight
        finishes in key ranges split to fit the target, the rows after it
        are planned afresh."""
        self.report.replans += 1
        rest = [d for s in queue for d in s.dispatches]
        mine: List[Dispatch] = []
        row = self.next_row
        if self.group is not None:
            while rest and (rest[0].rect.q0, rest[0].rect.q1) == (self.group.q0, self.group.q1):
                mine.append(rest.pop(0))
            row = self.group.q1
        subs = self._split(mine)
        if row < self.c.Lq:
            subs += plan_rows(self.c, row, self.policy, self.profile, self.want_lse).submissions
        return deque(subs)

    def _split(self, dispatches: List[Dispatch]) -> List[Submission]:
        """The group in flight's remaining dispatches, each split along its
        keys into parts that fit the target at the current rate, packed into
        submissions in order."""
        p, c = self.profile, self.c
        ms_per_flop = 1.0 / (p.rate_gflops(self.key) * 1e6)
        room = max(self.target - p.submission_overhead_ms, 0.0)
        parts: List[Dispatch] = []
        for d in dispatches:
            r = d.rect
            ms = d.flops * ms_per_flop + p.dispatch_overhead_ms
            n = max(1, math.ceil(ms / max(room, 1e-9)))
            tiles = max(1, math.ceil((r.k1 - r.k0) / p.key_tile))
            n = min(n, tiles)
            per = math.ceil(tiles / n) * p.key_tile
            cuts = list(range(r.k0, r.k1, per)) + [r.k1]
            for i, (k0, k1) in enumerate(zip(cuts, cuts[1:])):
                mode = "accumulate"
                if i == 0 and d.mode == "init":
                    mode = "init"
                if k1 == r.k1 and d.mode == "finalize":
                    mode = "finalize"
                flops = c.flops(r.q0, r.q1, k0, k1)
                parts.append(Dispatch(Rect(r.q0, r.q1, k0, k1), mode, flops,
                                      p.dispatch_overhead_ms + flops * ms_per_flop))
        subs: List[Submission] = []
        for d in parts:
            if subs and subs[-1].predicted_ms + d.predicted_ms <= self.target:
                subs[-1].dispatches.append(d)
                subs[-1].predicted_ms += d.predicted_ms
            else:
                subs.append(Submission([d], p.submission_overhead_ms + d.predicted_ms))
        return subs

    # ---- results ----------------------------------------------------------------

    def _assemble(self, fill_lse: float = float("-inf")):
        """O [B, Hq, Lq, Dv] and LSE [B, Hq, Lq] (or None) from the finished
        rows; rows not finished are 0 (O) and `fill_lse`."""
        c = self.c
        o_parts, l_parts, row = [], [], 0
        for q0, o, lse in sorted(self.outs, key=lambda t: t[0]):
            if q0 > row:
                o_parts.append(mx.zeros((c.B, c.Hq, q0 - row, c.Dv), dtype=self.dtype))
                l_parts.append(mx.full((c.B, c.Hq, q0 - row), fill_lse, dtype=mx.float32))
            o_parts.append(o)
            l_parts.append(lse)
            row = q0 + o.shape[2]
        if row < c.Lq or not o_parts:
            o_parts.append(mx.zeros((c.B, c.Hq, c.Lq - row, c.Dv), dtype=self.dtype))
            l_parts.append(mx.full((c.B, c.Hq, c.Lq - row), fill_lse, dtype=mx.float32))
        return _rows(o_parts), (_rows(l_parts) if self.want_lse else None)

    def _close(self, first: Plan, seconds: float, completed: bool) -> None:
        r = self.report
        r.wall_ms = seconds * 1e3
        r.completed = completed
        subs = self.executed
        r.plan = replace(
            first,
            submissions=list(subs),
            total_flops=sum(d.flops for s in subs for d in s.dispatches),
            predicted_ms=sum(s.predicted_ms for s in subs),
            reason=first.reason + (f"; re-planned {r.replans} times" if r.replans else ""),
        )
        r.warnings = list(first.warnings)

    def _cancelled(self, seconds: float, first: Plan) -> Cancelled:
        # Rows not finished: O = 0 and LSE = NaN (finished_rows names the
        # rows that hold results).
        out, lse = self._assemble(fill_lse=float("nan"))
        self._close(first, seconds, completed=False)
        e = Cancelled(f"[{OP}] cancelled by the progress callback")
        e.report = self.report
        e.finished_rows = list(self.report.finished_rows)
        e.out, e.lse = out, lse
        return e


def run(c: Call, stream: mx.Stream, policy: Policy, profile: DeviceProfile, want_lse: bool,
        progress: Optional[Callable]) -> Tuple[mx.array, Optional[mx.array], RunReport]:
    """The call on the operations path: (O, LSE or None, the run report)."""
    return _Run(c, stream, policy, profile, want_lse, progress).run()
