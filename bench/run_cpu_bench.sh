#!/usr/bin/env bash
# Builds the CPU benches (Release), installs the peer (PyTorch, CPU) into a
# venv, runs bench_cpu and peer_torch.py on the same cases, inputs and
# thread count, prints both tables side by side, then runs bench_budget.
# This is what produced docs/BENCHMARKS.md's CPU sections.
#
#   bench/run_cpu_bench.sh [--threads N] [--reps N] [--rounds N] [--cpus LIST]
#                          [--quick] [--skip-peer] [--skip-budget] [--wait-idle]
#
# --cpus LIST: run both sides on these CPUs (taskset -c LIST). By default,
#   with fewer threads than CPUs, both (and bench_budget) are pinned to the
#   last `threads` CPUs (on the GPU machine's guest CPUs 0-1 measured
#   slowest), so that they run on the same hardware
#   threads (unpinned, each process gets whatever CPUs the scheduler, or a
#   VM's host, gives it: on the GPU machine's guest that moved results by up
#   to 1.9x between runs). "--cpus none": no pinning.
# --rounds N: N alternating rounds (longattn, then the peer), each row's
#   median over the rounds in the table (default 1).
# --quick: fewer repetitions and bench_budget --quick (smoke test, minutes).
# --wait-idle: wait (up to ~10 min) for the 1-minute load average to fall
#   below 0.7 before measuring; the load is printed either way.
# Env: BUILD_DIR (default build-cpu-bench), VENV (default build-peer-venv),
#      PYTHON (default python3: runs the peer itself when it already imports
#      torch, else creates the venv).
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS=$(nproc)
REPS=5
ROUNDS=1
CPUS=""
QUICK=0
SKIP_PEER=0
SKIP_BUDGET=0
WAIT_IDLE=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) THREADS=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --cpus) CPUS=$2; shift 2 ;;
    --quick) QUICK=1; REPS=2; shift ;;
    --skip-peer) SKIP_PEER=1; shift ;;
    --skip-budget) SKIP_BUDGET=1; shift ;;
    --wait-idle) WAIT_IDLE=1; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "run_cpu_bench.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if ! [[ $ROUNDS =~ ^[1-9][0-9]*$ ]]; then
  echo "run_cpu_bench.sh: --rounds $ROUNDS must be an integer >= 1" >&2
  exit 2
fi
BUILD_DIR=${BUILD_DIR:-build-cpu-bench}
VENV=${VENV:-build-peer-venv}
OUT=$BUILD_DIR/results
mkdir -p "$OUT"

echo "== build ($BUILD_DIR, Release)"
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLONGATTN_CUDA=OFF \
  -DLONGATTN_BUILD_TESTS=OFF -DLONGATTN_BUILD_TOOLS=OFF >/dev/null
ninja -C "$BUILD_DIR" bench_cpu bench_budget >/dev/null
# The float32 product against the FMA peak (x86-64 builds have the target).
MICRO=""
ninja -C "$BUILD_DIR" -t targets all 2>/dev/null | grep -q '^bench_micro_f32:' &&
  ninja -C "$BUILD_DIR" bench_micro_f32 >/dev/null && MICRO=$BUILD_DIR/bench/bench_micro_f32

# The peer. PyTorch's CPU-only index is tried first; without it, PyPI's torch
# wheel is CUDA-linked and pulls several GB of nvidia-* wheels. We install it
# --no-deps plus its pure-Python deps and the four CUDA libraries its
# libtorch.so links at load time (cusparselt, nvshmem, cufile, nccl); the rest
# (cudart, cublas, cudnn, ...) must come from a system CUDA 13 or, failing
# that, the full `pip install torch`.
torch_ok() { "${1:-$VENV/bin/python}" -c "import torch, numpy, torch.nn.functional as F; F.scaled_dot_product_attention(torch.ones(1,1,1,4), torch.ones(1,1,1,4), torch.ones(1,1,1,4))" >/dev/null 2>&1; }
# The interpreter that runs the peer: PYTHON itself when it has torch (a
# machine with PyTorch installed, and perhaps no network), else the venv.
PEER_PY=$VENV/bin/python
install_peer() {
  if torch_ok "${PYTHON:-python3}"; then PEER_PY=${PYTHON:-python3}; return 0; fi
  [[ -x $VENV/bin/python ]] || "${PYTHON:-python3}" -m venv "$VENV"
  local pip="$VENV/bin/pip install --quiet --disable-pip-version-check"
  torch_ok && return 0
  echo "== installing the peer (torch, numpy) into $VENV"
  $pip numpy
  timeout 120 $pip torch --index-url https://download.pytorch.org/whl/cpu 2>/dev/null && torch_ok && return 0
  $pip --no-deps torch && $pip filelock typing_extensions sympy networkx jinja2 fsspec mpmath MarkupSafe &&
    $pip --no-deps nvidia-cusparselt-cu13 nvidia-nvshmem-cu13 nvidia-cufile nvidia-nccl-cu13 && torch_ok && return 0
  $pip torch && torch_ok && return 0
  echo "run_cpu_bench.sh: torch cannot be installed or imported here:" >&2
  "$VENV/bin/python" -c "import torch" >&2 || true
  return 1
}

