#!/usr/bin/env python3
"""What a call costs from Python over the same call from C++.

    call_overhead.py --bench-call build/bench/bench_call [--device cpu|cuda|all]

For each device: bench_call (C++, bench/bench_call.cpp) times the host side
of `calls` back-to-back longattn::attention calls on one problem; this
script then makes the same calls through the Python package on the same
shape, dtype and options (causal, preallocated output), from NumPy and from
PyTorch tensors, and through longattn.torch's SDPA drop-in where it exists.
Each figure is the median over batches of (host time of the batch / calls),
after a warm-up batch; on CUDA the stream is drained after each batch,
outside the timing, so the figure is what the caller's thread pays a call.
C++ and Python measurements alternate for ROUNDS rounds, so that a machine
whose speed drifts (other work on it) drifts both sides alike; the overhead
is the median over rounds of (Python - C++) of the same round.

Shapes: on CUDA a decode step (B 1, Hq 32, Hkv 8, Lq 1, Lk 4096, D 128,
bf16), where an untimed call only enqueues; on the CPU the same decode step
over 256 keys and a tiny one (Hq 8, Hkv 2, 16 keys, D 64), on one thread,
so that the work (which both sides pay) stays small beside the overhead.
The SDPA drop-in row (CUDA only) allocates its output, as
F.scaled_dot_product_attention does.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np

import longattn

CALLS, BATCHES, ROUNDS = 100, 7, 7
SHAPES = {
    "cpu": [dict(b=1, hq=32, hkv=8, lq=1, lk=256, d=128, threads=1),
            dict(b=1, hq=8, hkv=2, lq=1, lk=16, d=64, threads=1)],
    "cuda": [dict(b=1, hq=32, hkv=8, lq=1, lk=4096, d=128, threads=0)],
}


def cpp_us(bench_call, device, s):
    cmd = [bench_call, "--device", device, "--json", "--calls", str(CALLS), "--batches",
           str(BATCHES), "--dtype", "bf16", "--threads", str(s["threads"])]
    for key in ("b", "hq", "hkv", "lq", "lk", "d"):
        cmd += [f"--{key}", str(s[key])]
    return json.loads(subprocess.check_output(cmd, text=True))["us_per_call"]


def python_us(call, drain):
    times = []
    for batch in range(BATCHES + 1):
        t0 = time.perf_counter()
        for _ in range(CALLS):
            call()
        t1 = time.perf_counter()
        drain()
        if batch:
            times.append((t1 - t0) / CALLS * 1e6)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench-call", required=True, help="path of the bench_call program")
    ap.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        torch = None
    try:
        import longattn.torch as lt_torch
    except ImportError:
        lt_torch = None
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devices and not (torch is not None and torch.cuda.is_available()
                                  and longattn.cuda_built()):
        print("cuda: skipped (no CUDA device, torch CUDA or CUDA build of longattn)")
        devices.remove("cuda")

    print(f"longattn {longattn.__version__}, Python {sys.version.split()[0]}, "
          f"numpy {np.__version__}, torch {torch.__version__ if torch else 'absent'}")
    print("| device | shape | C++ us a call | path | Python us a call | overhead us |")
    print("|---|---|---:|---|---:|---:|")
    for device in devices:
        for s in SHAPES[device]:
            measure(args.bench_call, device, s, torch, lt_torch)


def measure(bench_call, device, s, torch, lt_torch):
    shape = (f"B{s['b']} Hq{s['hq']} Hkv{s['hkv']} Lq{s['lq']} Lk{s['lk']} D{s['d']} bf16"
             + (f", {s['threads']} thread" if s["threads"] else ""))
    threads = s["threads"] or None
    rows = []
    if device == "cpu":
        import ml_dtypes
        bf16 = ml_dtypes.bfloat16
        q = np.zeros((s["b"], s["hq"], s["lq"], s["d"]), bf16)
        k = np.zeros((s["b"], s["hkv"], s["lk"], s["d"]), bf16)
        v = np.zeros_like(k)
        o = np.zeros_like(q)
        rows.append(("longattn.attention, NumPy",
                     lambda: longattn.attention(q, k, v, causal=True, out=o, threads=threads),
                     lambda: None))
    if torch is not None:
        dev = torch.device(device)
        tq = torch.zeros(s["b"], s["hq"], s["lq"], s["d"], dtype=torch.bfloat16, device=dev)
        tk = torch.zeros(s["b"], s["hkv"], s["lk"], s["d"], dtype=torch.bfloat16, device=dev)
        tv = torch.zeros_like(tk)
        to = torch.zeros_like(tq)
        drain = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        rows.append(("longattn.attention, torch",
                     lambda: longattn.attention(tq, tk, tv, causal=True, out=to,
                                                threads=threads), drain))
        if lt_torch is not None and device == "cuda":
            # Lq = 1: every key is visible with or without the causal rule.
            rows.append(("longattn.torch.scaled_dot_product_attention",
                         lambda: lt_torch.scaled_dot_product_attention(
                             tq, tk, tv, enable_gqa=True), drain))
    for name, call, drain in rows:
        cpp, py, diff = [], [], []
        for _ in range(ROUNDS):
            c = cpp_us(bench_call, device, s)
            p = python_us(call, drain)
            cpp.append(c)
            py.append(p)
            diff.append(p - c)
        print(f"| {device} | {shape} | {statistics.median(cpp):.2f} | {name} | "
              f"{statistics.median(py):.2f} | {statistics.median(diff):+.2f} |", flush=True)


if __name__ == "__main__":
    main()
