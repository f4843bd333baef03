"""The public calls: attention(), plan(), merge_states(), and the Policy.

Each call turns its keyword options into one native options object
(_core.Options), allocates the outputs in the caller's framework (_arrays.py)
and calls longattn._core, which reads every array in place and runs the C++
API with the GIL released. The argument checks are the C++ library's (their
messages arrive unchanged); only what the library cannot see is checked here
(option types, the layout name).

A decode step is a call of some tens of microseconds, so the path of a
repeated call is kept short (issue 11: under 5 us over the same call from
C++; bench/python/call_overhead.py measures it): options already checked
come from a small cache keyed by their values and types, and the arrays go
to the native module as they are (it reads NumPy arrays and torch tensors
directly, python/src/views.hpp).

run() is the one internal entry point for callers that bring their own
outputs (the torch op, the SDPA drop-in): views plus options, nothing
allocated.
"""

from __future__ import annotations

import atexit
import operator
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

from . import _core
from ._arrays import Framework, default_stream, framework_of, stream_handle
from ._errors import Error, InvalidArgument
from ._report import Plan, RunReport

DeviceProfile = _core.DeviceProfile

_DEFAULT_POLICY = _core.default_policy()

ProgressCallback = Callable[[int, int, RunReport], Optional[bool]]


@dataclass
class Policy:
    """How a call is split into submissions (C++ longattn::Policy).

    The defaults are those attention() uses when given no policy
    (AttentionOptions::default_policy: a 200 ms budget, safety 0.8, 1 GiB of
    running state at most).

    budget_ms: the time budget of one submission in milliseconds; 0 = none.
        A budget below what one sensible dispatch costs is never refused: the
        plan then runs at that size and says so once in its warnings.
    safety: plan each submission to budget_ms * safety, in (0, 1].
    chunk_threshold_keys: Lk >= this forces the chunked path, in key chunks
        of at most this length; 0 = never forced.
    workspace_limit_bytes: cap on the float32 running-state memory.
    fixed_chunk_keys: > 0: key chunks of exactly this length.
    fixed_query_rows: > 0: query groups of exactly this height.
    """

    budget_ms: float = _DEFAULT_POLICY["budget_ms"]
    safety: float = _DEFAULT_POLICY["safety"]
    chunk_threshold_keys: int = _DEFAULT_POLICY["chunk_threshold_keys"]
    workspace_limit_bytes: int = _DEFAULT_POLICY["workspace_limit_bytes"]
    fixed_chunk_keys: int = _DEFAULT_POLICY["fixed_chunk_keys"]
    fixed_query_rows: int = _DEFAULT_POLICY["fixed_query_rows"]


def default_profile(backend: str = "cpu") -> DeviceProfile:
    """A copy of the process-wide DeviceProfile of a backend ('cpu' or 'cuda'):
    what calls without profile= plan with, refined by every timed run."""
    return _core.default_profile(backend)


def cuda_built() -> bool:
    """Whether this build of longattn has the CUDA backend."""
    return _core.cuda_built()


attention_flops = _core.attention_flops


# ---- option checks the C++ library cannot make (types, names) ---------------


def _number(op: str, name: str, value: Any, kind: type) -> Any:
    try:
        return operator.index(value) if kind is int else float(value)
    except (TypeError, ValueError):
        what = "an integer" if kind is int else "a number"
        raise InvalidArgument(f"[{op}] {name} = {value!r} must be {what}") from None


def _layout(op: str, layout: Any) -> bool:
    """True for 'bshd'."""
    if layout not in ("bhsd", "bshd"):
        raise InvalidArgument(
            f"[{op}] layout = {layout!r} must be 'bhsd' ([B, H, S, D] arrays) or 'bshd' "
            "([B, S, H, D] arrays)"
        )
    return layout == "bshd"


