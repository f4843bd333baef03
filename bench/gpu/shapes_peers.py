#!/usr/bin/env python3
"""PyTorch beside longattn on issue 12's rows: array masks, a sliding window,
odd head dims (bench_gpu --suite shapes) and the budget table (bench_gpu
--suite budget-shapes). Prints one line a row as it goes and the combined
tables at the end, or with --out writes them there as Markdown instead
(after every row, so a run cut short keeps what it measured).

  shapes_peers.py --longattn shapes.csv [--budget budget.csv] [--out table.md]
                  [--time-limit SECONDS] [--no-flex] [--device cuda|cpu]

The rows, their FLOP counts and the mask formulas come from the CSV and
bench/gpu/device_fill.hpp (`mask_rows` below is the same formula), so both
sides run the same shapes on equal masks and count the same work. Inputs are
uniform in [-2, 2) on both sides (different bits), bfloat16, B = 1, Hq = 32,
Hkv = 8. Timing is sdpa_bench.py's prefill method (`bench`: an event pair
around one call, host sync, warm-up, median of 3-50 within about a second),
the one bench_gpu uses, inputs rotated over the same number of sets.

Peers, each forced alone; one that refuses a row, fails to compile or runs
out of time is "n/a" with the reason, and the table goes on:
- torch SDPA with attn_mask (the same [1, 1, L, L] tensor longattn reads)
  on EFFICIENT_ATTENTION and CUDNN_ATTENTION; unmasked rows without a mask
  (is_causal on the causal one); GQA through enable_gqa, or K/V expanded
  once outside the timing where a backend refuses it (the row says so).
  SDPA has no window argument: the window row says so, and times FA2 and
  cuDNN on causal attention over all 128K keys, what a caller of SDPA runs.
- FlexAttention (torch.compile(flex_attention)), with the block mask of the
  row's structure from create_block_mask (or, past 16K x 16K, where
  create_block_mask would materialize the whole mask, the same BlockMask
  built by a chunked reduction: `block_mask`): causal and causal-array rows
  the causal mask_mod, document rows a document-id mask_mod, the window row
  a sliding-window mask_mod, the all-true boolean row a mask_mod reading the
  boolean tensor, the ALiBi row a score_mod reading the bias tensor. Compile
  time is outside the timing and printed.
- Head-dim rows: SDPA FLASH_ATTENTION, CUDNN_ATTENTION, EFFICIENT_ATTENTION
  with is_causal.

--device cpu runs the script's code paths on small rows on the CPU (wall
clock, no GPU backends): a smoke test, not a benchmark.
"""
import argparse
import csv
import datetime
import math
import os
import statistics
import sys
import time
import warnings

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sdpa_bench import bench as event_bench  # noqa: E402  (the main table's method)
from sdpa_bench import rotating  # noqa: E402

HQ, HKV = 32, 8
BLOCK = 128  # FlexAttention's default block size, the block mask's tile
DEVICE = "cuda"


# ---- timing -----------------------------------------------------------------------


def bench(fn, budget_ms=1000.0):
    """sdpa_bench.py's prefill method (on the CPU: the same loop on the wall
    clock, for the smoke test)."""
    if DEVICE == "cuda":
        return event_bench(fn, budget_ms)
    fn()
    times = []
    for _ in range(3):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def free():
    if DEVICE == "cuda":
        try:
            torch.cuda.empty_cache()
        except Exception:  # a sticky CUDA error: every later peer says so itself
            pass


class Clock:
    """The script's time limit: a peer starts only if its likely cost fits."""

    def __init__(self, limit_s):
        self.end = time.monotonic() + limit_s

    def left(self):
        return self.end - time.monotonic()

    def refuse(self, need_s):
        left = self.left()
        return None if left >= need_s else f"n/a (time limit: {max(left, 0):.0f} s left)"


def reason(e):
    text = str(e).strip().splitlines()
    first = text[0] if text else type(e).__name__
    return (type(e).__name__ + ": " + first)[:140].replace("|", "/")


# ---- inputs and masks ---------------------------------------------------------


def input_sets(lq, lk, d, dv):
    """Up to 4 sets, about 256 MB in all, as bench_gpu rotates them."""
    set_bytes = 2 * (HQ * lq * d + HKV * lk * d + HKV * lk * dv + HQ * lq * dv)
    n = max(1, min(4, math.ceil(256e6 / set_bytes)))

    def u(*shape):
        return torch.empty(shape, device=DEVICE, dtype=torch.bfloat16).uniform_(-2, 2)

    return [(u(1, HQ, lq, d), u(1, HKV, lk, d), u(1, HKV, lk, dv)) for _ in range(n)]


