"""Hugging Face transformers: attn_implementation="longattn".

    import longattn.integrations.transformers
    longattn.integrations.transformers.register(budget_ms=50)
    model = AutoModelForCausalLM.from_pretrained(name, attn_implementation="longattn")

register() adds two entries under the same name, because transformers
builds the mask for the attention function it will call:

- AttentionInterface["longattn"] = a function with the signature of
  transformers' sdpa_attention_forward, computed by longattn;
- AttentionMaskInterface["longattn"] = transformers' own sdpa_mask, so the
  model builds exactly the masks it builds for "sdpa": None where a plain
  causal mask (or none) is all there is, else a boolean
  [B, 1, Lq, Lk] mask (True = attend) that already holds padding, sliding
  windows, chunked attention and packed sequences. Without a mask entry
  transformers would build no mask at all for an unknown implementation,
  and padding would be ignored.

What the attention function does with what the model passes (the same as
"sdpa" does, from transformers' integrations/sdpa_attention.py):

- the mask: passed to longattn as it is (read in place, broadcast over
  heads). When it is None, the call is causal exactly where sdpa's is
  (more than one query and the module is causal), top-left aligned as
  sdpa's is_causal: transformers only leaves the mask out where that
  alignment is right (Lq = Lk, or a prefill into an empty static cache).
  With one query and no mask, the query sees every key (decode).
- GQA/MQA: K and V are passed with their own head count, never repeated.
- module.scaling (the `scaling` argument) is the logit scale.
- sinks: a model with attention sinks passes them as `s_aux` (gpt-oss): one
  logit per head in the softmax denominator, which is longattn's `sinks`.
- sliding windows: with a mask, the mask holds the window (transformers'
  sdpa_mask puts it there wherever it can hide a key) and it is honoured
  as it is. With no mask (a mask builder that leaves it out, or a direct
  call), `sliding_window` = W becomes longattn's window on the diagonal of
  the call's alignment, as transformers' masks define W: a causal layer's
  query sees W keys, itself and the W - 1 before it (window (W - 1, None),
  kv_idx > q_idx - W in masking_utils), and a bidirectional layer's
  (module.is_causal False) every key within distance W on either side
  (window (W, W), |q_idx - kv_idx| <= W).
- position_bias (an additive bias some models pass): folded into a float
  mask with transformers' own helper, as sdpa does.
- a query that sees no key (a left-padding position) gives 0, as sdpa does
  with transformers' boolean masks (with position_bias, whose float mask
  uses finfo.min, sdpa gives such rows the average of the values instead:
  see longattn.torch's notes on finfo.min); no later position reads them.
- softcap (Gemma 2's attn_logit_softcapping): logits become
  softcap * tanh(logit / softcap) before the mask, as the eager path does.
- refused: dropout > 0 (training with attention dropout); output_attentions
  gives None weights with a warning, as sdpa.

Returns (attn_output [B, Lq, Hq, Dv] contiguous, None), the output written
in that layout directly (no transpose copy). Like every longattn call there
is no backward: run the model under torch.no_grad() (generate() does).
Under torch.compile the call goes through the op torch.ops.longattn.attention
(longattn.torch).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Optional, Tuple

from .._api import Policy
from .._report import RunReport

NAME = "longattn"

__all__ = ["register", "attention_forward", "NAME"]


_longattn_torch: Any = None


def _torch() -> Any:
    """longattn.torch, imported on first use: it imports torch and registers
    the op, which transformers' users have by the time a model runs."""
    global _longattn_torch
    if _longattn_torch is None:
        from .. import torch as longattn_torch

        _longattn_torch = longattn_torch
    return _longattn_torch


