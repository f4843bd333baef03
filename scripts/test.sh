#!/usr/bin/env bash
# Builds and runs every test, as CI does:
#  1. Release build with warnings as errors (and the CUDA backend when nvcc
#     is present: it must compile and link; GPU tests report SKIPPED without
#     a GPU), full test suite;
#  2. the suite again under AddressSanitizer + UndefinedBehaviorSanitizer;
#  3. the libFuzzer targets (planner, API validation), built with clang, run
#     briefly after replaying the inputs committed under tests/fuzz/corpus/;
#  4. planted faults: a build with LONGATTN_PLANT_FAULTS=ON (src/core/faults.hpp)
#     runs the CPU suite (at reduced size) once with no fault, which must pass,
#     then once per fault (a dropped key chunk, a zeroed output row, two heads
#     swapped, the causal diagonal shifted by one), each of which must fail it;
#  5. the Python package (scripts/test_python.sh): a venv under build-py/
#     filled from PyPI, `pip install .` (CPU backend), pytest on tests/python.
# Tests that skip themselves (GTEST_SKIP) are counted as skipped by ctest and
# listed after each suite, not folded into "100% tests passed".
# Everything is written under build-ci/, build-asan/, build-fuzz/, build-tmp/,
# build-faults/ and build-py/ (ignored), fuzzer artefacts included; the
# script fails if it leaves a new file anywhere else in the checkout.
# LONGATTN_FUZZ_SECONDS (default 30) sets how long each fuzzer runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
jobs=$(nproc)
# Temporary files (the tests' scratch files, the compilers', pip's build
# trees) go under the checkout: a CI machine once had less room in /tmp than
# one test's scratch file. The room left is printed for the log.
export TMPDIR="$PWD/build-tmp"
mkdir -p "$TMPDIR"
df -h "$TMPDIR" | sed 's/^/== disk: /'
export PATH="$PATH:/usr/local/cuda/bin"

untracked() { git status --porcelain --untracked-files=all 2>/dev/null | grep '^??' || true; }
untracked_before=$(untracked)

# ctest, then one line for the tests that skipped themselves (GTEST_SKIP,
# e.g. GPU tests without a GPU): ctest counts them in "100% tests passed" and
# lists them under "The following tests did not run", so say how many, by
# suite, where CI logs are read.
run_ctest() {
  local dir=$1
  ctest --test-dir "$dir" --output-on-failure --no-tests=error -j "$jobs" 2>&1 | tee "$dir/ctest.log"
  local total skipped
  total=$(sed -nE 's/.* tests failed out of ([0-9]+)$/\1/p' "$dir/ctest.log")
  skipped=$(sed -nE 's/^\s*[0-9]+ - ([^.]*)\..* \(Skipped\)$/\1/p' "$dir/ctest.log")
  if [ -n "$skipped" ]; then
    echo "== $dir: $(wc -l <<<"$skipped") of $total tests SKIPPED, not run (listed above):" \
      "$(sort <<<"$skipped" | uniq -c | awk '{printf "%s%s %d", (NR > 1 ? ", " : ""), $2, $1}')"
  else
    echo "== $dir: all $total tests ran, none skipped"
  fi
}

echo "== 1/5 Release, -Werror"
cmake -S . -B build-ci -G Ninja -DCMAKE_BUILD_TYPE=Release -DLONGATTN_WERROR=ON -DLONGATTN_BUILD_BENCH=ON
cmake --build build-ci -j "$jobs"
run_ctest build-ci

echo "== install + find_package consumer"
rm -rf build-ci/prefix build-ci/consumer
cmake --install build-ci --prefix build-ci/prefix >/dev/null
cmake -S tests/install -B build-ci/consumer -G Ninja -DCMAKE_PREFIX_PATH="$PWD/build-ci/prefix" >/dev/null
cmake --build build-ci/consumer
build-ci/consumer/consumer

echo "== 2/5 AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLONGATTN_CUDA=OFF \
  -DLONGATTN_SANITIZE=address,undefined -DLONGATTN_BUILD_BENCH=OFF