load1() { cut -d' ' -f1 /proc/loadavg; }
if [[ $WAIT_IDLE == 1 ]]; then
  for _ in $(seq 40); do
    awk -v l="$(load1)" 'BEGIN { exit !(l < 0.7) }' && break
    echo "load average $(load1), waiting for < 0.7"; sleep 15
  done
fi
# The last THREADS of the CPUs this process may use (a container's cpuset
# need not start at 0).
if [[ -z $CPUS && $THREADS -lt $(nproc) ]] && command -v taskset >/dev/null; then
  CPUS=$("${PYTHON:-python3}" -c "import os, sys; c = sorted(os.sched_getaffinity(0)); print(','.join(map(str, c[-int(sys.argv[1]):])))" "$THREADS")
fi
[[ $CPUS == none ]] && CPUS=""
PIN=()  # expanded as ${PIN[@]+"${PIN[@]}"}: bash before 4.4 calls an empty array unbound
[[ -n $CPUS ]] && PIN=(taskset -c "$CPUS")
echo "== machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; threads $THREADS; CPUs ${CPUS:-not pinned}; rounds $ROUNDS; $(date); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "== load before: $(uptime)"

if [[ -n $MICRO ]]; then  # one thread, on the first of the pinned CPUs
  ${CPUS:+taskset -c "${CPUS%%[,-]*}"} "$MICRO"
fi
"$BUILD_DIR/bench/bench_cpu" --emit-cases "$OUT/cases.json"
if [[ $SKIP_PEER == 0 ]] && ! install_peer; then
  echo "run_cpu_bench.sh: no peer (see above); longattn alone" >&2
  SKIP_PEER=1
fi
for round in $(seq "$ROUNDS"); do
  [[ $ROUNDS -gt 1 ]] && echo "== round $round of $ROUNDS"
  ${PIN[@]+"${PIN[@]}"} "$BUILD_DIR/bench/bench_cpu" --threads "$THREADS" --reps "$REPS" \
    --json "$OUT/longattn.$round.json" --csv "$OUT/longattn.$round.csv"
  echo "== load: $(uptime)"
  if [[ $SKIP_PEER == 0 ]]; then
    ${PIN[@]+"${PIN[@]}"} "$PEER_PY" bench/peer_torch.py --cases "$OUT/cases.json" --threads "$THREADS" \
      --reps "$REPS" --json "$OUT/torch.$round.json" --csv "$OUT/torch.$round.csv"
    echo "== load: $(uptime)"
  fi
done
cp "$OUT/longattn.$ROUNDS.json" "$OUT/longattn.json"
if [[ $SKIP_PEER == 0 ]]; then
  cp "$OUT/torch.$ROUNDS.json" "$OUT/torch.json"
  "$PEER_PY" - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def load(side):
    runs = [json.load(open(f"{out}/{side}.{r}.json")) for r in range(1, rounds + 1)]
    rows = {}
    for run in runs:
        for r in run["results"]:
            rows.setdefault(r["name"], []).append(r)
    return runs[-1], rows
_, la = load("longattn")
pt_run, pt = load("torch")
def med(rs, key):
    return statistics.median(r[key] for r in rs)
note = f" (median of {rounds} alternating rounds)" if rounds > 1 else ""
print(f"\n| case | dtype | mask | longattn ms{note} | longattn GFLOP/s | {pt_run['implementation']} ms | GFLOP/s | longattn / peer speed | GFLOP per CPU-s, longattn / peer | checksums |")
print("|---|---|---|---:|---:|---:|---:|---:|---|---|")
for name, rs in pt.items():
    ls = la.get(name)
    if not ls:
        continue
    r, l = rs[-1], ls[-1]
    lms, pms = med(ls, "median_ms"), med(rs, "median_ms")
    same = all(abs(a["checksum"] - b["checksum"]) <= 1e-3 * max(1.0, abs(b["checksum"])) * (1 if b["dtype"] == "float32" else 50)
               for a, b in zip(ls, rs))
    print(f"| {name} | {r['dtype']} | {'causal' if r['causal'] else 'none'} | {lms:.0f} | {l['flops'] / lms / 1e6:.1f} "
          f"| {pms:.0f} | {r['flops'] / pms / 1e6:.1f} | {pms / lms:.2f}x "
          f"| {l['flops'] / med(ls, 'cpu_ms') / 1e6:.1f} / {r['flops'] / med(rs, 'cpu_ms') / 1e6:.1f} | {'agree' if same else 'DIFFER'} |")
    if rounds > 1:
        each = lambda xs: " ".join(f"{x['median_ms']:.0f}" for x in xs)
        print(f"|  | | | rounds: {each(ls)} | | {each(rs)} | | | | |")
PY
fi
if [[ $SKIP_BUDGET == 0 ]]; then
  echo
  ${PIN[@]+"${PIN[@]}"} "$BUILD_DIR/bench/bench_budget" --threads "$THREADS" $([[ $QUICK == 1 ]] && echo --quick) \
    --json "$OUT/budget.json" --save-profile "$OUT/cpu_profile.json"
  echo "== load after: $(uptime)"
fi
