#!/usr/bin/env python3
"""longattn.mlx's drop-in against mx.fast.scaled_dot_product_attention on
one MLX device, in the same run: each path's total time, its submissions
(count, slowest after the first), budget misses, and the largest difference
from MLX's fused result.

    mlx_sdpa_bench.py [--budget-ms 50] [--device gpu] [--paths native,ops] [--reps 3]

Shapes: bfloat16, 32 query heads over 8 KV heads of 128, causal (MLX's
bottom-right alignment): 16K x 16K, a 2K-query chunk over 128K keys, 128K x
128K. Every path runs once untimed (MLX compiles its kernels on first use;
longattn measures a fresh rate with a probe), then --reps times; the median
is printed. MLX's fused call is one command over the whole problem (no
budget). The "native" path is longattn's C++ backend of the device (the CUDA
kernels on MLX's CUDA backend, the CPU backend on MLX's CPU), "ops" the
chunked algorithm as MLX operations (what Metal runs). Exits 1 when a
submission after a call's first is over budget or a result differs from
MLX's by more than the bfloat16 tolerance of tests/python (relative to the
largest |value|: 1.6e-2).
"""
import argparse
import statistics
import sys
import time

import mlx.core as mx

import longattn.mlx as lmx

BF16_TOLERANCE = 1.6e-2
SHAPES = [(16384, 16384), (2048, 131072), (131072, 131072)]


def timed(fn):
    t = time.perf_counter()
    r = fn()
    mx.eval(r[0] if isinstance(r, tuple) else r)
    return (time.perf_counter() - t) * 1e3, r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget-ms", type=float, default=50.0)
    ap.add_argument("--device", choices=["cpu", "gpu"], default="gpu")
    ap.add_argument("--paths", default="native,ops")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-keys", type=int, default=131072)
    args = ap.parse_args()
    mx.set_default_device(mx.gpu if args.device == "gpu" else mx.cpu)
    print(f"MLX {mx.__version__} on {mx.default_device()} "
          f"({mx.device_info().get('device_name', '?')}); budget {args.budget_ms:g} ms; "
          f"bf16, Hq 32 / Hkv 8, D 128, causal; median of {args.reps}")
    print(f"| Lq x Lk | path | total ms | speed (fused ms / ms) | submissions | slowest after first ms "
          f"| over budget | max diff |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    failed = False
    for lq, lk in SHAPES:
        if lk > args.max_keys:
            continue
        mx.random.seed(0)
        q = mx.random.normal((1, 32, lq, 128)).astype(mx.bfloat16)
        k = mx.random.normal((1, 8, lk, 128)).astype(mx.bfloat16)
        v = mx.random.normal((1, 8, lk, 128)).astype(mx.bfloat16)
        mx.eval(q, k, v)
        scale = 128**-0.5

        def fused():
            return mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask="causal")

        timed(fused)
        times = []
        for _ in range(args.reps):
            ref = None  # the last run's result is the reference; earlier ones are freed
            t, ref = timed(fused)
            times.append(t)
        fused_ms = statistics.median(times)
        print(f"| {lq} x {lk} | MLX fused | {fused_ms:.1f} | 1.00 | 1 | - | - | - |", flush=True)
        peak = mx.abs(ref.astype(mx.float32)).max().item()
        for path in args.paths.split(","):
            def ours():
                return lmx.scaled_dot_product_attention(
                    q, k, v, scale=scale, mask="causal", budget_ms=args.budget_ms, path=path,
                    report=True)

            # Only the last result is kept, as for the fused call: a layer's
            # attention output is freed after its projection, so MLX's
            # allocator reuses the buffer (keeping every result alive made
            # each run allocate, and fault in, fresh managed memory).
            times = []
            for _ in range(args.reps + 1):
                out = rep = None
                t, (out, rep) = timed(ours)
                times.append(t)
            ms = statistics.median(times[1:])
            after = max((s.measured_ms for s in rep.submissions[1:]), default=0.0)
            over = sum(s.measured_ms > args.budget_ms for s in rep.submissions[1:])
            diff = mx.abs(out.astype(mx.float32) - ref.astype(mx.float32)).max().item() / peak
            kernels = sorted({x for s in rep.submissions for x in s.kernels})
            print(f"| {lq} x {lk} | {path} ({', '.join(kernels)}) | {ms:.1f} | "
                  f"{fused_ms / ms:.2f} | {len(rep.submissions)} | {after:.1f} | {over} | "
                  f"{diff:.2g} |", flush=True)
            failed |= over > 0 or diff > BF16_TOLERANCE
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
