#!/usr/bin/env bash
# The GPU measurements that the open targets wait for and that fit in about 9 minutes on one H100, in one go:
# the CUDA-only tests, translation (a) and (b) with the beam profile, Marian at larger batches, and ResNet-18
# against timm. The Atari runs take up to 10 minutes each and run on their own (docs/benchmarks.md).
#
#   bash bench/gpu_checks.sh OUT_DIR
#
# Each step writes OUT_DIR/<step>.json (or .txt) and OUT_DIR/<step>.log; a failing step is reported and the
# next one runs. Record the figures in docs/benchmarks.md with the machine, the command and the date.
set -u
out=${1:?usage: bash bench/gpu_checks.sh OUT_DIR}
mkdir -p "$out"
export WANDB_MODE=disabled SDL_VIDEODRIVER=dummy
cd "$(dirname "$0")/.."

step() {  # step NAME EXTENSION COMMAND...
  local name=$1 extension=$2 started=$SECONDS
  shift 2
  echo "== $name: $*" >&2
  "$@" > "$out/$name.$extension" 2> "$out/$name.log"
  echo "== $name: exit $? after $((SECONDS - started)) s" >&2
}

python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch')" || exit 2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt" 2>&1
if python -c "import pytest" 2> /dev/null; then
  step cuda_tests txt python -m pytest -q -p no:cacheprovider tests/test_nlp_decoding.py -k cuda
else
  echo "== cuda_tests: skipped, pytest is not installed" >&2
fi
step translation json python bench/translation.py --device cuda --skip-bleu --profile --json
step translation_large_batch json python bench/translation.py --device cuda --skip-bleu --batch-size 256 \
  --source-length 64 --target-length 64 --json
step backbone json python bench/backbone_throughput.py --device cuda --rounds 7 --json
