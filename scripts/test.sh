#!/usr/bin/env bash
# Set-up, build, then the whole test suite: C++ (CTest; GPU tests skip without a device) and Python (pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh -DVQA_WERROR=ON
ctest --preset release --output-on-failure -j "$(nproc)"
.venv/bin/python -m pytest -q tools/tests