def mask_rows(content, boolean, q0, q1, lq, lk, doc_len):
    """Rows [q0, q1) of the mask, by device_fill.hpp's formula: diag = i +
    Lk - Lq; alibi -min(|j - diag|, 4096) / 256; causal j <= diag; docs
    diag // doc_len == j // doc_len; all: everything. Additive masks are
    bfloat16 (0 / -inf, or the bias), boolean ones True = keep."""
    diag = torch.arange(q0, q1, device=DEVICE)[:, None] + (lk - lq)
    j = torch.arange(lk, device=DEVICE)[None, :]
    if content == "causal":
        keep = j <= diag
    elif content == "docs":
        keep = torch.div(diag, doc_len, rounding_mode="floor") == torch.div(
            j, doc_len, rounding_mode="floor"
        )
    else:
        keep = torch.ones(q1 - q0, lk, dtype=torch.bool, device=DEVICE)
    if boolean:
        return keep
    if content == "alibi":
        d = (j - diag).abs().clamp_(max=4096)
        return (-(d.to(torch.float32) / 256.0)).to(torch.bfloat16)
    zero = torch.zeros((), dtype=torch.bfloat16, device=DEVICE)
    return torch.where(keep, zero, torch.full_like(zero, -math.inf))


def make_mask(kind, content, lq, lk, doc_len):
    """The [1, 1, Lq, Lk] mask of a row, made in row chunks (at 64K x 64K
    one whole int64 index grid would be 32 GiB)."""
    boolean = kind == "bool"
    m = torch.empty(1, 1, lq, lk, device=DEVICE, dtype=torch.bool if boolean else torch.bfloat16)
    rows = max(1, (1 << 26) // lk)
    for q0 in range(0, lq, rows):
        q1 = min(lq, q0 + rows)
        m[0, 0, q0:q1] = mask_rows(content, boolean, q0, q1, lq, lk, doc_len)
    return m


# ---- SDPA ---------------------------------------------------------------------


def expand(t):
    return t.repeat_interleave(HQ // HKV, dim=1)


def forced(backend, sets, **kwargs):
    """bench() of SDPA on `backend` alone: (ms, None), or (None, why): torch
    says why a backend refuses in warnings ("... requires ...") before its
    RuntimeError, so those are the reason."""
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        try:
            with sdpa_kernel([backend]):
                return bench(rotating(lambda q, k, v: F.scaled_dot_product_attention(
                    q, k, v, **kwargs), sets)), None  # fmt: skip
        except Exception as e:
            why = []
            for w in said:
                text = " ".join(str(w.message).split(" (Triggered internally")[0].split())
                if text and not text.endswith("because:") and text not in why:
                    why.append(text[:120].replace("|", "/"))
            return None, "; ".join(why[:2] + [reason(e)])


def sdpa_peer(backend, sets, mask=None, causal=False):
    """One SDPA backend forced alone on the row; (ms, how) or (None, why).
    GQA natively (enable_gqa), else K/V expanded once outside the timing."""
    kwargs = {}
    if mask is not None:
        kwargs["attn_mask"] = mask
    if causal:
        kwargs["is_causal"] = True
    how = "is_causal" if causal else "no mask"
    if mask is not None:
        how = "bool attn_mask" if mask.dtype == torch.bool else "additive attn_mask"
    try:
        ms, why = forced(backend, sets, enable_gqa=True, **kwargs)
        if ms is not None:
            return ms, how
        wide = [(q, expand(k), expand(v)) for q, k, v in sets]
        ms, why_wide = forced(backend, wide, **kwargs)
        if ms is not None:
            return ms, f"{how}, K/V expanded (with enable_gqa: {why})"
        return None, f"n/a ({why_wide})" if why_wide == why else (
            f"n/a ({why_wide}; with enable_gqa: {why})"
        )
    finally:
        free()


# ---- FlexAttention ------------------------------------------------------------

_flex = None


def flex():
    """flex_attention compiled once; each (mod, shape) compiles its own graph,
    so the recompile limit is raised above the few this script needs
    (past it dynamo would fall back to eager flex_attention, which
    materializes the scores)."""
    global _flex
    if _flex is None:
        from torch.nn.attention.flex_attention import flex_attention

        cfg = torch._dynamo.config
        for name in ("cache_size_limit", "recompile_limit"):
            if hasattr(cfg, name):
                setattr(cfg, name, 64)
        if hasattr(cfg, "fail_on_recompile_limit_hit"):
            cfg.fail_on_recompile_limit_hit = True
        _flex = torch.compile(flex_attention, dynamic=False)
    return _flex


def chunked_block_mask(mask_mod, lq, lk):
    """The BlockMask create_block_mask would make, from row chunks of the
    mask (mask_mod applied to broadcast index grids): per tile of BLOCK x
    BLOCK, full (all visible) or partial (some), as BlockMask.from_kv_blocks
    takes them. Memory: one chunk of rows at a time."""
    from torch.nn.attention.flex_attention import BlockMask

    assert lq % BLOCK == 0 and lk % BLOCK == 0, "rows are tile multiples"
    nq, nk = lq // BLOCK, lk // BLOCK
    any_ = torch.zeros(nq, nk, dtype=torch.bool, device=DEVICE)
    all_ = torch.zeros(nq, nk, dtype=torch.bool, device=DEVICE)
    rows = max(BLOCK, ((1 << 26) // lk) // BLOCK * BLOCK)
    kv = torch.arange(lk, device=DEVICE)[None, :]
    zero = torch.zeros((), dtype=torch.int64, device=DEVICE)
    for q0 in range(0, lq, rows):
        q1 = min(lq, q0 + rows)
        q = torch.arange(q0, q1, device=DEVICE)[:, None]
        m = mask_mod(zero, zero, q, kv).expand(q1 - q0, lk)
        tiles = m.reshape((q1 - q0) // BLOCK, BLOCK, nk, BLOCK)
        any_[q0 // BLOCK : q1 // BLOCK] = tiles.any(dim=3).any(dim=1)
        all_[q0 // BLOCK : q1 // BLOCK] = tiles.all(dim=3).all(dim=1)

    def ordered(dense):
        num = dense.sum(dim=-1, dtype=torch.int32)
        idx = torch.argsort(dense.to(torch.int32), dim=-1, descending=True, stable=True)
        return num[None, None].contiguous(), idx.to(torch.int32)[None, None].contiguous()

    kv_num, kv_idx = ordered(any_ & ~all_)
    full_num, full_idx = ordered(all_)
    return BlockMask.from_kv_blocks(
        kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=BLOCK, mask_mod=mask_mod
    )


def block_mask(mask_mod, lq, lk):
    """(BlockMask, how): create_block_mask up to 16K x 16K, else (or if it
    fails) the chunked build of the same BlockMask."""
    from torch.nn.attention.flex_attention import create_block_mask

    if lq * lk <= 1 << 28:
        try:
            bm = create_block_mask(mask_mod, None, None, lq, lk, device=DEVICE)
            return bm, "create_block_mask"
        except Exception as e:
            note = f"chunked block mask (create_block_mask failed: {reason(e)})"
    else:
        note = "chunked block mask (= create_block_mask's, without the Lq x Lk grid)"
    return chunked_block_mask(mask_mod, lq, lk), note


def flex_variant(row):
    """(key, builder) of the row's FlexAttention form; the key names what
    rows share (the causal rows of a shape all run one causal block mask).
    builder() returns (score_mod, block_mask, how), making any tensor the
    mods read (the row's own mask, by mask_rows' formula)."""
    lq, lk = row["Lq"], row["Lk"]
    off = lk - lq
    content, left = row["content"], row["window_left"]
    if row["group"] == "window" and left >= 0:

        def window(b, h, q, kv):
            return (kv <= q + off) & (q + off - kv <= left)

        return f"window{left}", lambda: (None, *block_mask(window, lq, lk))
    if content == "causal" or (content == "none" and row["causal"]):

        def causal(b, h, q, kv):
            return kv <= q + off

        return "causal", lambda: (None, *block_mask(causal, lq, lk))
    if content == "docs":
        doc_len = row["doc_len"]

        def build_docs():
            ids = torch.arange(max(lq, lk), device=DEVICE)
            docs = torch.div(ids, doc_len, rounding_mode="floor")

            def document(b, h, q, kv):
                return docs[q + off] == docs[kv]

            return (None, *block_mask(document, lq, lk))

        return f"docs{doc_len}", build_docs
    if content == "alibi":

        def build_alibi():
            bias = make_mask("additive", "alibi", lq, lk, 0)[0, 0]

            def alibi(score, b, h, q, kv):
                return score + bias[q, kv]

            return alibi, None, "score_mod reading the bias tensor, no block mask"

        return "alibi", build_alibi
    if content == "all":

        def build_tensor_mask():
            keep = make_mask("bool", "all", lq, lk, 0)[0, 0]

            def tensor_mask(b, h, q, kv):
                return keep[q, kv]

            bm, how = block_mask(tensor_mask, lq, lk)
            return None, bm, "mask_mod reading the bool tensor, " + how

        return "bool-tensor", build_tensor_mask
    return "none", lambda: (None, None, "no mods")


def flex_peers(row, clock, cache):
    """The Flex column of one row: {"flex": (ms or None, how)}."""
    key, build = flex_variant(row)
    key = (row["D"], row["Dv"], row["Lq"], row["Lk"], key)
    if key not in cache:
        late = clock.refuse(45)  # a first compile on a fresh machine may take this long
        if late:
            return {"flex": (None, late)}
        try:
            sets = input_sets(row["Lq"], row["Lk"], row["D"], row["Dv"])
            score_mod, bm, how = build()
            fn = flex()

            def call(q, k, v):
                return fn(q, k, v, score_mod=score_mod, block_mask=bm, enable_gqa=True)

            t0 = time.monotonic()
            call(*sets[0])
            sync()
            compile_s = time.monotonic() - t0
            ms = bench(rotating(call, sets))
            cache[key] = (ms, f"{how}; compile + first call {compile_s:.1f} s")
        except Exception as e:
            cache[key] = (None, f"n/a ({reason(e)})")
    return {"flex": cache[key]}


# ---- rows -----------------------------------------------------------------------


def read_rows(path):
    rows = []
    for r in csv.DictReader(open(path)):
        for k in ("D", "Dv", "Lq", "Lk", "window_left", "window_right", "doc_len", "submissions"):
            r[k] = int(r[k])
        for k in ("pairs", "flops", "flops_visible", "ms", "tflops", "tflops_visible"):
            r[k] = float(r[k])
        r["causal"] = r["causal"] == "1"
        rows.append(r)
    return rows


def sdpa_peers(row, clock):
    """The SDPA columns of one row: {column: (ms or None, how)}."""
    out = {}
    # Seconds one backend may take: warm-up, estimate, about a second of calls.
    need = 6 if row["Lq"] * row["Lk"] > 1 << 30 else 3
    g = row["group"]
    cols = {"mask": ("efficient", "cudnn"), "headdim": ("flash", "cudnn", "efficient")}.get(
        g, ("flash", "cudnn")
    )
    if g == "window" and row["window_left"] >= 0:
        why = "n/a (SDPA takes no window; a dense mask would be Lq x Lk)"
        return {c: (None, why) for c in cols}
    late = clock.refuse(need)
    if late:
        return {c: (None, late) for c in cols}
    sets = input_sets(row["Lq"], row["Lk"], row["D"], row["Dv"])
    mask = None
    if row["mask"] != "none":
        mask = make_mask(row["mask"], row["content"], row["Lq"], row["Lk"], row["doc_len"])

    def sdpa(col, backend, **kw):
        late = clock.refuse(need)
        out[col] = (None, late) if late else sdpa_peer(backend, sets, **kw)

    if g == "mask":
        kw = {"mask": mask} if mask is not None else {"causal": row["causal"]}
        sdpa("efficient", SDPBackend.EFFICIENT_ATTENTION, **kw)
        sdpa("cudnn", SDPBackend.CUDNN_ATTENTION, **kw)
    else:  # the headdim rows and the window's reference: causal over every key
        sdpa("flash", SDPBackend.FLASH_ATTENTION, causal=True)
        sdpa("cudnn", SDPBackend.CUDNN_ATTENTION, causal=True)
        if g == "headdim":
            sdpa("efficient", SDPBackend.EFFICIENT_ATTENTION, causal=True)
    return out


def wants_flex(row):
    return row["group"] == "mask" or (row["group"] == "window" and row["window_left"] >= 0)


def flex_order(rows):
    """The rows FlexAttention runs, in CSV order, except that mods reading a
    mask tensor of 2^31 entries or more go last: an indexing fault there
    would end the CUDA context, and with it every peer after it."""

    def risky(r):
        return r["content"] in ("alibi", "all") and r["Lq"] * r["Lk"] >= 1 << 31

    todo = [r for r in rows if wants_flex(r)]
    return [r for r in todo if not risky(r)] + [r for r in todo if risky(r)]


# ---- tables ---------------------------------------------------------------------


def cell(peer, flops):
    ms, how = peer if peer else (None, "")
    return "n/a" if ms is None else f"{ms:.2f} / {flops / ms * 1e-9:.0f}"


def best_ratio(row, peers):
    """The fastest peer's ms over longattn's: > 1 where longattn is faster."""
    times = [p[0] for p in peers.values() if p and p[0] is not None]
    if not times or row["status"] != "ok":
        return ""
    return f"{min(times) / row['ms']:.2f}x"


def paths(peers):
    return "; ".join(f"{k}: {v[1]}" for k, v in peers.items() if v)


def reference_text(row, refs):
    shape = (row["D"], row["Dv"], row["Lq"], row["Lk"])
    if row["status"] != "ok" or row["group"] != "mask":
        return ""
    if row["content"] in ("alibi", "all") and (shape, False) in refs:
        return f"{refs[(shape, False)] / row['ms']:.2f} of unmasked"
    if row["content"] == "causal" and (shape, True) in refs:
        return f"{refs[(shape, True)] / row['ms']:.2f} of causal=true"
    return ""


def longattn_cells(row):
    if row["status"] != "ok":
        return [f"refused: {row['status'][7:]}", "", ""]
    return [f"{row['ms']:.2f}", f"{row['tflops']:.0f}", f"{row['tflops_visible']:.0f}"]


def section(intro, columns, rows, cells):
    """A Markdown table after its intro: one row per entry of `rows`, its
    cells from cells(row); nothing where there are no rows."""
    if not rows:
        return []
    out = [intro, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    return out + [""]


def tables(rows, results, budget_rows, header):
    refs = {}
    for r in rows:
        if r["group"] == "mask" and r["mask"] == "none" and r["status"] == "ok":
            refs[((r["D"], r["Dv"], r["Lq"], r["Lk"]), r["causal"])] = r["ms"]

    def group(name):
        return [r for r in rows if r["group"] == name]

    def peer(r, col):  # a peer's cell over the row's visible pairs
        return cell(results.get(r["name"], {}).get(col), r["flops_visible"])

    def tail(r):  # the last two columns of the mask and head-dim tables
        return [best_ratio(r, results.get(r["name"], {})), paths(results.get(r["name"], {}))]

    out = [header, ""]
    out += section(
        "Array masks ([1, 1, L, L], bf16 additive or bool). TFLOP/s by the library count "
        "of the shape (attention_flops: the causal flag, no mask) and over the pairs the "
        "mask leaves visible; peers as `ms / TFLOP/s over visible pairs`. \"vs ref\": the "
        "dense masks against the unmasked call of the same shape (goal >= 0.70), the "
        "causal arrays against causal=true. \"best peer / longattn\": the fastest peer's "
        "ms over longattn's (> 1: longattn is faster).",
        ["case", "longattn ms", "TFLOP/s (count)", "TFLOP/s (visible)", "vs ref", "kernel",
         "SDPA efficient", "SDPA cuDNN", "Flex", "best peer / longattn", "peer paths"],
        group("mask"),
        lambda r: [r["name"], *longattn_cells(r), reference_text(r, refs), r["kernels"],
                   peer(r, "efficient"), peer(r, "cudnn"), peer(r, "flex"), *tail(r)])  # fmt: skip
    out += section(
        "Sliding window (causal, window_left = 4095: 4096 keys a query) and the same "
        "shape without a window. TFLOP/s over visible pairs; peers `ms / TFLOP/s`.",
        ["case", "longattn ms", "TFLOP/s (visible)", "kernel", "Flex", "SDPA FA2", "SDPA cuDNN",
         "peer paths"],
        group("window"),
        lambda r: [r["name"], longattn_cells(r)[0], longattn_cells(r)[2], r["kernels"],
                   peer(r, "flex"), peer(r, "flash"), peer(r, "cudnn"),
                   paths(results.get(r["name"], {}))])  # fmt: skip
    out += section(
        "Head dims (causal, square). TFLOP/s by attention_flops (2 (D + Dv) per visible "
        "pair); peers `ms / TFLOP/s`.",
        ["case", "longattn ms", "TFLOP/s", "kernel", "SDPA FA2", "SDPA cuDNN", "SDPA efficient",
         "best peer / longattn", "peer paths"],
        group("headdim"),
        lambda r: [r["name"], longattn_cells(r)[0], longattn_cells(r)[2], r["kernels"],
                   peer(r, "flash"), peer(r, "cudnn"), peer(r, "efficient"), *tail(r)])  # fmt: skip
    if budget_rows:
        out += budget_table(budget_rows)
    return "\n".join(out)


def budget_table(rows):
    out = [
        "Budgets with a fresh device profile (no rate for the row's key) per run: the "
        "first submission (measured, x budget, and what the planner predicted), the worst "
        "after it, submissions, how many took longer than the budget / 1.1 x budget, the "
        "call's total against the unbudgeted call, then a second call on the profile the "
        "first refined. Goal: every submission within 1.1 x budget, the first included.",
        "",
        "| case | budget ms | first ms (x budget) | first predicted ms | worst after 1st ms "
        "(x budget) | subs | over budget / 1.1x | total ms | unbudgeted ms | overhead | "
        "2nd call: subs, worst ms (x budget), over budget |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["status"] != "ok":
            out.append(f"| {r['name']} | | refused: {r['status'][7:]} |" + " |" * 8)
            continue
        b = float(r["budget_ms"])
        first, pred, worst, w2 = (float(r[k]) for k in (
            "first_ms", "first_predicted_ms", "worst_after_first_ms",
            "second_worst_after_first_ms"))  # fmt: skip
        out.append(
            f"| {r['name']} | {b:.0f} | {first:.2f} ({first / b:.2f}) | {pred:.2f} | "
            f"{worst:.2f} ({worst / b:.2f}) | {r['submissions']} | {r['misses']} / "
            f"{r['misses_over_1.1']} | {float(r['total_ms']):.1f} | "
            f"{float(r['single_ms']):.1f} | {float(r['overhead_pct']):+.1f}% | "
            f"{r['second_submissions']}, {w2:.2f} ({w2 / b:.2f}), {r['second_misses']} |"
        )
    out.append("")
    return out


def main():
    global DEVICE
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--longattn", required=True, help="bench_gpu --suite shapes CSV")
    ap.add_argument("--budget", help="bench_gpu --suite budget-shapes CSV")
    ap.add_argument("--out", help="write the tables here as Markdown")
    ap.add_argument("--time-limit", type=float, default=300, help="seconds for the peers")
    ap.add_argument("--no-flex", action="store_true", help="skip FlexAttention")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    args = ap.parse_args()
    DEVICE = args.device
    clock = Clock(args.time_limit)
    rows = read_rows(args.longattn)
    budget_rows = []
    if args.budget and os.path.exists(args.budget):
        budget_rows = list(csv.DictReader(open(args.budget)))
    if DEVICE == "cuda":
        name = torch.cuda.get_device_name(0)
        cudnn = torch.backends.cudnn.version()
    else:
        name, cudnn = "CPU (smoke test)", None
    header = (f"card: {name}; date: {datetime.date.today()}; torch {torch.__version__}, "
              f"cuDNN {cudnn}; bf16, B 1, Hq {HQ}, Hkv {HKV}")  # fmt: skip
    print(header, flush=True)
    # SDPA first, then FlexAttention (its compiles take most of the time, so
    # the time limit cuts Flex rows before any SDPA one).
    results = {r["name"]: {} for r in rows}
    cache = {}
    phases = [("sdpa", rows, lambda r: sdpa_peers(r, clock))]
    if args.no_flex:
        for r in rows:
            if wants_flex(r):
                results[r["name"]]["flex"] = (None, "n/a (--no-flex)")
    else:
        phases.append(("flex", flex_order(rows), lambda r: flex_peers(r, clock, cache)))
    for phase, todo, run in phases:
        for r in todo:
            t0 = time.monotonic()
            try:
                got = run(r)
            except Exception as e:  # the row's inputs or masks failed: its peers are n/a
                got = {phase: (None, f"n/a ({reason(e)})")}
            free()
            results[r["name"]].update(got)
            peers = "; ".join(
                f"{k} {'n/a' if v[0] is None else f'{v[0]:.2f} ms'}" for k, v in got.items()
            )
            took = f"[{time.monotonic() - t0:.0f} s, {clock.left():.0f} s left]"
            print(f"{r['name']}: {phase}: {peers} (longattn {r['ms']:.2f} ms, {r['status']})",
                  took, flush=True)  # fmt: skip
            if args.out:
                with open(args.out, "w") as f:
                    f.write(tables(rows, results, budget_rows, header) + "\n")
    text = tables(rows, results, budget_rows, header)
    if args.out:  # the caller prints it (tools/gpu_check.sh does, last)
        with open(args.out, "w") as f:
            f.write(text + "\n")
        print(f"tables written to {args.out}")
    else:
        print("\n" + text)


if __name__ == "__main__":
    main()
