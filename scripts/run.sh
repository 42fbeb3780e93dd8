#!/usr/bin/env bash
# Set-up, build, then answer questions about a bundled example image with the bundled model.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
build/release/tools/vqa_infer --image examples/images/shape0.png \
  --question "what color is the shape?" --question "what shape is in the image?" --question "is there a circle?"
