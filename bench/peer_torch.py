#!/usr/bin/env python3
"""The peer for bench_cpu: torch.nn.functional.scaled_dot_product_attention on
the CPU, on the same cases (read from `bench_cpu --emit-cases`), the same
inputs (bench/bench_util.hpp's generator, reimplemented bit for bit below),
the same thread count and the same FLOP count, printed as the same table.

GQA: enable_gqa=True when this torch has it (>= 2.5), so the peer reads the
8 KV heads without copies, as longattn does; otherwise K/V are expanded with
repeat_interleave before timing (said in the table header). is_causal=True
is top-left aligned in PyTorch; every case here is square (Lq = Lk), where
top-left and bottom-right coincide.

usage: peer_torch.py --cases cases.json [--threads N] [--reps N] [--warmup N]
                     [--sets N] [--filter S] [--json PATH] [--csv PATH]
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def random_values(seed, n):
    """Element i = splitmix64(seed + (i+1)*golden) -> uniform [-2, 2) (bench_util.hpp)."""
    out = np.empty(n, dtype=np.float32)
    step = 1 << 24
    with np.errstate(over="ignore"):
        for s in range(0, n, step):
            i = np.arange(s, min(n, s + step), dtype=np.uint64)
            z = np.uint64(seed) + (i + np.uint64(1)) * GOLDEN
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
            out[s:s + len(i)] = (z >> np.uint64(40)).astype(np.float32) * np.float32(4.0 / 16777216.0) - np.float32(2.0)
    return out


def random_tensor(shape, dtype, seed):
    t = torch.from_numpy(random_values(seed, int(np.prod(shape)))).reshape(shape)
    # torch's float32 -> bfloat16 conversion rounds to nearest even, as bench_util.hpp does.
    return t.to(dtype) if dtype != torch.float32 else t


def supports_gqa():
    try:
        F.scaled_dot_product_attention(torch.ones(1, 2, 1, 4), torch.ones(1, 1, 1, 4), torch.ones(1, 1, 1, 4),
                                       enable_gqa=True)
        return True
    except TypeError:
        return False


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--sets", type=int, default=3)
    ap.add_argument("--filter", default="")
    ap.add_argument("--json")
    ap.add_argument("--csv")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    has_gqa = supports_gqa()
    cases = json.load(open(a.cases))
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

    print(f"PyTorch {torch.__version__} CPU SDPA, {cpu_model()}, {torch.get_num_threads()} threads, "
          f"capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{'enable_gqa=True (no K/V copies)' if has_gqa else 'K/V expanded with repeat_interleave (GQA unsupported)'}, "
          f"median of {a.reps} (+{a.warmup} warmup), {a.sets} input sets")
    print(f"{'case':<22} {'dtype':<9} {'mask':<7} {'B,Hq,Hkv,Lq,Lk,D':<28} {'ms(median)':>10} {'ms(min)':>10} {'GFLOP/s':>9} {'cpu-ms':>10} {'GFLOP/cpu-s':>12}")
    rows = []
    with torch.inference_mode():
        for c in cases:
            if a.filter and a.filter not in c["name"]:
                continue
            dt = dtypes[c["dtype"]]
            B, Hq, Hkv, Lq, Lk, D = (c[k] for k in ("B", "Hq", "Hkv", "Lq", "Lk", "D"))
            assert not c["causal"] or Lq == Lk, "is_causal alignment differs from longattn when Lq != Lk"
            sets = []
            for s in range(a.sets):
                seed = 1000 * s
                q = random_tensor((B, Hq, Lq, D), dt, seed + 1)
                k = random_tensor((B, Hkv, Lk, D), dt, seed + 2)
                v = random_tensor((B, Hkv, Lk, D), dt, seed + 3)
                if not has_gqa and Hq != Hkv:
                    k = k.repeat_interleave(Hq // Hkv, dim=1)
                    v = v.repeat_interleave(Hq // Hkv, dim=1)
                sets.append((q, k, v))
            kw = {"is_causal": bool(c["causal"])}
            if has_gqa:
                kw["enable_gqa"] = Hq != Hkv

            def call(s):
                q, k, v = sets[s]
                c0, t0 = time.process_time(), time.perf_counter()
                o = F.scaled_dot_product_attention(q, k, v, **kw)
                return (time.perf_counter() - t0) * 1e3, o, (time.process_time() - c0) * 1e3

            checksum = None
            for w in range(max(1, a.warmup)):
                _, o, _ = call(0)
                if w == 0:
                    checksum = float(o.double().sum())
            res = [call(r % a.sets) for r in range(a.reps)]
            times = [t for t, _, _ in res]
            cpu_times = [c for _, _, c in res]
            del res
            med = statistics.median(times)
            cpu_med = statistics.median(cpu_times)
            gflops = c["flops"] / (med * 1e6)
            shape = f"{B},{Hq},{Hkv},{Lq},{Lk},{D}"
            print(f"{c['name']:<22} {c['dtype']:<9} {'causal' if c['causal'] else 'none':<7} {shape:<28} "
                  f"{med:10.1f} {min(times):10.1f} {gflops:9.1f} {cpu_med:10.1f} {c['flops'] / (cpu_med * 1e6):12.1f}", flush=True)
            rows.append(dict(c, median_ms=med, min_ms=min(times), gflops=gflops, checksum=checksum, times_ms=times,
                             cpu_ms=cpu_med, cpu_times_ms=cpu_times))
            del sets

    meta = {"implementation": f"torch {torch.__version__} sdpa", "cpu": cpu_model(), "threads": torch.get_num_threads(),
            "reps": a.reps, "enable_gqa": has_gqa, "python": sys.version.split()[0]}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(meta, results=rows), f, indent=1)
    if a.csv:
        with open(a.csv, "w") as f:
            f.write("impl,case,dtype,causal,B,Hq,Hkv,Lq,Lk,D,threads,median_ms,min_ms,gflops\n")
            for r in rows:
                f.write(f"torch,{r['name']},{r['dtype']},{int(r['causal'])},{r['B']},{r['Hq']},{r['Hkv']},{r['Lq']},"
                        f"{r['Lk']},{r['D']},{meta['threads']},{r['median_ms']},{r['min_ms']},{r['gflops']}\n")


if __name__ == "__main__":
    main()
