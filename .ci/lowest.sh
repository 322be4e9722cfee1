#!/usr/bin/env bash
# pyproject.toml's lower bounds, tested: a venv outside the repository with every package at the lower
# bound its range admits (.ci/lowest.txt as constraints on `pip install -e ".[test]"`), then the not-slow
# tests and the quickstart in it, with every cached artefact (the tiny model, the Qwen2.5 tokenizer, the
# tokenized data, tiktoken's file cache) built afresh by those versions. ~5 minutes to install and ~8 to
# test on 2 cores.
#
#   bash .ci/lowest.sh [VENV_DIR]       # default VENV_DIR: /tmp/lorasweep-lowest
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-/tmp/lorasweep-lowest}
run=$(mktemp -d)
trap 'rm -rf "$run"' EXIT
export LORASWEEP_TEST_CACHE=$run/test-cache LORASWEEP_CACHE=$run/cache TIKTOKEN_CACHE_DIR=$run/tiktoken
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet torch==2.13.0
"$VENV/bin/python" -m pip install --quiet -c .ci/lowest.txt -e ".[test]"
"$VENV/bin/python" -m pip list --format=freeze | grep -iE "^($(grep -v '^#' .ci/lowest.txt | cut -d= -f1 | paste -sd'|'))=="
"$VENV/bin/python" -m pytest -q -m "not slow"
PROJECT_ROOT=$run WANDB_MODE=offline "$VENV/bin/python" train.py experiment=quickstart hydra.run.dir="$run/quickstart"
