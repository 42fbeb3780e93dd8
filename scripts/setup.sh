#!/usr/bin/env bash
# Installs every dependency of vqa-engine on a Debian 12 machine (idempotent; quick when all is present):
# Debian packages through apt-get, then a Python venv (.venv) over /usr/bin/python3 with the pinned pip
# packages of tools/requirements.txt. The CUDA toolkit is not installed here: when nvcc is found
# (/usr/local/cuda/bin), the CUDA sources are built too; without it the CPU parts build alone.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(
  build-essential cmake ninja-build pkg-config
  libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev libcli11-dev libstb-dev libjpeg-dev libpng-dev
  libzip-dev
  libopenblas-dev libopenblas-openmp-dev
  clang libclang-rt-14-dev libomp-dev
  python3 python3-venv python3-pip python3-torch python3-torchvision python3-numpy python3-pil python3-pytest
)

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv over /usr/bin/python3"
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
required=$(grep -v '^#' tools/requirements.txt | grep .)
present=$(.venv/bin/python -m pip freeze --disable-pip-version-check 2>/dev/null | grep -cxF "$required" || true)
if [[ $present -ne $(grep -c . <<<"$required") ]]; then
  echo "setup: installing Python packages from tools/requirements.txt"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r tools/requirements.txt
fi
.venv/bin/python -c "import torch, numpy; assert torch.__version__.startswith('1.13'), torch.__version__" ||
  { echo "setup: .venv does not see Debian's PyTorch 1.13" >&2; exit 1; }
echo "setup: dependencies ready"