cmake --build build-asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  LONGATTN_TEST_SMALL=1 run_ctest build-asan

echo "== 3/5 libFuzzer"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLONGATTN_CUDA=OFF \
  -DLONGATTN_FUZZ=ON -DLONGATTN_BUILD_TESTS=ON -DLONGATTN_BUILD_BENCH=OFF -DLONGATTN_BUILD_TOOLS=OFF
cmake --build build-fuzz -j "$jobs" --target fuzz_planner fuzz_validate
secs=${LONGATTN_FUZZ_SECONDS:-30}
for f in fuzz_planner fuzz_validate; do
  # New inputs go to the first corpus directory (ignored); the committed
  # ones are read only. crash-*, timeout-*, slow-unit-* land in artifacts/.
  corpus="build-fuzz/corpus-$f"
  artifacts="$PWD/build-fuzz/artifacts-$f/"
  log="build-fuzz/$f.log"
  mkdir -p "$corpus" "$artifacts"
  seeds=()
  [ -d "tests/fuzz/corpus/$f" ] && seeds=("tests/fuzz/corpus/$f")
  echo "-- $f (${secs} s)"
  if ! "build-fuzz/tests/fuzz/$f" -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$artifacts" "$corpus" "${seeds[@]}" >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "== $f FAILED (full log: $log; failing input under $artifacts;" \
      "replay: build-fuzz/tests/fuzz/$f <input>)"
    exit 1
  fi
  tail -n 12 "$log"
done

echo "== 4/5 planted faults: each must fail the suite"
cmake -S . -B build-faults -G Ninja -DCMAKE_BUILD_TYPE=Release -DLONGATTN_CUDA=OFF -DLONGATTN_WERROR=ON \
  -DLONGATTN_PLANT_FAULTS=ON -DLONGATTN_BUILD_TOOLS=OFF -DLONGATTN_BUILD_BENCH=OFF
cmake --build build-faults -j "$jobs"
# Runs the suite with fault $1 planted ("" = none); its log is
# build-faults/ctest-<fault>.log. Returns ctest's status.
fault_ctest() {
  LONGATTN_PLANT_FAULT=$1 LONGATTN_TEST_SMALL=1 ctest --test-dir build-faults --no-tests=error \
    -j "$jobs" >"build-faults/ctest-${1:-none}.log" 2>&1
}
if ! fault_ctest ""; then
  tail -n 40 build-faults/ctest-none.log
  echo "== FAILED: the fault build fails its tests with no fault planted (build-faults/ctest-none.log)"
  exit 1
fi
echo "no fault planted: $(sed -nE 's/.* 0 tests failed out of ([0-9]+)$/all \1/p' build-faults/ctest-none.log) tests passed"
for fault in drop_chunk zero_row swap_heads shift_diagonal; do
  log="build-faults/ctest-$fault.log"
  if fault_ctest "$fault"; then
    echo "== FAILED: planted fault $fault: every test passed, so the suite cannot tell this" \
      "broken library from a correct one ($log)"
    exit 1
  fi
  count=$(sed -nE 's/.* ([0-9]+) tests failed out of ([0-9]+)$/\1 of \2/p' "$log")
  if [ -z "$count" ]; then  # ctest itself failed: no test ran to catch the fault
    tail -n 40 "$log"
    echo "== FAILED: planted fault $fault: ctest did not run the suite ($log)"
    exit 1
  fi
  by_suite=$(sed -nE '/\(Skipped\)$/d; s/^\s*[0-9]+ - ([^.]*)\..* \([^)]*\)$/\1/p' "$log" |
    sort | uniq -c |
    awk '{printf "%s%s %d", (NR > 1 ? ", " : ""), $2, $1}')
  echo "planted fault $fault: $count tests failed (good): $by_suite"
done

echo "== 5/5 Python package"
scripts/test_python.sh

left=$(comm -13 <(sort <<<"$untracked_before") <(sort <<<"$(untracked)") | sed '/^$/d')
if [ -n "$left" ]; then
  echo "== FAILED: the tests left files in the checkout:"
  echo "$left"
  exit 1
fi
echo "== all tests passed"
