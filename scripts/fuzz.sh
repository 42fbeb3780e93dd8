#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) in build/fuzz with clang, ASan and UBSan (CUDA off), then runs each
# for SECONDS seconds (default 60) from its seed corpus (tests/fuzz/corpus/<target>). Fails if any target
# finds a crash, a leak, undefined behaviour or a timeout; the input that did it is kept in
# build/fuzz/artifacts/ (replay: build/fuzz/tests/fuzz/fuzz_<target> build/fuzz/artifacts/<file>).
#   scripts/fuzz.sh [SECONDS] [TARGET...]      e.g. scripts/fuzz.sh 30, scripts/fuzz.sh 600 image
# JOBS sets the build's parallelism (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(safetensors config vocab tokenizer image batch_line)

scripts/setup.sh >/dev/null
build=build/fuzz
CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVQA_ENABLE_CUDA=OFF \
  -DVQA_BUILD_TESTS=OFF -DVQA_BUILD_BENCH=OFF -DVQA_BUILD_FUZZERS=ON >/dev/null
cmake --build "$build" -j "${JOBS:-$(nproc)}" --target "${targets[@]/#/fuzz_}"

mkdir -p "$build/artifacts" "$build/logs"
failed=()
for t in "${targets[@]}"; do
  work="$build/corpus/$t"  # new inputs found go here; the committed seeds stay as they are
  mkdir -p "$work"
  dict=()
  [[ -f tests/fuzz/dict/$t.dict ]] && dict=(-dict="tests/fuzz/dict/$t.dict")
  log="$build/logs/$t.log"
  status=0
  "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/$t-" "${dict[@]}" "$work" "tests/fuzz/corpus/$t" >"$log" 2>&1 || status=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  if ((status == 0)); then
    printf 'fuzz: %-12s ok      %10s runs in %ss, corpus %s files\n' "$t" "$runs" "$seconds" "$(ls "$work" | wc -l)"
  else
    printf 'fuzz: %-12s FAILED (exit %d), log %s:\n' "$t" "$status" "$log"
    grep -A 30 -m 1 -E '^==[0-9]+==ERROR|runtime error|^==[0-9]+== ERROR|deadly signal' "$log" || tail -n 30 "$log"
    failed+=("$t")
  fi
done
if ((${#failed[@]})); then
  echo "fuzz: failed: ${failed[*]} (inputs in $build/artifacts/)" >&2
  exit 1
fi