def _causal(op: str, causal: Any) -> Tuple[bool, bool]:
    """(causal, top-left aligned)."""
    if isinstance(causal, str):
        if causal in ("bottom_right", "top_left"):
            return True, causal == "top_left"
        raise InvalidArgument(
            f"[{op}] causal = {causal!r} must be True, False, 'bottom_right' or 'top_left'"
        )
    return _flag(op, "causal", causal), False


def _flag(op: str, name: str, value: Any) -> bool:
    # NumPy booleans: numpy.bool_ (named "bool" since NumPy 2).
    if isinstance(value, bool) or type(value).__name__ in ("bool_", "bool"):
        return bool(value)
    raise InvalidArgument(f"[{op}] {name} = {value!r} must be True or False")


def _window(op: str, window: Any) -> Tuple[int, int]:
    """(window_left, window_right), -1 = unbounded (None, or None on a side)."""
    if window is None:
        return -1, -1
    try:
        left, right = window
    except (TypeError, ValueError):
        raise InvalidArgument(
            f"[{op}] window = {window!r} must be None or (left, right), each an integer "
            "or None"
        ) from None
    return (
        -1 if left is None else _number(op, "window[0]", left, int),
        -1 if right is None else _number(op, "window[1]", right, int),
    )


def _policy_args(op: str, policy: Optional[Policy], budget_ms: Optional[float]) -> dict:
    if policy is None:
        policy = Policy()
    elif not isinstance(policy, Policy):
        raise InvalidArgument(f"[{op}] policy = {policy!r} must be a longattn.Policy or None")
    args = {
        "budget_ms": _number(op, "policy.budget_ms", policy.budget_ms, float),
        "safety": _number(op, "policy.safety", policy.safety, float),
        "chunk_threshold_keys": _number(
            op, "policy.chunk_threshold_keys", policy.chunk_threshold_keys, int
        ),
        "workspace_limit_bytes": _number(
            op, "policy.workspace_limit_bytes", policy.workspace_limit_bytes, int
        ),
        "fixed_chunk_keys": _number(op, "policy.fixed_chunk_keys", policy.fixed_chunk_keys, int),
        "fixed_query_rows": _number(op, "policy.fixed_query_rows", policy.fixed_query_rows, int),
    }
    if budget_ms is not None:
        args["budget_ms"] = _number(op, "budget_ms", budget_ms, float)
    return args


def _common_args(
    op: str, causal, scale, policy, budget_ms, profile, threads, layout, window=None, softcap=None
) -> Tuple[bool, dict]:
    bshd = _layout(op, layout)
    if profile is not None and not isinstance(profile, DeviceProfile):
        raise InvalidArgument(f"[{op}] profile = {profile!r} must be a longattn.DeviceProfile or None")
    is_causal, top_left = _causal(op, causal)
    window_left, window_right = _window(op, window)
    args = dict(
        bshd=bshd,
        causal=is_causal,
        causal_top_left=top_left,
        window_left=window_left,
        window_right=window_right,
        scale=None if scale is None else _number(op, "scale", scale, float),
        softcap=0.0 if softcap is None else _number(op, "softcap", softcap, float),
        profile=profile,
        threads=0 if threads is None else _number(op, "threads", threads, int),
        **_policy_args(op, policy, budget_ms),
    )
    return bshd, args


def _native_options(
    op: str, causal, scale, policy, budget_ms, profile, threads, layout, window=None, softcap=None
) -> "_core.Options":
    """The checked options as the native module takes them (the checks:
    _common_args), cached for the calls that repeat them (_OPTIONS)."""
    _, args = _common_args(
        op, causal, scale, policy, budget_ms, profile, threads, layout, window, softcap
    )
    options = _core.Options(**args)
    try:
        key = _options_key(
            causal, scale, layout, budget_ms, threads, profile, policy, window, softcap
        )
        hash(key)
    except TypeError:  # a subclass of Policy, or an unhashable value: not cached
        return options
    if len(_OPTIONS) >= _OPTIONS_MAX:
        _OPTIONS.clear()
    _OPTIONS[key] = options
    return options


