#!/usr/bin/env bash
# pyproject.toml's lower bounds, tested: a venv outside the repository with every package at the lower
# bound its range admits (.ci/lowest.txt as constraints on `pip install -e ".[test]"`), then the not-slow
# tests and the quickstart in it. Takes ~5 minutes to install and ~5 to test on 2 cores.
#
#   bash .ci/lowest.sh [VENV_DIR]       # default VENV_DIR: /tmp/lorasweep-lowest
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-/tmp/lorasweep-lowest}
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet torch==2.13.0
"$VENV/bin/python" -m pip install --quiet -c .ci/lowest.txt -e ".[test]"
"$VENV/bin/python" -m pip list --format=freeze | grep -iE "^($(grep -v '^#' .ci/lowest.txt | cut -d= -f1 | paste -sd'|'))=="
"$VENV/bin/python" -m pytest -q -m "not slow"
run=$(mktemp -d)
PROJECT_ROOT=$run LORASWEEP_CACHE=${LORASWEEP_CACHE:-$run/cache} WANDB_MODE=offline \
    "$VENV/bin/python" train.py experiment=quickstart hydra.run.dir="$run/quickstart"
rm -rf "$run"
