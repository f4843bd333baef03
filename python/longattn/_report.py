"""Plans and run reports: the vocabulary of include/longattn/plan.hpp in Python.

The native module builds these from the C++ structs (python/src/report.cpp),
field by field and by name, so a field added here must be filled there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple


@dataclass
class Rect:
    """The work of queries [q0, q1) x keys [k0, k1), for every (batch, head)."""

    q0: int
    q1: int
    k0: int
    k1: int


@dataclass
class Dispatch:
    """One kernel launch (one task on the CPU) over a rectangle.

    mode says what it does with the float32 running state (m, l, o) of its
    query rows: 'single_pass' (no state: init and finalize at once), 'init',
    'accumulate' or 'finalize' (writes O and LSE).
    """

    rect: Rect
    mode: str
    flops: float  # 2 * B * Hq * (D + Dv) * visible (query, key) pairs
    predicted_ms: float  # the planner's prediction for this dispatch alone


@dataclass
class Submission:
    """Dispatches committed together; the budget bounds a submission's time."""

    dispatches: List[Dispatch]
    predicted_ms: float
    # -1: the dispatches cover every head; else the plan runs KV head by KV
    # head (Plan.by_kv_head) and they cover this KV head and its query heads.
    kv_head: int = -1


@dataclass(repr=False)
class Plan:
    """How a call is split: longattn.plan() returns one, and a run report
    carries the plan as finally executed (after re-plans)."""

    chunked: bool  # False: one single_pass dispatch
    submissions: List[Submission]
    query_rows: int  # query-group height (rows per group)
    chunk_keys: int  # nominal key-chunk length (0 if single pass)
    workspace_bytes: int  # running-state memory the plan needs
    total_flops: float
    predicted_ms: float
    reason: str  # why this route ("fits budget", ...)
    # False when some submission is predicted over budget * safety: the
    # budget is below what one sensible dispatch costs here (see warnings).
    budget_kept: bool
    warnings: List[str]
    # The work runs one KV head (with its query heads) after another, each
    # pass a plan of its own (Submission.kv_head): the CPU backend's order
    # for a chunked call whose KV heads are shared, so that a head's keys and
    # values stay in cache. Output rows are final only in the last pass.
    by_kv_head: bool = False

    @property
    def num_dispatches(self) -> int:
        return sum(len(s.dispatches) for s in self.submissions)

    def __repr__(self) -> str:
        return (
            f"Plan(chunked={self.chunked}, submissions={len(self.submissions)}, "
            f"dispatches={self.num_dispatches}, query_rows={self.query_rows}, "
            f"chunk_keys={self.chunk_keys}, workspace_bytes={self.workspace_bytes}, "
            f"total_flops={self.total_flops:.4g}, predicted_ms={self.predicted_ms:.4g}, "
            f"reason={self.reason!r}, budget_kept={self.budget_kept}, "
            f"warnings={self.warnings!r}, by_kv_head={self.by_kv_head})"
        )


@dataclass
class SubmissionReport:
    """What one submission did, against what was predicted."""

    dispatches: int
    # The kernels that ran its dispatches, each once, in order of first use:
    # "cpu.avx512", "cpu.avx2", "cpu.generic"; "cuda.wgmma" (Hopper prefill),
    # "cuda.wgmma.packed" (Hopper decode), "cuda.mma" (mma.sync prefill),
    # "cuda.vector" (float32 and short decode).
    kernels: List[str]
    flops: float
    predicted_ms: float
    measured_ms: float  # 0 for a submission not timed
    over_budget: bool  # measured_ms > the budget


def _empty_plan() -> Plan:
    return Plan(False, [], 0, 0, 0, 0.0, 0.0, "", True, [])


@dataclass(repr=False)
class RunReport:
    """What a run did: attention(..., report=True) returns one, a progress
    callback sees one being filled, and an error that stopped a run part way
    carries one (exception.report)."""

    backend: str = ""
    plan: Plan = field(default_factory=_empty_plan)  # as executed; filled when the run ends
    submissions: List[SubmissionReport] = field(default_factory=list)
    total_flops: float = 0.0
    total_ms: float = 0.0  # sum of measured submission times
    wall_ms: float = 0.0  # host wall time of the whole call
    budget_ms: float = 0.0
    budget_misses: int = 0  # submissions whose measured time > budget
    replans: int = 0  # how often the remaining work was re-planned
    completed: bool = False  # False if cancelled or failed mid-run
    # Query ranges [q0, q1) whose output rows (all batches and heads) are
    # final; when a run stops early the other rows were not written, or only
    # in part.
    finished_rows: List[Tuple[int, int]] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)  # each said once

    def __repr__(self) -> str:
        return (
            f"RunReport(backend={self.backend!r}, completed={self.completed}, "
            f"submissions={len(self.submissions)}, total_ms={self.total_ms:.4g}, "
            f"wall_ms={self.wall_ms:.4g}, budget_ms={self.budget_ms:.4g}, "
            f"budget_misses={self.budget_misses}, replans={self.replans}, "
            f"finished_rows={self.finished_rows!r}, warnings={self.warnings!r})"
        )