def _options_key(
    causal, scale, layout, budget_ms, threads, profile, policy, window=None, softcap=None
) -> tuple:
    """The cache key of a call's options: their values, and the types of
    those whose equal values of other types are refused (causal=1,
    threads=1.0, policy.fixed_chunk_keys=64.0); scale and budget_ms may be
    any number, and equal numbers check alike. A Policy is mutable, so it
    enters by its current values (_policy_key). Raises TypeError where the
    options are not to be cached (hash() does too, for unhashable ones)."""
    policy_key = None if policy is None else _policy_key(policy)
    window_key = None if window is None else (tuple(window), tuple(map(type, window)))
    return (causal, causal.__class__, scale, layout, budget_ms, threads, threads.__class__, profile,
            policy_key, window_key, softcap)


def _policy_key(policy: "Policy") -> tuple:
    if policy.__class__ is not Policy:  # a subclass may compute its fields
        raise TypeError
    values = tuple(policy.__dict__.values())
    return values + tuple(map(type, values))


# Checked options by _options_key; bounded (cleared when full), as a caller
# may vary scale or budget_ms from call to call.
_OPTIONS: Dict[tuple, Any] = {}
_OPTIONS_MAX = 256
# Emptied before the interpreter tears the modules down: the native objects
# (and profiles) it holds are released while the native module still runs.
atexit.register(_OPTIONS.clear)


def _out_shape(q: Any, v: Any) -> Optional[Tuple[int, ...]]:
    """[B, H, Lq, Dv] (or [B, Lq, H, Dv] for 'bshd': q's shape with v's last
    dim); None when the ranks are wrong, which the library then reports."""
    qs, vs = tuple(getattr(q, "shape", ())), tuple(getattr(v, "shape", ()))
    if len(qs) != 4 or len(vs) != 4:
        return None
    return qs[:3] + vs[3:]


def _lse_shape(q: Any, bshd: bool) -> Optional[Tuple[int, ...]]:
    """[B, H, Lq] whatever the layout (as PyTorch and FlashAttention return it)."""
    qs = tuple(getattr(q, "shape", ()))
    if len(qs) != 4:
        return None
    return (qs[0], qs[2], qs[1]) if bshd else qs[:3]


# ---- the internal entry point -------------------------------------------------


def run(
    q: Any,
    k: Any,
    v: Any,
    out: Any,
    lse: Any = None,
    *,
    mask: Any = None,
    sinks: Any = None,
    bshd: bool = False,
    causal: bool = False,
    causal_top_left: bool = False,
    window_left: int = -1,
    window_right: int = -1,
    scale: Optional[float] = None,
    softcap: float = 0.0,
    budget_ms: float,
    safety: float,
    chunk_threshold_keys: int,
    workspace_limit_bytes: int,
    fixed_chunk_keys: int,
    fixed_query_rows: int,
    profile: Optional[DeviceProfile] = None,
    threads: int = 0,
    stream: int = 0,
    progress: Optional[ProgressCallback] = None,
    report: bool = False,
    framework: Optional[Framework] = None,
) -> Optional[RunReport]:
    """Attention into outputs the caller made: q, k, v, mask, sinks read in
    place, out (and lse) written in place; options already checked and flat
    (see _common_args). Returns the report when report=True. `framework` is
    accepted for older callers and not needed.

    An error that stops the run part way carries out and lse (besides its
    report), so that the finished rows can be used.
    """
    del framework
    options = _core.Options(
        bshd=bshd,
        causal=causal,
        causal_top_left=causal_top_left,
        window_left=window_left,
        window_right=window_right,
        scale=scale,
        softcap=softcap,
        budget_ms=budget_ms,
        safety=safety,
        chunk_threshold_keys=chunk_threshold_keys,
        workspace_limit_bytes=workspace_limit_bytes,
        fixed_chunk_keys=fixed_chunk_keys,
        fixed_query_rows=fixed_query_rows,
        profile=profile,
        threads=threads,
    )
    return _run(q, k, v, out, lse, mask, sinks, options, stream, progress, report)


