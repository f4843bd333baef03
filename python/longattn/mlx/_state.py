"""The math of the operations path in MLX operations: the float32 attention
state (m, l, o) of DESIGN.md with its merge and finalize, the partial state
of one rectangle of queries x keys, and the single pass through MLX's own
fused kernel.

Everything here only builds MLX graphs; nothing is evaluated (the executor
decides when, _executor.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import mlx.core as mx

F32 = mx.float32
NEG_INF = float("-inf")
# The dtypes longattn computes in, by the names the device profile's rate
# keys use.
DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
DTYPE_NAMES = {t: name for name, t in DTYPES.items()}


def _from_zero(m: mx.array) -> mx.array:
    """m with -inf replaced by 0: the point exponents are taken from. A row
    with no visible key yet has m = -inf, and exp(s - m) would be
    exp(-inf - (-inf)) = NaN; measured from 0 it is exp(-inf) = 0."""
    return mx.where(m == NEG_INF, 0.0, m)


@dataclass
class State:
    """The float32 attention state of some query rows over the keys seen so
    far, for every (batch, head):

    m [B, Hq, n]: the largest logit, -inf while no key was visible;
    l [B, Hq, n]: sum of exp(s - m);
    o [B, Hq, n, Dv]: sum of exp(s - m) * v, not normalized.

    merge() is the online-softmax rule (associative; empty() is its
    identity); finalize() gives O = o / l and the natural-log LSE = m + log l.
    """

    m: mx.array
    l: mx.array
    o: mx.array

    @staticmethod
    def empty(B: int, H: int, n: int, dv: int) -> "State":
        """No key: merging with it changes nothing."""
        return State(
            mx.full((B, H, n), NEG_INF, dtype=F32),
            mx.zeros((B, H, n), dtype=F32),
            mx.zeros((B, H, n, dv), dtype=F32),
        )

    @staticmethod
    def sink(sinks: mx.array, B: int, n: int, dv: int) -> "State":
        """The sink logit alone (float32 sinks [Hq]): m = sink, one term
        exp(sink - m) = 1 in the denominator, nothing in o. A query group's
        state starts from it once, so the sink counts once however the keys
        are split."""
        H = sinks.shape[0]
        return State(
            mx.broadcast_to(sinks[None, :, None], (B, H, n)),
            mx.ones((B, H, n), dtype=F32),
            mx.zeros((B, H, n, dv), dtype=F32),
        )

    def merge(self, other: "State") -> "State":
        m = mx.maximum(self.m, other.m)
        base = _from_zero(m)
        a = mx.exp(self.m - base)
        b = mx.exp(other.m - base)
        return State(m, self.l * a + other.l * b, self.o * a[..., None] + other.o * b[..., None])

    def finalize(self, dtype: mx.Dtype):
        """(O [B, Hq, n, Dv] in `dtype`, LSE [B, Hq, n] float32). A row that
        saw no key (l = 0) gives O = 0 and LSE = -inf, never NaN."""
        seen = self.l > 0
        l = mx.where(seen, self.l, 1.0)
        o = mx.where(seen[..., None], self.o / l[..., None], 0.0)
        lse = mx.where(seen, self.m + mx.log(l), NEG_INF)
        return o.astype(dtype), lse

    def arrays(self):
        return (self.m, self.l, self.o)


@dataclass
class Call:
    """One call's inputs as the operations path reads them: checked by the
    public function (_sdpa.py) and evaluated before the first submission."""

    q: mx.array  # [B, Hq, Lq, D]
    k: mx.array  # [B, Hkv, Lk, D]
    v: mx.array  # [B, Hkv, Lk, Dv]
    # As given to the public function (MLX's dtype rules already checked):
    # None, "causal" (bottom-right) or an array of at most 4 dims,
    # boolean (True = keep) or additive, broadcastable to [B, Hq, Lq, Lk].
    mask: Union[None, str, mx.array]
    sinks: Optional[mx.array]  # [Hq], a dtype that promotes to q's
    scale: float

    def __post_init__(self):
        self.B, self.Hq, self.Lq, self.D = self.q.shape
        self.Hkv, self.Lk, self.Dv = self.k.shape[1], self.k.shape[2], self.v.shape[3]
        self.group = self.Hq // max(self.Hkv, 1)  # the planner refuses Hkv = 0 by name
        self.causal = isinstance(self.mask, str)
        # The mask array as 4-D (leading size-1 dims, as broadcasting reads it).
        self.mask4 = None
        if isinstance(self.mask, mx.array):
            self.mask4 = self.mask.reshape((1,) * (4 - self.mask.ndim) + tuple(self.mask.shape))
        self.sinks32 = None if self.sinks is None else self.sinks.astype(F32)
        # Bottom-right causal: query i sees keys j <= i + offset.
        self.offset = self.Lk - self.Lq

    def visible_pairs(self, q0: int, q1: int, k0: int, k1: int) -> int:
        """(query, key) pairs of the rectangle the causal rule shows (all of
        them without it; a mask array's are not counted)."""
        if not self.causal:
            return (q1 - q0) * (k1 - k0)
        # Row i sees min(max(i + offset + 1 - k0, 0), w) keys of the rectangle:
        # the sum over x = i + offset + 1 - k0 of a ramp that stops at w.
        w = k1 - k0

        def ramp_sum(t):  # sum of min(x, w) over x = 0 .. t - 1
            t = max(t, 0)
            return t * (t - 1) // 2 if t <= w else w * (w - 1) // 2 + (t - w) * w

        a = self.offset + 1 - k0
        return ramp_sum(q1 + a) - ramp_sum(q0 + a)

    def flops(self, q0: int, q1: int, k0: int, k1: int) -> float:
        """The two products' FLOPs, as longattn counts them (attention_flops)."""
        return 2.0 * self.B * self.Hq * (self.D + self.Dv) * self.visible_pairs(q0, q1, k0, k1)


def _mask_block(mask4: mx.array, q0: int, q1: int, k0: int, k1: int) -> mx.array:
    """The rectangle's part of a 4-D mask; a broadcast (size-1) dim stays whole."""
    rows = slice(None) if mask4.shape[2] == 1 else slice(q0, q1)
    cols = slice(None) if mask4.shape[3] == 1 else slice(k0, k1)
    return mask4[:, :, rows, cols]


def rect_state(c: Call, q0: int, q1: int, k0: int, k1: int) -> Optional[State]:
    """The partial state of queries [q0, q1) over keys [k0, k1), every
    (batch, head); None when the causal rule hides the whole rectangle.

    Scores, exponentials and both products run in float32 whatever the
    inputs' dtype (the running state's precision; a logit rounded to bfloat16
    is off by up to 0.4%, and exp() turns that into the weight's error).
    """
    n, w = q1 - q0, k1 - k0
    if c.causal and k0 > q1 - 1 + c.offset:
        return None
    B, Hkv, G = c.B, c.Hkv, c.group
    # GQA: the G query heads of one KV head are rows of one product with its
    # keys (query head h reads KV head h // G), so K and V are read once per
    # KV head and never repeated.
    q = (c.q[:, :, q0:q1].astype(F32) * c.scale).reshape(B, Hkv, G * n, c.D)
    k = c.k[:, :, k0:k1].astype(F32)
    s = (q @ k.swapaxes(-1, -2)).reshape(B, c.Hq, n, w)
    keep = None
    if c.causal and k1 - 1 > q0 + c.offset:  # some key right of row q0's diagonal
        keep = mx.arange(k0, k1)[None, :] <= mx.arange(q0, q1)[:, None] + c.offset
    if c.mask4 is not None:
        block = _mask_block(c.mask4, q0, q1, k0, k1)
        if block.dtype == mx.bool_:
            keep = block if keep is None else mx.logical_and(keep, block)
        else:
            s = s + block.astype(F32)
    if keep is not None:
        s = mx.where(keep, s, NEG_INF)
    m = s.max(axis=-1)
    p = mx.exp(s - _from_zero(m)[..., None])
    v = c.v[:, :, k0:k1].astype(F32)
    o = (p.reshape(B, Hkv, G * n, w) @ v).reshape(B, c.Hq, n, c.Dv)
    return State(m, p.sum(axis=-1), o)


def initial_state(c: Call, n: int) -> State:
    """A query group's state before its first key: the sinks, or empty."""
    if c.sinks32 is not None:
        return State.sink(c.sinks32, c.B, n, c.Dv)
    return State.empty(c.B, c.Hq, n, c.Dv)


def rows_with_keys(c: Call) -> Optional[mx.array]:
    """Which query rows see at least one key, broadcastable to [B, Hq, Lq]
    (a dim is 1 where the mask does not vary along it); None when all do."""
    seen = None
    if c.causal and c.Lq > c.Lk:
        seen = mx.arange(c.Lq) >= c.Lq - c.Lk
    elif c.mask4 is not None:
        m = c.mask4
        keep = m if m.dtype == mx.bool_ else m > NEG_INF
        seen = keep.any(axis=-1)
    elif c.Lk == 0:
        seen = mx.zeros((c.Lq,), dtype=mx.bool_)
    return seen


def fused(c: Call, stream) -> mx.array:
    """The whole call as one mx.fast.scaled_dot_product_attention (the
    single-pass route), with rows that see no key set to 0: MLX leaves them
    at the mean of V (boolean masks) or NaN (additive -inf), where longattn
    gives 0 everywhere."""
    out = mx.fast.scaled_dot_product_attention(
        c.q, c.k, c.v, scale=c.scale, mask=c.mask, sinks=c.sinks, stream=stream
    )
    seen = rows_with_keys(c)
    if seen is not None:
        out = mx.where(seen[..., None], out, 0.0)
    return out
