"""Device profiles of the operations path: one per MLX device, what the
planner sizes its submissions from.

A profile here is a longattn.DeviceProfile like the C++ backends' (same
fields, same rate keys, save()/load() alike), measured on an MLX device by
running the operations path itself: calibrate() times rectangles of the
path's own MLX graphs, and every timed run refines the profile it planned
with (refine()). Until a rate is measured for a call's key, the planner
treats it as a guess and starts with a small probe submission (DESIGN.md,
"the first submission of an unmeasured rate").
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Callable, Dict, Optional, Sequence

import mlx.core as mx

from .._api import DeviceProfile
from .._errors import InvalidArgument
from ._state import DTYPES, Call, State, initial_state, rect_state

# Starting guesses, per MLX device type, for what calibrate() measures. The
# rates only size the first probe (a run replaces them with what it
# measures); the tiles and fill_rows shape every plan: a GPU wants query
# groups of thousands of (batch, head, query) rows so that each product is
# large, and key chunks on a coarse grid so that MLX sees few distinct
# shapes.
_INITIAL = {
    "gpu": dict(default_gflops=2000.0, dispatch_overhead_ms=0.3, submission_overhead_ms=0.5,
                state_gbps=100.0, fill_rows=8192, query_tile=64, key_tile=256),
    "cpu": dict(default_gflops=20.0, dispatch_overhead_ms=0.1, submission_overhead_ms=0.1,
                state_gbps=5.0, fill_rows=256, query_tile=16, key_tile=64),
}

_PROFILES: Dict[str, DeviceProfile] = {}

# A faster measurement moves the profile's rate this share of the way (in log
# space) per run, so that one noisy submission cannot swing later plans to
# longer submissions; a slower one is taken outright (the next submission
# must fit the budget at the rate just seen: measured on the GPU machine's
# MLX CUDA backend, late causal rows ran 1.5x slower a FLOP than early ones,
# and halfway steps left ten submissions in a row 2-8% over budget); a guess
# is replaced outright.
_STEP = 0.5
# One measurement moves a measured rate by at most this factor.
_MAX_STEP = 8.0


def device_kind(device: mx.Device) -> str:
    """'cpu' or 'gpu'."""
    return "cpu" if device.type == mx.cpu else "gpu"


def initial_profile(kind: str) -> DeviceProfile:
    p = DeviceProfile()
    p.backend = f"mlx.{kind}"
    try:
        p.device_name = str(mx.device_info().get("device_name", kind))
    except Exception:  # device_info() is newer than some MLX builds
        p.device_name = kind
    for name, value in _INITIAL[kind].items():
        setattr(p, name, value)
    return p


def process_profile(device: mx.Device) -> DeviceProfile:
    """The process-wide profile of an MLX device (refined in place by calls
    that are given none)."""
    kind = device_kind(device)
    if kind not in _PROFILES:
        _PROFILES[kind] = initial_profile(kind)
    return _PROFILES[kind]


def default_profile(device=None) -> DeviceProfile:
    """A copy of the process-wide profile the operations path plans with on
    an MLX device (a Device, a Stream's device, or None for MLX's default
    device), as refined by the calls so far."""
    if isinstance(device, mx.Stream):
        device = device.device
    elif device is None:
        device = mx.default_device()
    elif not isinstance(device, mx.Device):
        device = mx.Device(device)
    return copy.copy(process_profile(device))


def _observed_gflops(profile: DeviceProfile, flops: float, measured_ms: float,
                     dispatches: int) -> float:
    """The rate (GFLOP/s) a timed submission of `dispatches` rectangles shows:
    its fixed costs (one submission, the rectangles) are taken off its time
    first, but at most three quarters of it, so that a submission of mostly
    fixed cost cannot claim an absurd rate."""
    fixed = profile.submission_overhead_ms + dispatches * profile.dispatch_overhead_ms
    return flops / (max(measured_ms - fixed, measured_ms / 4) * 1e6)


def refine(profile: DeviceProfile, key: str, flops: float, measured_ms: float,
           dispatches: int) -> float:
    """Folds one timed submission into `profile`'s rate for `key` and
    returns the rate it observed (GFLOP/s, _observed_gflops)."""
    if flops <= 0 or measured_ms <= 0:
        return 0.0
    seen = _observed_gflops(profile, flops, measured_ms, dispatches)
    rates = dict(profile.gflops)
    old = rates.get(key)
    if old is None:
        rates[key] = seen
    else:
        step = min(max(seen / old, 1 / _MAX_STEP), _MAX_STEP)
        rates[key] = old * (step if step < 1 else step**_STEP)
    profile.gflops = rates
    profile.samples += 1
    return seen


def _median_ms(run: Callable[[], None], reps: int) -> float:
    run()  # warm-up: kernels compiled, memory allocated
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        run()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def calibrate(
    stream=None,
    *,
    dtypes: Sequence[str] = ("float32", "float16", "bfloat16"),
    head_dims: Sequence[int] = (64, 128),
    heads: int = 8,
    q_len: int = 1024,
    k_len: int = 1024,
    reps: int = 3,
    log: Optional[Callable[[str], None]] = None,
) -> DeviceProfile:
    """Measures a profile of the operations path on an MLX stream (a Stream,
    a Device, or None for the default device's stream) from its own MLX
    graphs on generated inputs: the fixed cost of an evaluation (one
    submission) and of a rectangle, a rate per (dtype, head dim) for full,
    causal and masked problems of heads x q_len x k_len, and the running
    state's merge bandwidth. Takes seconds on a GPU; longer on MLX's CPU.

    Returns the profile (save() it; pass it as profile= to
    longattn.mlx.scaled_dot_product_attention). It also becomes the
    process-wide profile of that device, which calls without profile= use.
    """
    op = "longattn.mlx.calibrate"
    stream = resolve_stream(op, stream)
    for name, value in (("heads", heads), ("q_len", q_len), ("k_len", k_len), ("reps", reps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgument(f"[{op}] {name} = {value!r} must be an integer >= 1")
    if not dtypes:
        raise InvalidArgument(f"[{op}] dtypes is empty")
    for d in dtypes:
        if d not in DTYPES:
            raise InvalidArgument(
                f"[{op}] dtypes: {d!r} must be 'float32', 'float16' or 'bfloat16'")
    for hd in head_dims:
        if isinstance(hd, bool) or not isinstance(hd, int) or not 1 <= hd <= 256:
            raise InvalidArgument(f"[{op}] head_dims: {hd!r} must be an integer in [1, 256]")
    say = log or (lambda line: None)
    kind = device_kind(stream.device)
    p = initial_profile(kind)
    rates = {}
    with mx.stream(stream):
        x = mx.zeros((16,))
        mx.eval(x)
        p.submission_overhead_ms = _median_ms(lambda: mx.eval(x + 1), max(reps, 10))
        say(f"{op}: {p.backend} ({p.device_name}): {p.submission_overhead_ms:.3f} ms a submission")
        for d in dtypes:
            for hd in head_dims:
                q, k, v, band = _inputs(DTYPES[d], heads, q_len, k_len, hd)
                for kind_name, mask in (("full", None), ("causal", "causal"), ("masked", band)):
                    c = Call(q, k, v, mask, None, hd**-0.5)
                    ms = _median_ms(lambda: _run_rect(c, 1), reps)
                    if not rates:
                        # The fixed cost of a rectangle: the same work as 8 of them.
                        eight = _median_ms(lambda: _run_rect(c, 8), reps)
                        p.dispatch_overhead_ms = max(0.0, (eight - ms) / 7)
                        say(f"  {p.dispatch_overhead_ms:.3f} ms a rectangle")
                    gflops = _observed_gflops(p, c.flops(0, q_len, 0, k_len), ms, 1)
                    rates[DeviceProfile.rate_key(d, hd, kind_name == "causal",
                                                 kind_name == "masked")] = gflops
                    say(f"  {d} d{hd} {kind_name}: {ms:.2f} ms, {gflops:.4g} GFLOP/s")
        p.state_gbps = _measure_state(heads, q_len, max(head_dims), reps)
    say(f"  running state: {p.state_gbps:.3g} GB/s")
    p.gflops = rates
    p.samples = len(rates)
    _PROFILES[kind] = copy.copy(p)
    return p


def _inputs(dtype, heads, q_len, k_len, hd):
    q = mx.random.normal((1, heads, q_len, hd)).astype(dtype)
    k = mx.random.normal((1, heads, k_len, hd)).astype(dtype)
    v = mx.random.normal((1, heads, k_len, hd)).astype(dtype)
    band = mx.random.uniform(shape=(q_len, k_len)) < 0.9
    mx.eval(q, k, v, band)
    return q, k, v, band


def _run_rect(c: Call, pieces: int) -> None:
    """The whole call as `pieces` key ranges merged into one state, evaluated."""
    st = initial_state(c, c.Lq)
    step = -(-c.Lk // pieces)
    for k0 in range(0, c.Lk, step):
        part = rect_state(c, 0, c.Lq, k0, min(c.Lk, k0 + step))
        if part is not None:
            st = st.merge(part)
    mx.eval(*st.finalize(c.q.dtype))


def _measure_state(heads, rows, dv, reps) -> float:
    a = State.empty(1, heads, rows, dv)
    b = State(mx.zeros((1, heads, rows)), mx.ones((1, heads, rows)), mx.ones((1, heads, rows, dv)))
    mx.eval(*a.arrays(), *b.arrays())
    ms = _median_ms(lambda: mx.eval(*a.merge(b).arrays()), reps)
    # Two states read, one written: 3 x (m, l, o) in float32.
    moved = 3 * heads * rows * (dv + 2) * 4
    return max(moved / (ms * 1e6), 0.01)


def resolve_stream(op: str, stream) -> mx.Stream:
    """The MLX stream a call runs on, as MLX's own `stream=` reads it: None
    (the default device's default stream), a Stream, a Device or a device
    type (mx.cpu, mx.gpu)."""
    if stream is None:
        return mx.default_stream(mx.default_device())
    if isinstance(stream, mx.Stream):
        return stream
    if isinstance(stream, mx.Device):
        return mx.default_stream(stream)
    if isinstance(stream, mx.DeviceType):
        return mx.default_stream(mx.Device(stream))
    raise TypeError(
        f"[{op}] stream = {stream!r} must be None, an mx.Stream, an mx.Device or mx.cpu / mx.gpu")