def _run(q, k, v, out, lse, mask, sinks, options, stream, progress, report):
    try:
        return _core.attention(q, k, v, out, lse, mask, sinks, options, stream, progress, report)
    except Error as e:
        if e.report is not None:
            e.out, e.lse = out, lse
        raise


# ---- public calls ---------------------------------------------------------------


def attention(
    q: Any,
    k: Any,
    v: Any,
    *,
    causal: Union[bool, str] = False,
    window: Optional[Tuple[Optional[int], Optional[int]]] = None,
    mask: Any = None,
    scale: Optional[float] = None,
    softcap: Optional[float] = None,
    sinks: Any = None,
    layout: str = "bhsd",
    out: Any = None,
    return_lse: bool = False,
    budget_ms: Optional[float] = None,
    policy: Optional[Policy] = None,
    progress: Optional[ProgressCallback] = None,
    report: bool = False,
    stream: Any = None,
    threads: Optional[int] = None,
    profile: Optional[DeviceProfile] = None,
) -> Any:
    """Exact scaled-dot-product attention, split so that no submission runs
    longer than a time budget.

        O = softmax(scale * q @ k^T + mask) @ v      (per batch and head)

    Arrays are read and written in place, never copied: anything with
    __dlpack__ or the buffer protocol (PyTorch CPU and CUDA tensors, NumPy
    arrays including ml_dtypes.bfloat16, CuPy, ...), with any strides (a
    transposed tensor, a slice of a preallocated KV cache). The result is an
    array of q's framework on q's device (torch in, torch out; NumPy in,
    NumPy out). The GIL is released while the native work runs.

    Args:
        q: queries [B, Hq, Lq, D] (layout 'bhsd') or [B, Lq, Hq, D] ('bshd').
            float32, float16 or bfloat16; k, v and out share its dtype.
        k: keys [B, Hkv, Lk, D] (or [B, Lk, Hkv, D]). Hkv must divide Hq
            (GQA/MQA: query head h reads KV head h // (Hq // Hkv)); K and V
            are never expanded.
        v: values [B, Hkv, Lk, Dv] (or [B, Lk, Hkv, Dv]). 1 <= D, Dv <= 256
            on every backend; Dv may differ from D (CUDA runs a head on the
            narrowest built kernel width that holds it, zero-padded inside
            the kernel).
        causal: mask the keys after each query. True or 'bottom_right':
            query i sees keys j <= i + (Lk - Lq), so the last query sees
            every key (FlashAttention's and MLX's rule, what a KV cache
            needs); with Lq > Lk the first Lq - Lk rows see no key.
            'top_left': query i sees keys j <= i (PyTorch's is_causal); with
            Lk > Lq the last Lk - Lq keys are never seen. The two agree when
            Lq = Lk. Combines with `mask` (a key must pass both).
        window: optional sliding window (left, right) around each query's
            diagonal (FlashAttention's window_size): query i sees keys j
            with d - left <= j <= d + right, d = i + (Lk - Lq), or d = i
            with causal='top_left'; None (or None on a side) = unbounded.
            With causal, both rules hold. Hidden key blocks are skipped, so
            the cost follows the window, not Lq x Lk.
        mask: optional boolean (True = keep) or additive float array (added
            to the scaled logits; -inf drops a key), broadcastable to
            [B, Hq, Lq, Lk]: each dim 1 or full (stride 0 is fine). Fewer
            than 4 dims are aligned to the right, as NumPy broadcasts
            ([Lq, Lk] reads as [1, 1, Lq, Lk]). Not affected by `layout`.
        scale: logit scale; default 1 / sqrt(D).
        softcap: optional logit soft-cap (Gemma 2): each logit s = scale *
            q.k becomes softcap * tanh(s / softcap) before the mask is added
            and the softmax. None or 0 = off; else finite and > 0.
        sinks: optional float32 [Hq]: one extra logit per head that enters
            the softmax denominator only (as in gpt-oss).
        layout: 'bhsd' ([B, H, S, D] arrays) or 'bshd' ([B, S, H, D], read
            through strides, no copy). Applies to q, k, v and out.
        out: optional output to write in place, shaped like q with v's last
            dim (Dv), q's dtype; it is also what is returned. Default: a new
            array of q's framework, dtype and device.
        return_lse: also return the log-sum-exp of each row's logits,
            float32 [B, Hq, Lq] (for either layout), natural log. A row that
            sees no key has O = 0 and LSE = -inf (with sinks: LSE = sink).
        budget_ms: time budget of one submission in milliseconds (overrides
            policy.budget_ms); 0 = none. Default 200.
        policy: a longattn.Policy: the budget and how work is split.
        progress: optional callable progress(done_rows, total_rows, report),
            called between submissions with the GIL held: done_rows counts the
            query rows whose output is final (of total_rows = Lq; all batches
            and heads: a CPU call that runs KV head by KV head,
            report.plan.by_kv_head, finishes them in its last pass, and
            len(report.submissions) counts its way there), report is the
            RunReport so far (one object, updated
            in place between calls; copy it to keep it). Return False to
            cancel: the call then raises longattn.Cancelled, whose .report,
            .finished_rows, .out and .lse say what was done. None or True goes
            on. An exception it raises stops the run and is re-raised.
        report: also return the RunReport: per submission its dispatches,
            predicted and measured ms; totals, budget misses, re-plans,
            warnings, and the plan as executed.
        stream: CUDA only: the stream to run on, an int cudaStream_t or an
            object with .cuda_stream (torch.cuda.Stream). Default: torch's
            current stream for torch tensors, else the legacy default
            stream. The call runs on the arrays' device. A call with no
            progress and no report whose plan is one small submission
            (decode, short prefill) is only enqueued on the stream, as CUDA
            libraries do (and can be captured in a CUDA graph); others wait
            for each submission.
        threads: CPU threads, 0 or None = all hardware threads.
        profile: optional longattn.DeviceProfile to plan with, refined in
            place by what this call measures. Default: the process-wide one.

    Returns:
        out; or (out, lse) with return_lse; with report=True the RunReport is
        appended: (out, report) or (out, lse, report).

    Raises:
        longattn.InvalidArgument (ValueError): bad shapes, dtypes, devices,
            strides or options; the message names the argument and value.
        longattn.Unsupported (NotImplementedError): valid but not served by
            this build or backend (e.g. CUDA arrays without the CUDA backend).
        longattn.OutOfMemory (MemoryError), longattn.BackendError
            (RuntimeError): the run failed; .report says what ran.
        longattn.Cancelled: progress returned False.
    """
    op = "longattn.attention"
    # Options seen before come from the cache; its key (_options_key) is
    # written out here, on the path every call takes.
    try:
        policy_key = None if policy is None else _policy_key(policy)
        window_key = None if window is None else (tuple(window), tuple(map(type, window)))
        options = _OPTIONS[causal, causal.__class__, scale, layout, budget_ms, threads,
                           threads.__class__, profile, policy_key, window_key, softcap]
    except (KeyError, TypeError):  # not cached (yet); the checks below decide
        options = None
    if options is None:
        options = _native_options(
            op, causal, scale, policy, budget_ms, profile, threads, layout, window, softcap
        )
    if progress is not None and not callable(progress):
        raise InvalidArgument(f"[{op}] progress = {progress!r} must be callable or None")
    want_lse = return_lse if return_lse is False else _flag(op, "return_lse", return_lse)
    want_report = report if report is False else _flag(op, "report", report)
    if out is None:
        shape = _out_shape(q, v)
        if shape is not None:
            out = framework_of(q).empty(shape, q)
    lse = None
    if want_lse:
        shape = _lse_shape(q, options.bshd)
        if shape is not None:
            lse = framework_of(q).empty(shape, q, float32=True)
    rep = _run(
        q,
        k,
        v,
        out,
        lse,
        mask,
        sinks,
        options,
        default_stream(q) if stream is None else stream_handle(op, stream, q),
        progress,
        want_report,
    )
    if not (want_lse or want_report):
        return out
    result: Tuple[Any, ...] = (out,)
    if want_lse:
        result += (lse,)
    if want_report:
        result += (rep,)
    return result


