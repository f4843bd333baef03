#!/usr/bin/env bash
# The main job: build (Release) and run the longattn CLI on its CPU default
# (generated inputs, budgeted plan, check against a float64 reference).
# Extra arguments go to `longattn run`, e.g. scripts/run.sh --q-len 8192.
#
# Only what that run needs is built: the library and the CLI, and the CUDA
# backend only when this machine has an NVIDIA GPU (nvidia-smi -L lists one,
# or /dev/nvidia0 exists), since compiling its kernels takes minutes on a
# small machine and a CPU run does not use them. LONGATTN_CUDA=ON (or AUTO:
# whenever nvcc is found) in the environment builds it anyway; OFF never.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
export PATH="$PATH:/usr/local/cuda/bin"

if [ -z "${LONGATTN_CUDA:-}" ]; then
  if { command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; } ||
     [ -e /dev/nvidia0 ]; then
    LONGATTN_CUDA=AUTO  # a GPU: build the backend if nvcc is there
  else
    LONGATTN_CUDA=OFF
    echo "run: no NVIDIA GPU found, building without the CUDA backend (LONGATTN_CUDA=ON builds it)"
  fi
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DLONGATTN_CUDA="$LONGATTN_CUDA" \
  -DLONGATTN_BUILD_TESTS=OFF -DLONGATTN_BUILD_BENCH=OFF >/dev/null
cmake --build build --target longattn_cli
exec build/tools/longattn run "$@"
