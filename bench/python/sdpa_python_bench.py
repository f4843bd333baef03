#!/usr/bin/env python3
"""longattn.torch.scaled_dot_product_attention beside
torch.nn.functional.scaled_dot_product_attention on the GPU rows of
docs/BENCHMARKS.md, both timed through the same Python loop.

    sdpa_python_bench.py [--quick]

bfloat16, B = 1, Hq = 32, Hkv = 8 (enable_gqa=True). Each call is timed
with CUDA events around the Python call (so Python and host costs count on
both sides), a host sync after each, warm-up, median of up to 30 repeats,
inputs rotated over 2 sets. torch runs with its default backend choice
(which picks flash or cuDNN; the row says which by forcing each in turn
and keeping the faster, as a user who tunes would). Causal rows are square
(Lq = Lk), where top-left (SDPA's is_causal) and bottom-right coincide;
long-cache rows (Lq < Lk) are not in this table, since torch's SDPA has no
native bottom-right causal flag there (bench/gpu/sdpa_bench.py times those
on each peer's native path). FLOPs: longattn.attention_flops, the count of
every other table.
"""
import argparse
import statistics

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import longattn
import longattn.torch as lt_torch

HQ, HKV = 32, 8
ROWS = [  # (D, L, causal)
    (64, 4096, False), (64, 4096, True), (64, 16384, False), (64, 16384, True),
    (128, 4096, False), (128, 4096, True), (128, 16384, False), (128, 16384, True),
    (256, 4096, True), (256, 16384, True),
]


def median_ms(fn, sets, reps=30):
    for i in range(3):
        fn(*sets[i % len(sets)])
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for i in range(reps):
        a.record()
        fn(*sets[i % len(sets)])
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the 4K rows only")
    args = ap.parse_args()
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, longattn "
          f"{longattn.__version__}; bf16, B 1, Hq {HQ}, Hkv {HKV}")
    print("| D | L | causal | longattn.torch ms | TFLOP/s | torch ms (backend) | TFLOP/s | ratio |")
    print("|---|---|---|---:|---:|---|---:|---:|")
    for d, L, causal in ROWS:
        if args.quick and L > 4096:
            continue
        sets = []
        for _ in range(2):
            q = torch.randn(1, HQ, L, d, device="cuda", dtype=torch.bfloat16)
            k = torch.randn(1, HKV, L, d, device="cuda", dtype=torch.bfloat16)
            sets.append((q, k, torch.randn_like(k)))
        flops = longattn.attention_flops(1, HQ, L, L, d, d, causal)
        try:
            ours = median_ms(lambda q, k, v: lt_torch.scaled_dot_product_attention(
                q, k, v, is_causal=causal, enable_gqa=True), sets)
        except longattn.Unsupported as e:  # a head dim this build did not instantiate
            print(f"| {d} | {L} | {causal} | n/a: {e} | | | | |")
            continue
        best = None
        for name, be in (("flash", SDPBackend.FLASH_ATTENTION),
                         ("cuDNN", SDPBackend.CUDNN_ATTENTION)):
            try:
                with sdpa_kernel(be):
                    ms = median_ms(lambda q, k, v: F.scaled_dot_product_attention(
                        q, k, v, is_causal=causal, enable_gqa=True), sets)
            except RuntimeError:
                continue
            if best is None or ms < best[0]:
                best = (ms, name)
        tf = flops / ours * 1e-9
        if best is None:
            print(f"| {d} | {L} | {causal} | {ours:.2f} | {tf:.0f} | n/a | | |")
            continue
        tt = flops / best[0] * 1e-9
        print(f"| {d} | {L} | {causal} | {ours:.2f} | {tf:.0f} | {best[0]:.2f} ({best[1]}) | "
              f"{tt:.0f} | {best[0] / ours:.2f}x |")
        del sets
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