def plan(
    q: Any,
    k: Any,
    v: Any,
    *,
    causal: Union[bool, str] = False,
    window: Optional[Tuple[Optional[int], Optional[int]]] = None,
    mask: Any = None,
    scale: Optional[float] = None,
    softcap: Optional[float] = None,
    sinks: Any = None,
    layout: str = "bhsd",
    out: Any = None,
    return_lse: bool = False,
    budget_ms: Optional[float] = None,
    policy: Optional[Policy] = None,
    progress: Optional[ProgressCallback] = None,
    report: bool = False,
    stream: Any = None,
    threads: Optional[int] = None,
    profile: Optional[DeviceProfile] = None,
) -> Plan:
    """The plan attention() would run with the same arguments, without running
    it: its submissions, each dispatch's rectangle of queries x keys and mode,
    predicted times, the workspace it needs, and why this route.

    Takes attention()'s arguments, so a call can be inspected by swapping the
    function name; only shapes, dtypes, strides and options are read (the
    arrays' contents are not), and out need not be given. progress, report
    and stream do not change a plan and are ignored. Runs the same argument
    checks as attention() and raises the same errors. The plan comes from the
    profile the call would use (profile=, or the process-wide one), so it
    changes as runs refine that profile.
    """
    del progress, report, stream  # accepted for symmetry with attention()
    op = "longattn.plan"
    options = _native_options(
        op, causal, scale, policy, budget_ms, profile, threads, layout, window, softcap
    )
    want_lse = _flag(op, "return_lse", return_lse)
    return _core.plan(q, k, v, out, want_lse, mask, sinks, options)


