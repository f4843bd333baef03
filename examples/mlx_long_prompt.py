"""An mlx-lm-style attention layer (q/k/v/o projections, RoPE, GQA) over a
long random prompt, its attention through longattn.mlx's drop-in for
mx.fast.scaled_dot_product_attention, printing each submission's time as it
finishes.

    pip install mlx            # on a Mac (Metal); on Linux: pip install 'mlx[cpu]'
    pip install .              # longattn, from this checkout
    python examples/mlx_long_prompt.py                       # 16K tokens, 250 ms budget
    python examples/mlx_long_prompt.py --tokens 131072 --budget-ms 100
    python examples/mlx_long_prompt.py --device cpu --tokens 4096 --check
    python examples/mlx_long_prompt.py --device gpu --tokens 131072 --budget-ms 50 --check
                               # Linux, mlx[cuda13]: longattn's CUDA kernels (longattn
                               # built with CUDA), or --path ops for MLX operations

In a model, the change is one line: where mlx-lm's attention calls
mx.fast.scaled_dot_product_attention(q, k, v, scale=..., mask=...), call
longattn.mlx.scaled_dot_product_attention with the same arguments.
"""

from __future__ import annotations

import argparse
import time

import mlx.core as mx
import mlx.nn as nn

import longattn.mlx as lmx


class Attention(nn.Module):
    """The attention block of a Llama/Qwen-style model, as mlx-lm writes it,
    with longattn's drop-in in place of MLX's fused call."""

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int, rope: bool = True):
        super().__init__()
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        head_dim = dim // n_heads
        self.scale = head_dim**-0.5
        self.q_proj = nn.Linear(dim, n_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(dim, n_kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(dim, n_kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(n_heads * head_dim, dim, bias=False)
        self.rope = nn.RoPE(head_dim, traditional=False, base=1e6) if rope else None

    def qkv(self, x: mx.array):
        B, L, _ = x.shape
        q = self.q_proj(x).reshape(B, L, self.n_heads, -1).transpose(0, 2, 1, 3)
        k = self.k_proj(x).reshape(B, L, self.n_kv_heads, -1).transpose(0, 2, 1, 3)
        v = self.v_proj(x).reshape(B, L, self.n_kv_heads, -1).transpose(0, 2, 1, 3)
        if self.rope is not None:
            q, k = self.rope(q), self.rope(k)
        return q, k, v

    def __call__(self, x: mx.array, mask="causal", **options) -> mx.array:
        B, L, _ = x.shape
        q, k, v = self.qkv(x)
        out = lmx.scaled_dot_product_attention(q, k, v, scale=self.scale, mask=mask, **options)
        return self.o_proj(out.transpose(0, 2, 1, 3).reshape(B, L, -1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16")
    ap.add_argument("--budget-ms", type=float, default=lmx.DEFAULT_BUDGET_MS)
    ap.add_argument("--device", choices=["default", "cpu", "gpu"], default="default")
    ap.add_argument("--path", choices=["auto", "native", "ops"], default="auto",
                    help="native: longattn's C++ backend of the device (CPU; CUDA under "
                    "mlx[cuda13]); ops: MLX operations (what Metal runs)")
    ap.add_argument("--no-rope", action="store_true")
    ap.add_argument("--check", action="store_true",
                    help="also run MLX's fused call and print the largest difference")
    args = ap.parse_args()

    if args.device != "default":
        mx.set_default_device(mx.cpu if args.device == "cpu" else mx.gpu)
    dtype = getattr(mx, args.dtype)
    layer = Attention(args.dim, args.heads, args.kv_heads, rope=not args.no_rope)
    layer.set_dtype(dtype)
    x = mx.random.normal((1, args.tokens, args.dim)).astype(dtype)
    q, k, v = layer.qkv(x)
    mx.eval(q, k, v)
    print(f"{args.tokens} tokens, {args.heads} query heads / {args.kv_heads} KV heads of "
          f"{args.dim // args.heads}, {args.dtype}, causal, on {mx.default_device()}, "
          f"budget {args.budget_ms:g} ms")

    def progress(done, total, report):
        s = report.submissions[-1]
        print(f"  submission {len(report.submissions):4d}: {s.measured_ms:8.2f} ms "
              f"(predicted {s.predicted_ms:7.2f})  rows {done}/{total}"
              f"{'  OVER BUDGET' if s.over_budget else ''}", flush=True)

    t = time.perf_counter()
    out, report = lmx.scaled_dot_product_attention(
        q, k, v, scale=layer.scale, mask="causal", budget_ms=args.budget_ms, path=args.path,
        progress=progress, report=True)
    mx.eval(out)
    wall = time.perf_counter() - t
    worst = max((s.measured_ms for s in report.submissions), default=0.0)
    print(f"attention: {wall * 1e3:.1f} ms, {len(report.submissions)} submissions "
          f"(longest {worst:.1f} ms, {report.budget_misses} over budget, "
          f"{report.replans} re-plans), {report.total_flops / wall / 1e12:.3f} TFLOP/s; "
          f"backend {report.backend}; plan: {report.plan.reason}")

    y = layer.o_proj(out.transpose(0, 2, 1, 3).reshape(1, args.tokens, -1))
    mx.eval(y)
    print(f"layer output {tuple(y.shape)}, {y.dtype}")

    if args.check:
        t = time.perf_counter()
        theirs = mx.fast.scaled_dot_product_attention(q, k, v, scale=layer.scale, mask="causal")
        mx.eval(theirs)
        diff = mx.abs(out.astype(mx.float32) - theirs.astype(mx.float32)).max().item()
        print(f"MLX's fused call: {(time.perf_counter() - t) * 1e3:.1f} ms in one command; "
              f"largest difference {diff:.3g}")


if __name__ == "__main__":
    main()
