#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build the CUDA backend, run the GPU tests
# (and compute-sanitizer memcheck / racecheck on small cases), then the
# benchmark against PyTorch SDPA; print the benchmark table last.
#
#   tools/gpu_check.sh [quick|full|bench|shapes]   (default full)
#     quick:  build + tests + sanitizers
#     full:   quick + the 1M-token test + benchmark
#     bench:  build + benchmark only
#     shapes: build + issue 12's rows only (bench_gpu --suite shapes, then
#             --suite budget-shapes, then bench/gpu/shapes_peers.py for
#             PyTorch SDPA and FlexAttention on the same rows), within
#             SHAPES_TIME seconds after the build (default 480): the peer
#             script gets what the two suites leave and skips what no longer
#             fits (its rows say so)
#
# TEST_FILTER narrows the GPU tests (a --gtest_filter pattern), BENCH_ARGS
# passes options to bench_gpu (e.g. "--filter decode"). SANITIZERS=0 skips
# compute-sanitizer, VECTOR_DECODE=0 the vector-kernel decode comparison
# (for runs that must fit a time limit).
#
# Results go to $OUT (default ./gpu_check_out): summary.txt (commit, card,
# GPU tests, sanitizers, the 1M-token test), bench_table.md,
# bench_longattn.csv and logs.tar.gz (every log): few files, for remote
# runners that return only a handful. The summary, then the table, print
# last. shapes writes shapes_longattn.csv, budget_shapes.csv and
# shapes_table.md instead of the bench files.
#
# Needs CMake >= 3.24, ninja, nvcc, GoogleTest and nlohmann_json; when the
# last two are missing they are taken from build-deps/ (googletest sources
# and a prefix with nlohmann_json), if present.
set -uo pipefail
MODE=${1:-full}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/gpu_check_out}
BUILD=${BUILD:-$ROOT/build-gpucheck}
ARCHS=${LONGATTN_CUDA_ARCHS:-90a}
JOBS=$(nproc)
mkdir -p "$OUT"
step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }
# Lines worth keeping: printed now and again in the summary at the end.
keep() { tee -a "$OUT/summary.txt"; }
: >"$OUT/summary.txt"
status=0

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>&1 | tee "$OUT/gpu.txt"
nvcc --version | tail -1
cmake --version | head -1
git -C "$ROOT" rev-parse --short HEAD 2>/dev/null | sed 's/^/commit /' | tee "$OUT/commit.txt" | keep
head -2 "$OUT/gpu.txt" | tail -1 | keep

PREFIX_PATH=""
if [ -d "$ROOT/build-deps/prefix" ]; then PREFIX_PATH="$ROOT/build-deps/prefix"; fi
if [ -d "$ROOT/build-deps/googletest" ] && [ ! -f /usr/lib/x86_64-linux-gnu/cmake/GTest/GTestConfig.cmake ]; then
  step "googletest (from build-deps)"
  GT=/tmp/longattn-gtest
  if [ ! -f "$GT/prefix/lib/cmake/GTest/GTestConfig.cmake" ] && [ ! -f "$GT/prefix/lib64/cmake/GTest/GTestConfig.cmake" ]; then
    cmake -S "$ROOT/build-deps/googletest" -B "$GT/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DBUILD_GMOCK=OFF -DCMAKE_INSTALL_PREFIX="$GT/prefix" >"$OUT/gtest_build.log" 2>&1 &&
      cmake --build "$GT/build" -j "$JOBS" >>"$OUT/gtest_build.log" 2>&1 &&
      cmake --install "$GT/build" >>"$OUT/gtest_build.log" 2>&1 || { echo "googletest build failed"; tail -20 "$OUT/gtest_build.log"; }
  fi
  PREFIX_PATH="$PREFIX_PATH;$GT/prefix"
fi

# The benchmark directory is added by bench/CMakeLists.txt; on a copy that
# lacks it (early checkouts), add it here.
if [ ! -f "$ROOT/bench/CMakeLists.txt" ]; then
  echo 'if(LONGATTN_HAVE_CUDA)
  add_subdirectory(gpu)
