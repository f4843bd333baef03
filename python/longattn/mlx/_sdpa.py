"""longattn.mlx.scaled_dot_product_attention: the public call, MLX's
argument rules, and the choice of path (native: longattn's C++ backend of
the stream's device, the CPU backend on MLX's CPU device, _native.py, the
CUDA kernels on MLX's CUDA backend, _cuda.py; ops: MLX operations on any
stream, _executor.py, the only path on Metal).

Checked here: what MLX itself checks before its own call and longattn's C++
boundary cannot see (the dtype promotion of q, k, v, mask and sinks; the
mask's form). Shapes are checked once, by the C++ boundary, which both paths
reach (the operations path through the planner); its messages name the
argument and value.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import mlx.core as mx

from .. import _api
from .._api import DeviceProfile, Policy, ProgressCallback
from .._errors import InvalidArgument, Unsupported
from . import _cuda, _executor, _native, _profile
from ._state import DTYPE_NAMES, Call

OP = "longattn.mlx.scaled_dot_product_attention"

# The default time budget of one submission: a twentieth of the macOS GPU
# watchdog (about 5 s per command buffer), so that a submission running 4x
# over its prediction (what the planner's probe guards a fresh profile
# against) still ends within a fifth of it. Smaller budgets cost little
# here: a submission's fixed cost (one evaluation) is under a millisecond.
DEFAULT_BUDGET_MS = 250.0


def _array(name: str, x: Any, ndim: Optional[int] = None) -> mx.array:
    if not isinstance(x, mx.array):
        raise TypeError(f"[{OP}] {name} must be an mx.array, not {type(x).__name__}")
    if ndim is not None and x.ndim != ndim:
        raise InvalidArgument(
            f"[{OP}] {name}.shape = {tuple(x.shape)}: {name} must have {ndim} dims, as in MLX")
    return x


def _common_dtype(q: mx.array, k: mx.array, v: mx.array) -> mx.Dtype:
    """MLX's rule: q, k and v promote to one type, which must be floating."""
    dtype = mx.result_type(q, k, v)
    if dtype in DTYPE_NAMES:
        return dtype
    if mx.issubdtype(dtype, mx.floating):
        raise Unsupported(
            f"[{OP}] q, k, v (dtypes {q.dtype}, {k.dtype}, {v.dtype}) promote to {dtype}: "
            "longattn computes in float32, float16 and bfloat16; cast them")
    raise InvalidArgument(
        f"[{OP}] q, k, v (dtypes {q.dtype}, {k.dtype}, {v.dtype}) promote to {dtype}, "
        "which is not a floating type")


def _mask(mask: Any, dtype: mx.Dtype, s: mx.Stream) -> Union[None, str, mx.array]:
    if mask is None:
        return None
    if isinstance(mask, str):
        if mask != "causal":
            raise InvalidArgument(f"[{OP}] mask = {mask!r} must be None, 'causal' or an mx.array")
        return mask
    if not isinstance(mask, mx.array):
        raise TypeError(
            f"[{OP}] mask must be None, 'causal' or an mx.array, not {type(mask).__name__}")
    if mask.ndim > 4:
        raise InvalidArgument(
            f"[{OP}] mask.shape = {tuple(mask.shape)} has {mask.ndim} dims: at most 4, "
            "broadcastable to [B, Hq, Lq, Lk]")
    if mask.dtype == mx.bool_:
        return mask
    if mx.result_type(mask.dtype, dtype) != dtype:
        raise InvalidArgument(
            f"[{OP}] mask.dtype = {mask.dtype} does not promote to the output's dtype {dtype} "
            "(MLX's rule for additive masks)")
    # An integer additive mask as the output's dtype: longattn adds float masks.
    return mask if mx.issubdtype(mask.dtype, mx.floating) else mask.astype(dtype, stream=s)


