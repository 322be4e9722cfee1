"""The names of the files a run dir and a sweep dir hold (docs/run_dir.md)."""
from __future__ import annotations

METRICS_FILE = "metrics.jsonl"  # one JSON object per log step, appended while training
TRAINER_LOG_FILE = "trainer_log.jsonl"  # the same log in LLaMA-Factory's field names
RESULT_FILE = "result.json"  # written at the end of every run, whatever the end
LOSS_PLOT_FILE = "training_loss.png"  # the loss as LLaMA-Factory draws it
SAMPLES_FILE = "samples.jsonl"  # the ids of the samples each optimizer step trained on
EVAL_FILE = "eval.json"  # the held-out evaluation, written by `python -m judge` (layout: runs/evaluation.py)

# the sweep dir
SWEEP_RESULTS_FILE = "optimization_results.yaml"
TRIALS_FILE = "trials.csv"
BEST_OVERRIDES_FILE = "best_overrides.txt"