endif()' >"$ROOT/bench/CMakeLists.txt"
elif ! grep -q "gpu" "$ROOT/bench/CMakeLists.txt"; then
  printf '\nif(LONGATTN_HAVE_CUDA)\n  add_subdirectory(gpu)\nendif()\n' >>"$ROOT/bench/CMakeLists.txt"
fi

step "configure"
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLONGATTN_CUDA=ON \
  -DLONGATTN_CUDA_ARCHS="$ARCHS" -DCMAKE_PREFIX_PATH="$PREFIX_PATH" -DLONGATTN_BUILD_TESTS=ON \
  -DLONGATTN_BUILD_BENCH=ON >"$OUT/configure.log" 2>&1 || { tail -30 "$OUT/configure.log"; exit 1; }
grep -E "CUDA backend" "$OUT/configure.log"

step "build"
TARGETS="test_cuda bench_gpu"
{ [ "$MODE" = bench ] || [ "$MODE" = shapes ]; } && TARGETS="bench_gpu"
if ! ninja -C "$BUILD" -j "$JOBS" $TARGETS >"$OUT/build.log" 2>&1; then
  grep -E "error|FAILED" "$OUT/build.log" | head -40
  exit 1
fi
grep -cE "warning" "$OUT/build.log" | sed 's/^/build warnings: /'
ninja -C "$BUILD" -j "$JOBS" longattn_cli >>"$OUT/build.log" 2>&1 && echo "longattn_cli built" || echo "longattn_cli not built (see build.log)"