def attention_forward(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: Optional[float] = None,
    is_causal: Optional[bool] = None,
    sliding_window: Optional[int] = None,
    s_aux: Any = None,
    position_bias: Any = None,
    *,
    budget_ms: Optional[float] = None,
    policy: Optional[Policy] = None,
    on_report: Optional[Callable[[RunReport], Any]] = None,
    **kwargs: Any,
) -> Tuple[Any, None]:
    """transformers' attention function for attn_implementation="longattn"
    (what register() installs; see the module's docstring for each rule).

    Args:
        module: the attention layer (its is_causal is read when is_causal is
            None, as sdpa does).
        query: [B, Hq, Lq, D].
        key: [B, Hkv, Lk, D], Hkv dividing Hq (not repeated).
        value: [B, Hkv, Lk, Dv].
        attention_mask: None, or a boolean (True = attend) or additive float
            mask broadcastable to [B, Hq, Lq, Lk].
        dropout: must be 0 (longattn does no dropout).
        scaling: the logit scale (module.scaling); None = 1/sqrt(D).
        is_causal: overrides module.is_causal.
        sliding_window: the layer's window W, if any: the mask holds it
            when there is one; without one, a causal layer's query sees the
            W keys up to itself, a bidirectional layer's those within W of
            it (see the module's docstring).
        s_aux: attention sinks, one logit per query head (gpt-oss).
        position_bias: an additive bias [B or 1, Hq or 1, Lq, Lk].
        budget_ms: time budget of one submission (register() sets it).
        policy: a longattn.Policy (register() sets it).
        on_report: called with the call's longattn.RunReport after it ran
            (register() sets it); not under torch.compile.
        kwargs: the rest of what models pass; `softcap` (a logit cap,
            None or 0 for none) caps the logits, `output_attentions` warns;
            others are ignored, as by sdpa.

    Returns:
        (attn_output [B, Lq, Hq, Dv], None).
    """
    op = "longattn.integrations.transformers"
    softcap = kwargs.get("softcap") or 0.0
    if dropout:
        raise ValueError(
            f"[{op}] dropout = {dropout!r}: longattn does no dropout (training with "
            "attention dropout); use another attn_implementation, or set attention_dropout = 0"
        )
    if kwargs.get("output_attentions", False):
        warnings.warn(
            f"[{op}] longattn does not return attention weights (output_attentions=True); "
            "they are None",
            stacklevel=2,
        )
    lt = _longattn_torch or _torch()
    q_len = query.shape[-2]
    if is_causal is None:
        is_causal = getattr(module, "is_causal", True)
    # sdpa's rule: causal (top-left) only for several queries and no mask.
    causal = bool(is_causal) and q_len > 1 and attention_mask is None
    window = None
    if sliding_window is not None and attention_mask is None:
        # A mask, when there is one, already holds the window in the model's
        # absolute positions (and position_bias below is folded into the
        # mask only after this). Without one the window lies on the diagonal
        # of the call's alignment: top-left when causal, else the queries
        # are the last Lq positions (a decode step), both of which
        # transformers' positions agree with when it leaves the mask out.
        w = sliding_window
        window = (w - 1, None) if is_causal else (w, w)
    if position_bias is not None:
        from transformers.integrations.sdpa_attention import create_position_bias_mask

        # The bias mask holds causal (top-left) when it is; causal stays set,
        # hiding nothing more, so that a window keeps its diagonal.
        attention_mask = create_position_bias_mask(
            position_bias, attention_mask, causal, query, key
        )
    sinks = None
    if s_aux is not None:
        sinks = s_aux.detach().float()  # longattn's sinks are float32 [Hq]
    out, rep = lt._attention(
        query,
        key,
        value,
        attention_mask,
        "top_left" if causal else "none",
        scaling,
        True,  # GQA: Hkv divides Hq, K and V not repeated
        sinks=sinks,
        out_bshd=True,
        window=window,
        softcap=float(softcap),
        budget_ms=budget_ms,
        policy=policy,
        report=on_report is not None,
    )
    if on_report is not None:
        on_report(rep)
    return out, None


def register(
    name: str = NAME,
    *,
    budget_ms: Optional[float] = None,
    policy: Optional[Policy] = None,
    on_report: Optional[Callable[[RunReport], Any]] = None,
) -> str:
    """Makes attn_implementation=name (default "longattn") available to every
    transformers model in this process: its attention function and its mask
    builder (transformers' sdpa_mask). Call it before loading a model; calling
    it again replaces the entry (e.g. with another budget).

    Args:
        name: the attn_implementation name to register.
        budget_ms: time budget of one submission for every attention call of
            models using this name; None = the policy's (default 200 ms).
        policy: a longattn.Policy for those calls.
        on_report: optional callable, given each attention call's
            longattn.RunReport (its submissions, measured and predicted ms)
            once the call has run, e.g. list.append to collect them. Not
            available under torch.compile (a report cannot be traced).

    Returns:
        name, e.g. for from_pretrained(..., attn_implementation=register()).

    Raises:
        ImportError: transformers (or torch) is not installed.
    """
    op = "longattn.integrations.transformers.register"
    if policy is not None and not isinstance(policy, Policy):
        raise TypeError(f"[{op}] policy = {policy!r} must be a longattn.Policy or None")
    if on_report is not None and not callable(on_report):
        raise TypeError(f"[{op}] on_report = {on_report!r} must be callable or None")
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    _torch()  # registers the op now, not inside a model's first traced call

    def longattn_attention(*args: Any, **kwargs: Any) -> Tuple[Any, None]:
        return attention_forward(
            *args, budget_ms=budget_ms, policy=policy, on_report=on_report, **kwargs
        )

    longattn_attention.__doc__ = attention_forward.__doc__
    AttentionInterface.register(name, longattn_attention)
    AttentionMaskInterface.register(name, sdpa_mask)
    return name
