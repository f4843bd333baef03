"""PyTorch integration: a drop-in for torch.nn.functional.scaled_dot_product_attention,
and the custom op torch.ops.longattn.attention that torch.compile traces.

    import longattn.torch
    out = longattn.torch.scaled_dot_product_attention(q, k, v, is_causal=True, budget_ms=50)

Swapping the import changes nothing but speed and the budget: shapes,
broadcasting, is_causal (top-left aligned), masks, scale, GQA and the
errors of torch's own checks are PyTorch's (see the function's docstring for
the few differences, all refusals or documented edge cases).

Two paths lead to the same native call:

- In eager mode the function calls longattn directly, because the op costs
  measurably more: through torch's dispatcher to the op's Python
  implementation, a call took about 10 microseconds longer than the direct
  path (38.6 against 28.3 us, and 46.8 against 38.7 us in a second run:
  AMD EPYC, 2 cores, torch 2.15, a [1, 1, 1, 16] float32 call, best of 7
  runs of 10,000 calls), while the direct path costs about 1 us over
  longattn.attention itself.
- While torch.compile traces (torch.compiler.is_compiling()), it calls the
  op torch.ops.longattn.attention, registered here with torch.library and a
  fake implementation, so dynamo and AOTAutograd see one opaque node with
  known output metadata and `fullgraph=True` holds. The op takes only what
  a graph can carry: tensors, the causal alignment, the sliding window, the
  logit soft-cap, the scale and the policy as numbers. A progress callback
  or report=True cannot go through a graph and is refused while compiling.

Importing this module imports torch and registers the op; `import longattn`
alone does neither.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ._api import Policy, ProgressCallback, attention
from ._report import RunReport

# A sliding window (left, right) as longattn.attention takes it: None, or
# None on a side, = unbounded.
Window = Optional[Tuple[Optional[int], Optional[int]]]

__all__ = ["scaled_dot_product_attention", "attention_op"]

_OP = "longattn.torch.scaled_dot_product_attention"
_DEFAULT_POLICY = Policy()

# ---- shapes: torch's broadcasting, folded onto longattn's [B, H, S, D] ----------


def _mismatch(a: int, b: int, dim: int) -> RuntimeError:
    # The message torch's broadcasting raises (from the matmul or the mask add
    # of its math backend), so that code matching on it keeps working.
    return RuntimeError(
        f"The size of tensor a ({a}) must match the size of tensor b ({b}) at "
        f"non-singleton dimension {dim}"
    )


def _broadcast(a: Sequence[int], b: Sequence[int]) -> Tuple[int, ...]:
    """The broadcast of two shapes of equal length, raising as torch does."""
    out = []
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y and x != 1 and y != 1:
            raise _mismatch(x, y, i)
        out.append(y if x == 1 else x)
    return tuple(out)


def _lift(x: Tensor, nd: int) -> Tensor:
    """x with leading size-1 dims up to rank nd (a view)."""
    return x.reshape((1,) * (nd - x.dim()) + tuple(x.shape)) if x.dim() < nd else x


def _to_4d(x: Tensor, batch: Tuple[int, ...], heads: int, B: int) -> Tensor:
    """x [*b, h, S, E] broadcast to [*batch, heads, S, E] (stride 0 where it
    grows) and its batch dims merged into one: [B, heads, S, E]. A view
    unless the batch dims' strides cannot merge (a partly broadcast or
    oddly sliced batch); then torch.reshape copies, as it would for torch.
    A tensor already in shape is returned as it is (no torch call at all:
    the common 4-D case costs nothing here)."""
    tail = tuple(x.shape[-2:])
    shape = batch + (heads,) + tail
    if tuple(x.shape) != shape:
        x = x.expand(shape)
    if len(batch) != 1:
        x = x.reshape((B, heads) + tail)
    return x


class _Folded:
    """A call's arguments as longattn's 4-D arrays, and how to unfold the output."""

    __slots__ = ("q", "k", "v", "mask", "out_shape")

    def __init__(self, query, key, value, attn_mask, enable_gqa, sinks_given):
        if not self._as_they_are(query, key, value, attn_mask, enable_gqa):
            self._broadcast_and_fold(query, key, value, attn_mask, enable_gqa, sinks_given)

    def _as_they_are(self, query, key, value, attn_mask, enable_gqa) -> bool:
        """The common call in a few comparisons, nothing folded: 4-D tensors
        of one batch, K and V of one head count that GQA (or broadcasting
        one KV head) serves, and no mask or one longattn takes as it is."""
        if not (
            isinstance(query, Tensor) and isinstance(key, Tensor) and isinstance(value, Tensor)
        ):
            return False
        qs, ks, vs = query.shape, key.shape, value.shape
        if len(qs) != 4 or len(ks) != 4 or len(vs) != 4:
            return False
        B, hq, L, _ = qs
        hk = ks[1]
        if not (
            ks[0] == B
            and vs[0] == B
            and vs[1] == hk
            and (hk == hq or hk == 1 or (enable_gqa and hq % hk == 0))
        ):
            return False
        if attn_mask is not None:
            if not isinstance(attn_mask, Tensor):
                return False
            ms = attn_mask.shape
            if len(ms) > 4:
                return False
            full = (B, hq, L, ks[2])[4 - len(ms) :]
            for want, got in zip(full, ms):
                if got != want and got != 1:
                    return False
        self.q, self.k, self.v, self.mask = query, key, value, attn_mask
        self.out_shape = (B, hq, L, vs[3])
        return True

    def _broadcast_and_fold(self, query, key, value, attn_mask, enable_gqa, sinks_given):
        for name, t in (("query", query), ("key", key), ("value", value)):
            if not isinstance(t, Tensor):
                raise TypeError(f"[{_OP}] {name} must be a torch.Tensor, not {type(t).__name__}")
        if min(query.dim(), key.dim(), value.dim()) < 2:
            raise RuntimeError(
                "Expected query, key, and value to all be  at least 2 dimensional, but got "
                f"query.dim: {query.dim()} key.dim: {key.dim()} and value.dim: {value.dim()} "
                "instead."
            )
        out_rank = max(query.dim(), key.dim(), value.dim())
        nd = max(out_rank, 3)
        q, k, v = (_lift(t, nd) for t in (query, key, value))
        hq, hk, hv = q.shape[-3], k.shape[-3], v.shape[-3]
        if enable_gqa:
            # torch repeats K and V heads (repeat_interleave) up to Hq: query
            # head h reads KV head h // (Hq / Hkv), which is longattn's GQA.
            if hq % hk != 0 or hq % hv != 0:
                raise RuntimeError(
                    "Number of heads in key and value must divide the number of heads in query"
                )
            lead_k, lead_v = k.shape[:-3] + (hq,), v.shape[:-3] + (hq,)
        else:
            lead_k, lead_v = k.shape[:-2], v.shape[:-2]
        lead = _broadcast(_broadcast(q.shape[:-2], lead_k), lead_v)
        batch, heads = lead[:-1], lead[-1]
        B = 1
        for n in batch:
            B *= n
        L, S, Ev = q.shape[-2], k.shape[-2], v.shape[-1]

        # K and V keep their own head count when they share it (GQA, MQA:
        # never expanded); otherwise the one with fewer heads is widened, by
        # a stride-0 view when it has one head (broadcasting), or by
        # repeat_interleave (a copy: the one case that copies, K and V with
        # different head counts under enable_gqa).
        if hk != hv:
            if enable_gqa:
                k = k.repeat_interleave(hq // hk, dim=-3) if hk != hq else k
                v = v.repeat_interleave(hq // hv, dim=-3) if hv != hq else v
                hk = hv = hq
            else:
                hk = hv = heads
        if sinks_given and hq != heads:
            raise RuntimeError(
                f"[{_OP}] sinks need query's heads ({hq}) to be the output's ({heads})"
            )
        self.q = _to_4d(q, batch, heads, B)
        self.k = _to_4d(k, batch, hk, B)
        self.v = _to_4d(v, batch, hv, B)
        self.out_shape = (lead[len(lead) - (out_rank - 2) :] if out_rank > 2 else ()) + (L, Ev)

        self.mask = None
        if attn_mask is not None:
            if not isinstance(attn_mask, Tensor):
                raise TypeError(
                    f"[{_OP}] attn_mask must be a torch.Tensor or None, "
                    f"not {type(attn_mask).__name__}"
                )
            full = lead + (L, S)
            if attn_mask.dim() > nd:
                raise RuntimeError(
                    f"output with shape {list(full)} doesn't match the broadcast shape "
                    f"{list(_broadcast((1,) * (attn_mask.dim() - nd) + full, attn_mask.shape))}"
                )
            mshape = (1,) * (nd - attn_mask.dim()) + tuple(attn_mask.shape)
            for i, (want, got) in enumerate(zip(full, mshape)):
                if got != want and got != 1:
                    raise _mismatch(want, got, i)
            if nd == 4 or (nd == 3 and attn_mask.dim() <= 3):
                # as it is: longattn aligns a mask of fewer dims to the right
                self.mask = attn_mask
            elif all(d == 1 for d in mshape[:-3]):
                self.mask = attn_mask.reshape((1,) + mshape[-3:])  # a view: one mask for all
            else:
                m = attn_mask.reshape(mshape)
                self.mask = m.expand(batch + mshape[-3:]).reshape((B,) + mshape[-3:])


# ---- the op ---------------------------------------------------------------------


def _run(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Optional[Tensor],
    sinks: Optional[Tensor],
    causal: str,
    window: Window,
    softcap: float,
    scale: Optional[float],
    policy: Optional[Policy],
    budget_ms: Optional[float],
    progress: Optional[ProgressCallback],
    report: bool,
    out_bshd: bool,
) -> Tuple[Tensor, Optional[RunReport]]:
    """longattn.attention on 4-D q [B, H, L, D], k, v into a new output:
    [B, H, L, Dv], or with out_bshd [B, L, H, Dv] (written through its
    transposed view, no copy). causal: the op's 'none', 'top_left' or
    'bottom_right'."""
    B, H, L, _ = q.shape
    Dv = v.shape[-1]
    if out_bshd:
        out = q.new_empty((B, L, H, Dv))
        target = out.transpose(1, 2)
    else:
        out = target = q.new_empty((B, H, L, Dv))
    result = attention(
        q,
        k,
        v,
        causal=False if causal == "none" else causal,
        window=window,
        softcap=softcap,
        mask=mask,
        scale=scale,
        sinks=sinks,
        out=target,
        budget_ms=budget_ms,
        policy=policy,
        progress=progress,
        report=report,
    )
    return out, (result[1] if report else None)


@torch.library.custom_op("longattn::attention", mutates_args=())
def attention_op(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Optional[Tensor],
    sinks: Optional[Tensor],
    causal: str,
    window_left: int,
    window_right: int,
    softcap: float,
    scale: Optional[float],
    budget_ms: float,
    safety: float,
    chunk_threshold_keys: int,
    workspace_limit_bytes: int,
    fixed_chunk_keys: int,
    fixed_query_rows: int,
    out_bshd: bool,
) -> Tensor:
    """longattn.attention as a torch op (torch.ops.longattn.attention).

    q [B, Hq, L, D], k [B, Hkv, S, D], v [B, Hkv, S, Dv] (layout 'bhsd', any
    strides); mask and sinks as longattn.attention takes them; causal 'none',
    'bottom_right' or 'top_left'; window_left and window_right longattn's
    window=(left, right), -1 = unbounded (None there), measured from the
    diagonal of causal's alignment; softcap longattn's logit soft-cap (each
    logit s becomes softcap * tanh(s / softcap) before the mask), 0 = off;
    scale None = 1/sqrt(D); the policy as its six numbers (longattn.Policy's
    fields, budget_ms included). Returns a new tensor [B, Hq, L, Dv], or
    [B, L, Hq, Dv] when out_bshd (what transformers expects back). No
    autograd formula: longattn has no backward.
    """
    policy = Policy(
        budget_ms=budget_ms,
        safety=safety,
        chunk_threshold_keys=chunk_threshold_keys,
        workspace_limit_bytes=workspace_limit_bytes,
        fixed_chunk_keys=fixed_chunk_keys,
        fixed_query_rows=fixed_query_rows,
    )
    window = (
        None if window_left == -1 else window_left,
        None if window_right == -1 else window_right,
    )
    return _run(
        q, k, v, mask, sinks, causal, window, softcap, scale, policy, None, None, False, out_bshd
    )[0]


@attention_op.register_fake
def _attention_fake(
    q, k, v, mask, sinks, causal, window_left, window_right, softcap, scale, budget_ms, safety,
    chunk_threshold_keys,
    workspace_limit_bytes, fixed_chunk_keys, fixed_query_rows, out_bshd,
):  # fmt: skip
    B, H, L, _ = q.shape
    shape = (B, L, H, v.shape[-1]) if out_bshd else (B, H, L, v.shape[-1])
    return q.new_empty(shape)


def _dispatch(
    f: _Folded,
    sinks: Optional[Tensor],
    causal: str,
    window: Window,
    softcap: float,
    scale: Optional[float],
    policy: Optional[Policy],
    budget_ms: Optional[float],
    progress: Optional[ProgressCallback],
    report: bool,
    out_bshd: bool,
) -> Tuple[Tensor, Optional[RunReport]]:
    """The folded call, through the op while torch.compile traces, else directly."""
    if not torch.compiler.is_compiling():
        return _run(
            f.q, f.k, f.v, f.mask, sinks, causal, window, softcap, scale, policy, budget_ms,
            progress, report, out_bshd,
        )  # fmt: skip
    if progress is not None or report:
        raise RuntimeError(
            f"[{_OP}] progress= and report=True cannot be traced by torch.compile; "
            "call the function outside the compiled region to use them"
        )
    p = _DEFAULT_POLICY if policy is None else policy
    left, right = (None, None) if window is None else window
    out = attention_op(
        f.q,
        f.k,
        f.v,
        f.mask,
        sinks,
        causal,
        -1 if left is None else left,
        -1 if right is None else right,
        float(softcap),
        None if scale is None else float(scale),
        float(p.budget_ms if budget_ms is None else budget_ms),
        float(p.safety),
        int(p.chunk_threshold_keys),
        int(p.workspace_limit_bytes),
        int(p.fixed_chunk_keys),
        int(p.fixed_query_rows),
        out_bshd,
    )
    return out, None


def _attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Optional[Tensor],
    causal: str,
    scale: Optional[float],
    enable_gqa: bool,
    sinks: Optional[Tensor] = None,
    out_bshd: bool = False,
    window: Window = None,
    softcap: float = 0.0,
    budget_ms: Optional[float] = None,
    policy: Optional[Policy] = None,
    progress: Optional[ProgressCallback] = None,
    report: bool = False,
) -> Tuple[Tensor, Optional[RunReport]]:
    """SDPA-shaped attention on torch tensors (the shared body of
    scaled_dot_product_attention and the transformers hook): fold, run,
    unfold. out_bshd returns [..., L, H, Ev] instead of [..., H, L, Ev].
    window and softcap are longattn.attention's (torch's SDPA has neither,
    so the public function does not take them; the transformers hook passes
    the window)."""
    f = _Folded(query, key, value, attn_mask, enable_gqa, sinks is not None)
    out, rep = _dispatch(
        f, sinks, causal, window, softcap, scale, policy, budget_ms, progress, report, out_bshd
    )
    shape = f.out_shape
    if out_bshd and len(shape) >= 3:
        shape = shape[:-3] + (shape[-2], shape[-3], shape[-1])
    return (out if out.shape == shape else out.view(shape)), rep


# ---- the public call --------------------------------------------------------------


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Optional[Tensor] = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: Optional[float] = None,
    enable_gqa: bool = False,
    *,
    budget_ms: Optional[float] = None,
    policy: Optional[Policy] = None,
    report: bool = False,
    progress: Optional[ProgressCallback] = None,
) -> Union[Tensor, Tuple[Tensor, RunReport]]:
    """torch.nn.functional.scaled_dot_product_attention, computed by longattn:
    exact, and split so that no submission runs longer than a time budget.

        out = softmax(query @ key.transpose(-2, -1) * scale + bias) @ value

    The arguments before the `*` are torch's, with torch's meaning; the ones
    after it are longattn's. Inputs are read in place (any strides, no copy)
    except where noted under `query`; the output is a new tensor of query's
    dtype on query's device. Eager calls run longattn directly; under
    torch.compile the call goes through the op torch.ops.longattn.attention
    (see the module's docstring).

    Args:
        query: (N, ..., Hq, L, E). float32, float16 or bfloat16 (longattn
            has no float64), CPU or CUDA. Any number of leading batch dims,
            2-D and 3-D included, broadcast against key's and value's as
            torch broadcasts them; they are merged into one by a view, which
            copies only when a tensor's batch strides cannot merge (a batch
            that is partly broadcast, or sliced oddly).
        key: (N, ..., Hkv, S, E), query's dtype and device.
        value: (N, ..., Hkv, S, Ev); Ev may differ from E on the CPU.
        attn_mask: optional, broadcastable to (N, ..., Hq, L, S): boolean
            (True = the key takes part) or float (added to the scaled
            logits; -inf drops a key). Any float dtype is accepted (torch
            asks for query's). Read in place; dims of size 1 stay unexpanded.
        dropout_p: must be 0.0: longattn does no dropout (ValueError
            otherwise; torch would drop at random).
        is_causal: mask the keys after each query, TOP-LEFT aligned as in
            torch: query i sees keys j <= i, so with S > L the last S - L keys
            are never seen, and with L > S the rows i >= S see every key. With
            attn_mask set, torch's RuntimeError.
        scale: logit scale; default 1 / sqrt(E).
        enable_gqa: allow Hkv to divide Hq (query head h reads KV head
            h // (Hq // Hkv)), without repeating K and V. With it False,
            head counts broadcast as torch's do (Hkv = 1 or Hq, or Hq = 1),
            and other counts raise torch's RuntimeError.
        budget_ms: time budget of one submission in milliseconds (overrides
            policy.budget_ms); 0 = none. Default 200 (longattn.Policy).
        policy: a longattn.Policy: the budget and how work is split.
        report: also return the longattn.RunReport of the call:
            (out, report). Not available under torch.compile.
        progress: optional callable progress(done_rows, total_rows, report)
            called between submissions; return False to cancel
            (longattn.Cancelled). Not available under torch.compile.

    Returns:
        out (N, ..., Hq, L, Ev) of query's dtype, or (out, report).

    Differences from torch:
        - A row whose every key is masked out (a False row of a boolean mask,
          or all -inf in a float mask) gives 0, longattn's rule for a row
          that sees no key. torch 2.15's math and CPU backends give 0 there
          too (its "safe softmax", since torch 2.5), and the tests check that
          they agree; older torch releases and some fused CUDA kernels give
          NaN instead.
        - A float mask value of float32's finfo.min (about -3.4e38, what
          transformers' eager masks use for "masked") counts as -inf: its
          logit overflows to -inf in longattn's float32 math. Only a row that
          is finfo.min throughout shows it: longattn gives 0 (no key seen),
          torch the plain average of the row's values (every logit equal).
          Any other row, and any finite value down to about -1e38, agrees.
        - dropout_p > 0 and float64 inputs are refused; float masks of any
          float dtype are accepted.
        - No backward: under autograd, inputs that require grad are refused
          (longattn.Unsupported); call it under torch.no_grad().

    Raises:
        RuntimeError: torch's own checks, with torch's messages: is_causal
            with attn_mask, head counts that do not divide (enable_gqa) or
            broadcast, a mask that does not broadcast, inputs under 2-D.
        ValueError: dropout_p != 0; longattn.InvalidArgument (a ValueError)
            for what longattn's checks refuse (dtypes, head dims, devices),
            with the argument named.
        NotImplementedError: longattn.Unsupported (e.g. CUDA tensors with a
            build that has no CUDA backend, inputs that require grad).
    """
    if dropout_p != 0.0:
        raise ValueError(
            f"[{_OP}] dropout_p = {dropout_p!r}: longattn does no dropout; pass "
            "dropout_p=0.0 (apply dropout elsewhere, or use torch's function for training)"
        )
    if is_causal and attn_mask is not None:
        raise RuntimeError(  # torch's message, word for word
            "_scaled_dot_product_attention: Explicit attn_mask should not be set when "
            "is_causal=True"
        )
    out, rep = _attention(
        query,
        key,
        value,
        attn_mask,
        "top_left" if is_causal else "none",
        scale,
        enable_gqa,
        budget_ms=budget_ms,
        policy=policy,
        progress=progress,
        report=report,
    )
    return (out, rep) if report else out