TEST="$BUILD/tests/cuda/test_cuda"
if [ "$MODE" != bench ] && [ "$MODE" != shapes ]; then
  step "GPU tests"
  timeout ${TEST_TIMEOUT:-600} "$TEST" ${TEST_FILTER:+--gtest_filter=$TEST_FILTER} --gtest_brief=0 --gtest_output=xml:"$OUT/test_cuda.xml" >"$OUT/test_cuda.log" 2>&1
  rc=$?
  grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[==========\]|tests ran|Failure|error|\[cuda\]" "$OUT/test_cuda.log" | head -60 | keep
  [ $rc -ne 0 ] && { status=1; grep -B2 -A8 "Failure" "$OUT/test_cuda.log" | head -80; }

  if [ "${SANITIZERS:-1}" != 0 ] && command -v compute-sanitizer >/dev/null; then
    step "compute-sanitizer memcheck (small cases)"
    timeout ${SAN_TIMEOUT:-240} compute-sanitizer --tool memcheck --error-exitcode 9 "$TEST" \
      --gtest_filter='*CudaAttention.Sinks/*:*CudaAttention.MoreQueriesThanKeysCausal/*:CudaBackend.ElementStridedLayouts:*CudaAttention.FullyMaskedRowsGiveZeroAndMinusInf/*:*CudaAttention.HopperTileShapes/auto:CudaAsync.BackToBack*:CudaAsync.TwoStreams*' \
      >"$OUT/memcheck.log" 2>&1
    { echo "memcheck exit $?"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$OUT/memcheck.log" | tail -4; } | keep
    step "compute-sanitizer racecheck (small cases)"
    timeout ${SAN_TIMEOUT:-240} compute-sanitizer --tool racecheck --error-exitcode 9 "$TEST" \
      --gtest_filter='*CudaAttention.Sinks/*:CudaBackend.ElementStridedLayouts:*SplitKDecodeAndPrefill/auto' >"$OUT/racecheck.log" 2>&1
    { echo "racecheck exit $?"; grep -E "RACECHECK SUMMARY|ERROR SUMMARY|PASSED|FAILED" "$OUT/racecheck.log" | tail -4; } | keep
  fi
fi

if [ "$MODE" = full ]; then
  step "1M-token causal prefill, 100 ms budget"
  LONGATTN_CUDA_LONG=1 timeout 300 "$TEST" --gtest_filter='CudaLong.*' 2>&1 | tee "$OUT/long.log" | grep -E "\[long\]|OK|FAILED|Failure|error" | head | keep
fi

if [ "$MODE" = full ] || [ "$MODE" = bench ]; then
  step "benchmark: longattn"
  timeout 420 "$BUILD/bench/gpu/bench_gpu" --csv "$OUT/bench_longattn.csv" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench_longattn.log" | tail -45
  if [ "${VECTOR_DECODE:-1}" != 0 ]; then
    step "benchmark: decode on the vector kernel, for comparison (LONGATTN_CUDA_DECODE=vector)"
    LONGATTN_CUDA_DECODE=vector timeout 120 "$BUILD/bench/gpu/bench_gpu" --filter decode 2>&1 |
      tee "$OUT/bench_decode_vector.log" | grep -E "decode|FAILED"
  fi
  step "benchmark: PyTorch SDPA and ceilings"
  PYTHONUNBUFFERED=1 timeout 400 python3 "$ROOT/bench/gpu/sdpa_bench.py" --longattn "$OUT/bench_longattn.csv" \
    --out "$OUT/bench_table.md" >"$OUT/bench_sdpa.log" 2>&1 || tail -20 "$OUT/bench_sdpa.log"
  grep -E "^ceilings" "$OUT/bench_sdpa.log"
fi

if [ "$MODE" = shapes ]; then
  T0=$SECONDS
  BENCH="$BUILD/bench/gpu/bench_gpu"
  step "shapes: longattn (bench_gpu --suite shapes)"
  timeout 240 "$BENCH" --suite shapes --csv "$OUT/shapes_longattn.csv" ${BENCH_ARGS:-} 2>&1 |
    tee "$OUT/shapes_longattn.log"
  step "shapes: budget table, fresh profile (bench_gpu --suite budget-shapes)"
  timeout 150 "$BENCH" --suite budget-shapes --csv "$OUT/budget_shapes.csv" ${BENCH_ARGS:-} 2>&1 |
    tee "$OUT/budget_shapes.log"
  # What is left of SHAPES_TIME, less 20 s for the script's start and its
  # tables; the hard timeout leaves room for one peer that overruns (the
  # table is written after every row, so a cut keeps what was measured).
  LEFT=$((${SHAPES_TIME:-480} - (SECONDS - T0) - 20))
  [ "$LEFT" -lt 60 ] && LEFT=60
  step "shapes: PyTorch SDPA and FlexAttention on the same rows ($LEFT s)"
  PYTHONUNBUFFERED=1 timeout $((LEFT + 90)) python3 "$ROOT/bench/gpu/shapes_peers.py" \
    --longattn "$OUT/shapes_longattn.csv" --budget "$OUT/budget_shapes.csv" \
    --out "$OUT/shapes_table.md" --time-limit "$LEFT" 2>&1 | tee "$OUT/shapes_peers.log" |
    grep -E "^(card:|mask |window |headdim )"
  rc=${PIPESTATUS[0]}
  if [ "$rc" != 0 ]; then
    echo "shapes_peers.py exit $rc (124: cut by the timeout); its last lines:"
    tail -8 "$OUT/shapes_peers.log"
  fi
  echo "shapes: $((SECONDS - T0)) s after the build" | keep
fi

(cd "$OUT" && tar czf logs.tar.gz --ignore-failed-read ./*.log ./*.xml gpu.txt commit.txt 2>/dev/null &&
  rm -f ./*.log ./*.xml gpu.txt commit.txt)
step "summary"
cat "$OUT/summary.txt"
if [ -f "$OUT/bench_table.md" ]; then echo; cat "$OUT/bench_table.md"; fi
if [ "$MODE" = shapes ]; then
  if [ -f "$OUT/shapes_table.md" ]; then
    echo; cat "$OUT/shapes_table.md"
  else  # no peer table: longattn's own rows, from the CSVs
    echo; cat "$OUT/shapes_longattn.csv" "$OUT/budget_shapes.csv" 2>/dev/null
  fi
fi
exit $status
