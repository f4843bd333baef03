#!/usr/bin/env bash
# The main job: build (Release) and run the longattn CLI on its CPU default
# (generated inputs, budgeted plan, check against a float64 reference).
# Extra arguments go to `longattn run`, e.g. scripts/run.sh --q-len 8192.
# The CUDA backend is compiled when nvcc is found (LONGATTN_CUDA=OFF in the
# environment skips it; the CLI still runs on the CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
export PATH="$PATH:/usr/local/cuda/bin"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DLONGATTN_CUDA="${LONGATTN_CUDA:-AUTO}" \
  -DLONGATTN_BUILD_TESTS=OFF -DLONGATTN_BUILD_BENCH=OFF >/dev/null
cmake --build build --target longattn_cli
exec build/tools/longattn run "$@"
