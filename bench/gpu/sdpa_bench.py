#!/usr/bin/env python3
"""PyTorch SDPA on the cases bench_gpu ran, the card's measured ceilings, and
one combined table (printed last, also written as Markdown).

  sdpa_bench.py --longattn bench_longattn.csv [--out table.md]

Same shapes (bfloat16, B = 1, Hq = 32, Hkv = 8), the same FLOP count (the
CSV's flops column, the library's attention_flops), CUDA-event timing,
warm-up, median, and the same two timing methods as bench_gpu.cpp (see its
header): prefill rows one call between two events with a host sync after each
(`bench`); decode rows and the copy ceiling back to back, an event pair around
each call and one sync at the end (`bench_back_to_back`), inputs rotated over
buffer sets as bench_gpu does; decode rows also by CUDA graph replay
(`bench_graph`: 20 calls captured into one graph, replays timed back to back,
median / 20).
Backends: FLASH_ATTENTION and CUDNN_ATTENTION, each forced
alone and each on its native path for the row (sdpa_ms says how; the
table's last column records which path ran); a backend that refuses a case
prints "n/a". Prefill rows rotate the same input sets as bench_gpu. Decode
takes the best of FLASH, CUDNN and EFFICIENT.
"""
import argparse
import csv
import datetime
import math
import statistics

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

HQ, HKV = 32, 8


def bench(fn, budget_ms=1500.0):
    fn()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record(); fn(); b.record(); b.synchronize()
    est = max(a.elapsed_time(b), 0.01)
    reps = max(3, min(50, int(budget_ms / est)))
    times = []
    for _ in range(reps):
        a.record(); fn(); b.record(); b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def bench_back_to_back(fn, budget_ms=1500.0):
    """Decode method: fn(i) enqueued back to back, each call between its own
    start/end events, no host sync in between, one at the end; median ms."""
    for i in range(3):
        fn(i)
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for i in range(5):
        fn(i)
    b.record()
    b.synchronize()
    est = max(a.elapsed_time(b) / 5, 1e-3)
    reps = max(20, min(400, int(budget_ms / est)))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for i in range(reps):
        starts[i].record()
        fn(i)
        ends[i].record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends))


