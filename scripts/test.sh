#!/usr/bin/env bash
# Sets up gym lab (scripts/setup.sh) and runs the whole test suite. Slow tests and benchmarks are opt-in:
#   bash scripts/test.sh -m slow      bash scripts/test.sh -m bench
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export SDL_VIDEODRIVER=dummy WANDB_MODE=disabled MPLBACKEND=Agg
exec .venv/bin/python -m pytest -q "$@"