def merge_states(
    parts: Sequence[Tuple[Any, Any]],
    *,
    out: Any = None,
    return_lse: bool = False,
    layout: str = "bhsd",
    threads: Optional[int] = None,
) -> Any:
    """Merges attention results over disjoint key sets into the result over
    their union, exactly (the online-softmax rule; CPU arrays only).

    With m = max_i lse_i and w_i = exp(lse_i - m):
        out = sum_i w_i o_i / sum_i w_i,    lse = m + log(sum_i w_i).
    A part with lse = -inf (no key) carries no weight; a row empty in every
    part gives out = 0, lse = -inf.

    Args:
        parts: a sequence of (o, lse) pairs, e.g. from
            attention(..., return_lse=True) over each key shard: o
            [B, H, L, Dv] (or [B, L, H, Dv] with layout 'bshd'), any float
            dtype; lse float32 [B, H, L], natural log.
        out: optional output to write in place, shaped like the parts' o;
            default a new array like parts[0]'s o (framework and dtype).
        return_lse: also return the merged LSE, float32 [B, H, L].
        layout: 'bhsd' or 'bshd', for the o arrays and out.
        threads: CPU threads, 0 or None = all.

    Returns:
        out, or (out, lse) with return_lse.
    """
    op = "longattn.merge_states"
    bshd = _layout(op, layout)
    nthreads = 0 if threads is None else _number(op, "threads", threads, int)
    want_lse = _flag(op, "return_lse", return_lse)
    try:
        parts = list(parts)
    except TypeError:
        raise InvalidArgument(f"[{op}] parts must be a sequence of (o, lse) pairs") from None
    first = parts[0] if parts and isinstance(parts[0], (tuple, list)) and len(parts[0]) == 2 else None
    out_lse = None
    if first is not None:
        fw = framework_of(first[0])
        if out is None and len(getattr(first[0], "shape", ())) == 4:
            out = fw.empty(first[0].shape, first[0])
        if want_lse and len(getattr(first[1], "shape", ())) == 3:
            out_lse = fw.empty(first[1].shape, first[1], float32=True)
    _core.merge_states(parts, out, out_lse, bshd=bshd, threads=nthreads)
    return (out, out_lse) if want_lse else out