def bench_graph(fn, calls=20, reps=30):
    """Graph method (bench_gpu.cpp's header): `calls` calls of fn(i) captured
    into one CUDA graph, replayed back to back with an event pair around each
    replay; median replay ms / calls."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for i in range(3):
            fn(i)
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(calls):
            fn(i)
    g.replay()
    g.replay()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for i in range(reps):
        starts[i].record()
        g.replay()
        ends[i].record()
    torch.cuda.synchronize()
    return statistics.median(s_.elapsed_time(e) / calls for s_, e in zip(starts, ends))


def input_sets(lq, lk, d):
    """Buffer sets rotated call by call, as bench_gpu does for longattn
    (up to 4, about 256 MB in all), so neither side runs L2-warm."""
    set_bytes = 2 * (2 * HQ * lq * d + 2 * HKV * lk * d)
    n = max(1, min(4, math.ceil(256e6 / set_bytes)))
    return [(torch.randn(1, HQ, lq, d, device="cuda", dtype=torch.bfloat16),
             torch.randn(1, HKV, lk, d, device="cuda", dtype=torch.bfloat16),
             torch.randn(1, HKV, lk, d, device="cuda", dtype=torch.bfloat16)) for _ in range(n)]


def rotating(call, sets):
    """A no-argument fn for bench() that takes the next input set each call."""
    i = [0]

    def fn():
        q, k, v = sets[i[0] % len(sets)]
        i[0] += 1
        return call(q, k, v)
    return fn


def expand(k):
    return k.repeat_interleave(HQ // HKV, dim=1)


def sdpa_ms(backend, d, lq, lk, causal):
    """One SDPA backend on its native path for this row; returns (ms, how).

    Square rows pass is_causal (top-left and bottom-right coincide). Causal
    rows with Lq < Lk need bottom-right alignment, which PyTorch offers as
    causal_lower_right: the FlashAttention backend runs it natively, but under
    the cuDNN backend alone PyTorch builds a dense [Lq, Lk] mask in every call
    (measured on an H200: 266-317 TFLOP/s where cuDNN's fused causal kernel
    does 590-657). So the cuDNN column runs cuDNN natively the way longattn
    splits the same row: full attention over the first Lk - Lq keys, causal
    over the last Lq keys (a square), each with its LSE, merged by the
    online-softmax rule; the merge is timed too. GQA is passed natively
    (enable_gqa); a backend that refuses it gets K/V expanded once, outside
    the timing, and the row says so."""
    sets = input_sets(lq, lk, d)
    if backend == SDPBackend.CUDNN_ATTENTION and causal and lq < lk:
        return cudnn_split_ms(sets, lq, lk)
    kwargs = {}
    if causal and lq == lk:
        kwargs["is_causal"] = True
    elif causal:
        from torch.nn.attention.bias import causal_lower_right
        kwargs["attn_mask"] = causal_lower_right(lq, lk)
    how = "native (bottom-right via causal_lower_right)" if "attn_mask" in kwargs else "native"
    try:
        with sdpa_kernel([backend]):
            return bench(rotating(lambda q, k, v: F.scaled_dot_product_attention(
                q, k, v, enable_gqa=True, **kwargs), sets)), how
    except Exception as e:
        first = str(e).splitlines()[0][:100] if str(e) else type(e).__name__
        print(f"  {backend.name} d{d} q{lq} k{lk} causal={causal}: GQA refused ({first}); K/V expanded")
    try:
        wide = [(q, expand(k), expand(v)) for q, k, v in sets]
        with sdpa_kernel([backend]):
            return bench(rotating(lambda q, k, v: F.scaled_dot_product_attention(
                q, k, v, **kwargs), wide)), how + ", K/V expanded"
    except Exception as e:
        print(f"  {backend.name} d{d} q{lq} k{lk} causal={causal}: n/a ({str(e).splitlines()[0][:100]})")
        return None, "n/a"


def cudnn_with_lse(q, k, v, causal):
    """cuDNN's fused attention returning (O, LSE) (PyTorch's private op: the
    public SDPA call returns no LSE)."""
    out = torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, None, True, 0.0, causal, False)
    return out[0], out[1]


def cudnn_split_ms(sets, lq, lk):
    head = [(q, k[:, :, :lk - lq].contiguous(), v[:, :, :lk - lq].contiguous(),
             k[:, :, lk - lq:].contiguous(), v[:, :, lk - lq:].contiguous()) for q, k, v in sets]

    def merged(q, kp, vp, kt, vt):
        o1, l1 = cudnn_with_lse(q, kp, vp, False)
        o2, l2 = cudnn_with_lse(q, kt, vt, True)
        l1 = l1.reshape(o1.shape[:-1]).float()
        l2 = l2.reshape(o2.shape[:-1]).float()
        m = torch.maximum(l1, l2)
        w1, w2 = torch.exp(l1 - m), torch.exp(l2 - m)
        return ((o1 * (w1 / (w1 + w2)).unsqueeze(-1).to(o1.dtype)) +
                (o2 * (w2 / (w1 + w2)).unsqueeze(-1).to(o2.dtype)))

    def run(parts, how):
        i = [0]

        def fn():
            p = parts[i[0] % len(parts)]
            i[0] += 1
            return merged(*p)
        return bench(fn), how

    how = "native: full over Lk-Lq keys + causal square, LSE merge (timed)"
    try:
        return run(head, how)
    except Exception as e:
        print(f"  cuDNN split q{lq} k{lk}: GQA refused ({str(e).splitlines()[0][:100]}); K/V expanded")
    try:
        wide = [(q, expand(kp), expand(vp), expand(kt), expand(vt)) for q, kp, vp, kt, vt in head]
        return run(wide, how + ", K/V expanded")
    except Exception as e:
        print(f"  cuDNN split q{lq} k{lk}: n/a ({str(e).splitlines()[0][:100]})")
        return None, "n/a"


def decode_ms(lk, d=128):
    # Buffer sets as bench_gpu rotates them: up to 4, ~256 MB in all.
    set_bytes = 2 * (2 * HQ * d + 2 * HKV * lk * d)
    sets = max(1, min(4, math.ceil(256e6 / set_bytes)))
    qs = [torch.randn(1, HQ, 1, d, device="cuda", dtype=torch.bfloat16) for _ in range(sets)]
    ks = [torch.randn(1, HKV, lk, d, device="cuda", dtype=torch.bfloat16) for _ in range(sets)]
    vs = [torch.randn(1, HKV, lk, d, device="cuda", dtype=torch.bfloat16) for _ in range(sets)]
    best, best_graph = None, None
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION):
        fn = lambda i: F.scaled_dot_product_attention(qs[i % sets], ks[i % sets], vs[i % sets],
                                                      enable_gqa=True)
        try:
            with sdpa_kernel([backend]):
                t = bench_back_to_back(fn)
            best = t if best is None else min(best, t)
        except Exception:
            continue
        try:
            with sdpa_kernel([backend]):
                t = bench_graph(fn)
            best_graph = t if best_graph is None else min(best_graph, t)
        except Exception as e:
            print(f"  decode k{lk} {backend.name}: graph capture failed ({str(e).splitlines()[0][:100]})")
    del qs, ks, vs
    return best, best_graph


def ceilings():
    n = 1 << 30
    x = torch.empty(n, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    x.random_(0, 255)
    copy = bench_back_to_back(lambda i: y.copy_(x))
    copy_gbs = 2 * n / copy * 1e-6
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    mm = bench(lambda: a @ b)
    mm_tflops = 2 * 8192 ** 3 / mm * 1e-9
    del x, y, a, b
    return copy_gbs, mm_tflops


def fmt(x, spec="{:.0f}"):
    return "n/a" if x is None else spec.format(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--longattn", required=True)
    ap.add_argument("--out")
    args = ap.parse_args()
    rows = list(csv.DictReader(open(args.longattn)))
    name = torch.cuda.get_device_name(0)
    copy_gbs, mm_tflops = ceilings()
    print(f"ceilings on {name}: copy {copy_gbs:.0f} GB/s (read + write), bf16 matmul 8192^3 {mm_tflops:.0f} TFLOP/s")

    lines = []
    lines.append(f"card: {name}; date: {datetime.date.today()}; torch {torch.__version__}; "
                 f"ceilings: bf16 matmul {mm_tflops:.0f} TFLOP/s, copy {copy_gbs:.0f} GB/s")
    lines.append("")
    lines.append("| case | longattn ms | longattn TFLOP/s | FA2 TFLOP/s | cuDNN TFLOP/s | vs FA2 | vs cuDNN | budget 50 ms: total ms, subs, worst after 1st, overhead | peer paths |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    dec = []
    for r in rows:
        d, lq, lk, causal = int(r["D"]), int(r["Lq"]), int(r["Lk"]), r["causal"] == "1"
        ms = float(r["ms"])
        if r["group"] == "decode":
            t, tgr = decode_ms(lk, d)
            kv_bytes = 2 * HKV * lk * d * 2
            gms = float(r.get("graph_ms") or 0) or None
            dec.append((lk, ms, float(r["gbps"]), t, None if t is None else kv_bytes / t * 1e-6,
                        gms, None if gms is None else kv_bytes / gms * 1e-6,
                        tgr, None if tgr is None else kv_bytes / tgr * 1e-6))
            continue
        flops = float(r["flops"])
        if r["group"] == "f32":  # float32 path of longattn; SDPA's fused kernels take 16-bit only
            lines.append(f"| f32 d{d} q{lq} k{lk} {'causal' if causal else 'full'} (float32 path) | {ms:.2f} | "
                         f"{flops / ms * 1e-9:.1f} | n/a | n/a | | | | |")
            continue
        fa, fa_how = sdpa_ms(SDPBackend.FLASH_ATTENTION, d, lq, lk, causal)
        cu, cu_how = sdpa_ms(SDPBackend.CUDNN_ATTENTION, d, lq, lk, causal)
        torch.cuda.empty_cache()
        tf = flops / ms * 1e-9
        tfa = None if fa is None else flops / fa * 1e-9
        tcu = None if cu is None else flops / cu * 1e-9
        budget = ""
        if float(r["budget_ms"]) > 0:
            budget = (f"{float(r['budget_total_ms']):.1f} ms, {r['submissions']}, "
                      f"{float(r['worst_after_first_ms']):.1f} ms, {float(r['overhead_pct']):+.1f}%")
        label = f"{r['group']} d{d} q{lq} k{lk} {'causal' if causal else 'full'}"
        lines.append(f"| {label} | {ms:.2f} | {tf:.0f} | {fmt(tfa)} | {fmt(tcu)} | "
                     f"{fmt(None if tfa is None else tf / tfa, '{:.2f}x')} | "
                     f"{fmt(None if tcu is None else tf / tcu, '{:.2f}x')} | {budget} | "
                     f"FA2: {fa_how}; cuDNN: {cu_how} |")
        print(lines[-1], flush=True)
    if dec:
        lines.append("")
        lines.append(f"Decode (Lq = 1, Hq = 32, Hkv = 8, D = 128, bf16): K + V bytes read once over the "
                     f"call's time, as a share of the copy ceiling {copy_gbs:.0f} GB/s (torch copy_, back to "
                     f"back). Both libraries by both methods: back to back (event pair around each call, "
                     f"one sync at the end, median) and CUDA graph replay (20 calls a graph, median / 20).")
        lines.append("")
        lines.append("| Lk | longattn us (b2b) | % of copy | longattn us (graph) | % of copy | "
                     "best torch us (b2b) | % of copy | best torch us (graph) | % of copy |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        pct = lambda g: fmt(None if g is None else 100 * g / copy_gbs, '{:.0f}%')
        us = lambda t: fmt(None if t is None else t * 1e3, '{:.1f}')
        for lk, ms, gbps, t, tg, gms, gg, tgr, tgg in dec:
            lines.append(f"| {lk} | {ms * 1e3:.1f} | {pct(gbps)} | {us(gms)} | {pct(gg)} | "
                         f"{us(t)} | {pct(tg)} | {us(tgr)} | {pct(tgg)} |")
    text = "\n".join(lines)
    if args.out:
        open(args.out, "w").write(text + "\n")
    print("\n" + text)


if __name__ == "__main__":
    main()
