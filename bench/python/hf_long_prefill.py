#!/usr/bin/env python3
"""A transformers model's prefill at 128K tokens through longattn, under a
time budget, against the same model on attn_implementation="sdpa".

    hf_long_prefill.py [--tokens 131072] [--budget-ms 50] [--layers 2]

A Llama-style model with random weights (no download): bfloat16 on CUDA,
head dim 128, 8 query heads over 2 KV heads. Both implementations run one
forward pass over the same prompt with the same weights; the script prints
every attention call's submissions (count, slowest, slowest after the
first) from longattn's run reports, the budget misses, the wall time of
each pass, and the largest logit difference relative to each row's largest
|logit| (the tests' metric). It exits 1 when a submission after a call's
first is over budget or the logits differ by more than the bfloat16
tolerance of tests/python (1.6e-2).
"""
import argparse
import copy
import sys
import time

import torch
from transformers import AutoModelForCausalLM, LlamaConfig

import longattn
import longattn.integrations.transformers as lt_hf

BF16_TOLERANCE = 1.6e-2


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=131072)
    ap.add_argument("--budget-ms", type=float, default=50.0)
    ap.add_argument("--layers", type=int, default=2)
    args = ap.parse_args()
    assert torch.cuda.is_available(), "needs a CUDA device"

    reports = []
    lt_hf.register(budget_ms=args.budget_ms, on_report=reports.append)
    cfg = LlamaConfig(hidden_size=1024, intermediate_size=2048, num_hidden_layers=args.layers,
                      num_attention_heads=8, num_key_value_heads=2, head_dim=128,
                      vocab_size=1024, max_position_embeddings=args.tokens + 1,
                      rope_theta=1e6)
    torch.manual_seed(0)
    sdpa = AutoModelForCausalLM.from_config(copy.deepcopy(cfg), attn_implementation="sdpa")
    ours = AutoModelForCausalLM.from_config(copy.deepcopy(cfg), attn_implementation=lt_hf.NAME)
    ours.load_state_dict(sdpa.state_dict())
    sdpa = sdpa.to("cuda", torch.bfloat16).eval()
    ours = ours.to("cuda", torch.bfloat16).eval()
    ids = torch.randint(0, cfg.vocab_size, (1, args.tokens), device="cuda",
                        generator=torch.Generator("cuda").manual_seed(1))

    def timed(model):
        with torch.no_grad():
            model(ids[:, :1024])  # warm-up (kernels, allocator)
            torch.cuda.synchronize()
            reports.clear()
            t0 = time.perf_counter()
            logits = model(ids).logits
            torch.cuda.synchronize()
            return logits, (time.perf_counter() - t0) * 1e3

    want, sdpa_ms = timed(sdpa)
    got, ours_ms = timed(ours)
    calls = [r for r in reports if r.submissions]
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, longattn "
          f"{longattn.__version__}: Llama-style, {args.layers} layers, {args.tokens} tokens, "
          f"bf16, budget {args.budget_ms:g} ms")
    misses = 0
    for i, r in enumerate(calls):
        ms = [s.measured_ms for s in r.submissions]
        later = ms[1:]
        over = [t for t in later if t > args.budget_ms]
        misses += len(over)
        kernels = sorted({k for s in r.submissions for k in s.kernels})
        print(f"  attention call {i}: {len(ms)} submissions, first {ms[0]:.1f} ms, slowest after "
              f"the first {max(later) if later else 0:.1f} ms, {len(over)} over budget, "
              f"{r.total_flops / max(r.total_ms, 1e-9) * 1e-9:.0f} TFLOP/s, kernels "
              f"{', '.join(kernels)}")
    diff = (got.float() - want.float()).abs().amax(dim=-1)
    scale = want.float().abs().amax(dim=-1).clamp_min(1e-4)
    err = (diff / scale).max().item()
    print(f"  forward pass: sdpa {sdpa_ms:.0f} ms, longattn {ours_ms:.0f} ms; logits differ by "
          f"{err:.3g} of each row's max |logit| (tolerance {BF16_TOLERANCE})")
    print(f"  budget misses after each call's first submission: {misses}")
    ok = misses == 0 and err <= BF16_TOLERANCE and len(calls) == args.layers
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