def _sinks(sinks: Any, dtype: mx.Dtype) -> Optional[mx.array]:
    if sinks is None:
        return None
    _array("sinks", sinks)
    if mx.result_type(sinks.dtype, dtype) != dtype:
        raise InvalidArgument(
            f"[{OP}] sinks.dtype = {sinks.dtype} does not promote to the output's dtype {dtype} "
            "(MLX's rule for sinks)")
    return sinks


def _policy(policy: Optional[Policy], budget_ms: Optional[float]) -> Policy:
    """The policy a call runs under: the caller's, or longattn's default with
    DEFAULT_BUDGET_MS; budget_ms overrides either. Checked."""
    if policy is None:
        policy = Policy(budget_ms=DEFAULT_BUDGET_MS)
    return Policy(**_api._policy_args(OP, policy, budget_ms))


def scaled_dot_product_attention(
    q: mx.array,
    k: mx.array,
    v: mx.array,
    *,
    scale: float,
    mask: Union[None, str, mx.array] = None,
    sinks: Optional[mx.array] = None,
    stream: Union[None, mx.Stream, mx.Device] = None,
    budget_ms: Optional[float] = None,
    policy: Optional[Policy] = None,
    report: bool = False,
    progress: Optional[ProgressCallback] = None,
    return_lse: bool = False,
    profile: Optional[DeviceProfile] = None,
    path: str = "auto",
    force_fused: bool = False,
) -> Any:
    """Exact attention with the arguments and results of
    mx.fast.scaled_dot_product_attention (MLX 0.32), split so that no
    submission runs longer than a time budget (the macOS watchdog kills a
    Metal command buffer after about 5 s):

        O = softmax(scale * q @ k^T + mask) @ v      (per batch and head)

    Args:
        q: queries [B, Hq, Lq, D].
        k: keys [B, Hkv, Lk, D]; Hkv divides Hq (GQA/MQA: query head h reads
            KV head h // (Hq // Hkv); K and V are never repeated).
        v: values [B, Hkv, Lk, Dv].
            q, k and v promote to one dtype as MLX promotes them (mixed
            inputs are cast to it): float32, float16 or bfloat16 (float64,
            which MLX's CPU serves, is refused: Unsupported). The output has
            that dtype. 1 <= D, Dv <= 256.
        scale: logit scale (required, as in MLX; usually D ** -0.5).
        mask: None; "causal", bottom-right aligned as MLX aligns it (query i
            sees keys j <= i + Lk - Lq, so with Lq > Lk the first Lq - Lk
            rows see none); or an array of at most 4 dims broadcastable to
            [B, Hq, Lq, Lk]: boolean (True = keep) or additive (its dtype must
            promote to the output's, as in MLX; -inf drops a key).
        sinks: optional [Hq], one extra logit per head in the softmax
            denominator only; its dtype must promote to the output's.
        stream: the MLX stream or device to run on (default: the default
            device's stream). On MLX's CPU device the call runs on longattn's
            C++ CPU backend, on MLX's CUDA backend on longattn's CUDA kernels
            (where longattn was built with CUDA), both reading and writing
            the arrays in place; on Metal, as MLX operations on that stream
            (see `path`).
        budget_ms: time budget of one submission, ms (overrides
            policy.budget_ms); 0 = none. Default DEFAULT_BUDGET_MS (250),
            a twentieth of the macOS watchdog.
        policy: a longattn.Policy: budget, safety, how work is split, and
            workspace_limit_bytes, which on the operations path also bounds
            the score memory of the work queued between two evaluations.
        report: also return the RunReport (per submission: predicted and
            measured ms, kernels "mlx.ops" or "mlx.fused" on the operations
            path).
        progress: optional progress(done_rows, total_rows, report), called
            after each submission; a false answer (not None) cancels with
            longattn.Cancelled, whose .out/.lse hold the finished rows
            (.finished_rows names them).
        return_lse: also return the natural-log LSE, float32 [B, Hq, Lq].
        profile: the DeviceProfile to plan with, refined in place by what
            the call measures. Default: the process-wide one of the path
            taken (longattn's CPU or CUDA profile on the native path,
            longattn.mlx.default_profile(device) on the operations path;
            longattn.mlx.calibrate() measures one). A profile of the
            operations path (backend "mlx.*") keeps a call there.
        path: "auto" (native where the stream's device has a longattn
            backend: MLX's CPU, MLX's CUDA backend with longattn built with
            CUDA; else operations), "native" (refused where there is no such
            backend, e.g. Metal) or "ops" (MLX operations on any stream;
            tests force it on the CPU).
        force_fused: accepted for MLX's signature; no effect (longattn never
            materializes the whole score matrix, which is what MLX's flag
            avoids).

    Returns:
        O [B, Hq, Lq, Dv]; with return_lse (O, LSE); with report the
        RunReport appended: (O, report) or (O, LSE, report).

    Where it differs from MLX: a row that sees no key (fully masked, Lk = 0,
    causal with Lq > Lk) gives O = 0 and LSE = -inf (with sinks: LSE =
    sink), where MLX returns the mean of V (boolean masks, causal) or NaN
    (additive -inf). Errors are longattn's: InvalidArgument (a ValueError,
    as MLX raises) naming the argument and value, Unsupported (a
    NotImplementedError); arguments that are not MLX arrays raise TypeError.
    """
    s = _profile.resolve_stream(OP, stream)
    q, k, v = _array("q", q, 4), _array("k", k, 4), _array("v", v, 4)
    dtype = _common_dtype(q, k, v)
    q, k, v = (x if x.dtype == dtype else x.astype(dtype, stream=s) for x in (q, k, v))
    mask = _mask(mask, dtype, s)
    sinks = _sinks(sinks, dtype)
    scale = _api._number(OP, "scale", scale, float)
    want_lse = _api._flag(OP, "return_lse", return_lse)
    want_report = _api._flag(OP, "report", report)
    _api._flag(OP, "force_fused", force_fused)
    if progress is not None and not callable(progress):
        raise InvalidArgument(f"[{OP}] progress = {progress!r} must be callable or None")
    if profile is not None and not isinstance(profile, DeviceProfile):
        raise InvalidArgument(
            f"[{OP}] profile = {profile!r} must be a longattn.DeviceProfile or None")
    if path not in ("auto", "native", "ops"):
        raise InvalidArgument(f"[{OP}] path = {path!r} must be 'auto', 'native' or 'ops'")
    on_cpu = s.device.type == mx.cpu
    native_here = on_cpu or _cuda.available(s.device)
    if path == "native" and not native_here:
        raise InvalidArgument(
            f"[{OP}] path = 'native' runs on MLX's CPU device, or on MLX's CUDA backend with "
            f"longattn built with CUDA; stream = {s} is neither: use path='ops'")
    ops_profile = profile is not None and profile.backend.startswith("mlx.")
    empty = any(x.size == 0 for x in (q, k, v))
    pol = _policy(policy, budget_ms)
    mx.eval(*(x for x in (q, k, v, mask, sinks) if isinstance(x, mx.array)))

    if native_here and path != "ops" and not (ops_profile and path == "auto") and (
            on_cpu or not empty):
        options = _api._native_options(OP, isinstance(mask, str), scale, pol, None, profile,
                                       None, "bhsd")
        sinks32 = None if sinks is None else sinks.astype(mx.float32, stream=s)
        array_mask = mask if isinstance(mask, mx.array) else None
        backend = _native if on_cpu else _cuda
        out, lse, rep = backend.run(q, k, v, array_mask, sinks32, s, options, want_lse, progress,
                                    want_report)
    else:
        prof = profile if profile is not None else _profile.process_profile(s.device)
        call = Call(q, k, v, mask, sinks, scale)
        out, lse, rep = _executor.run(call, s, pol, prof, want_lse, progress)
    if not (want_lse or want_report):
        return out
    result: tuple = (out,)
    if want_lse:
        result += (lse,)
    if want_report:
        result += (rep,)
    return result
