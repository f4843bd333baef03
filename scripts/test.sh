#!/usr/bin/env bash
# Builds and runs every test, as CI does:
#  1. Release build with warnings as errors (and the CUDA backend when nvcc
#     is present: it must compile and link; GPU tests report SKIPPED without
#     a GPU), full test suite;
#  2. the suite again under AddressSanitizer + UndefinedBehaviorSanitizer;
#  3. the libFuzzer targets (planner, API validation), built with clang and
#     run briefly.
# LONGATTN_FUZZ_SECONDS (default 30) sets how long each fuzzer runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
jobs=$(nproc)
export PATH="$PATH:/usr/local/cuda/bin"

echo "== 1/3 Release, -Werror"
cmake -S . -B build-ci -G Ninja -DCMAKE_BUILD_TYPE=Release -DLONGATTN_WERROR=ON -DLONGATTN_BUILD_BENCH=ON
cmake --build build-ci -j "$jobs"
ctest --test-dir build-ci --output-on-failure -j "$jobs"

echo "== install + find_package consumer"
rm -rf build-ci/prefix build-ci/consumer
cmake --install build-ci --prefix build-ci/prefix >/dev/null
cmake -S tests/install -B build-ci/consumer -G Ninja -DCMAKE_PREFIX_PATH="$PWD/build-ci/prefix" >/dev/null
cmake --build build-ci/consumer
build-ci/consumer/consumer

echo "== 2/3 AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLONGATTN_CUDA=OFF \
  -DLONGATTN_SANITIZE=address,undefined -DLONGATTN_BUILD_BENCH=OFF
cmake --build build-asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  LONGATTN_TEST_SMALL=1 ctest --test-dir build-asan --output-on-failure -j "$jobs"

echo "== 3/3 libFuzzer"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLONGATTN_CUDA=OFF \
  -DLONGATTN_FUZZ=ON -DLONGATTN_BUILD_TESTS=ON -DLONGATTN_BUILD_BENCH=OFF -DLONGATTN_BUILD_TOOLS=OFF
cmake --build build-fuzz -j "$jobs" --target fuzz_planner fuzz_validate
secs=${LONGATTN_FUZZ_SECONDS:-30}
for f in fuzz_planner fuzz_validate; do
  mkdir -p "build-fuzz/corpus-$f"
  "build-fuzz/tests/fuzz/$f" -max_total_time="$secs" -print_final_stats=1 "build-fuzz/corpus-$f" 2>&1 | tail -n 12
done
echo "== all tests passed"
