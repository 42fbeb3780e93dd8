#!/usr/bin/env bash
# The CPU test suite under AddressSanitizer with LeakSanitizer and UndefinedBehaviorSanitizer: the asan preset
# (build/asan: Debug, CUDA off), then `ctest -L cpu` with leak detection on. JOBS sets the parallelism
# (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null

jobs=${JOBS:-$(nproc)}
cmake --preset asan -DVQA_BUILD_BENCH=OFF >/dev/null
cmake --build --preset asan -j "$jobs"
# install_consumer builds an outside project without the sanitizer flags against this build's libvqa, which an
# instrumented library cannot serve; scripts/test.sh runs it on the release build.
# The test preset sets ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 and UBSAN_OPTIONS=halt_on_error=1.
ctest --preset asan -L cpu -E '^install_consumer$' -j "$jobs"
