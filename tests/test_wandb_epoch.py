"""W&B as a training run logs it: train/epoch counts passes over the training set, as metrics.jsonl does."""
import json

import pytest
from conftest import run_train

from analysis.load_wandb import inspect


@pytest.mark.slow
def test_wandb_epoch_ends_at_the_runs_epochs(tmp_path, cache_dir):
    run_dir = tmp_path / "run"
    run_train(["model=tiny", "task=demo", "task.max_samples=40", "task.val_size=8", "task.cutoff_len=128", "trainer.epochs=2",
               "trainer.per_device_batch_size=4", "trainer.logging_steps=4", "trainer.eval_steps=8", "trainer.save_steps=100",
               "logger=wandb", f"logger.dir={tmp_path}", f"hydra.run.dir={run_dir}"], tmp_path, cache_dir)
    (offline_run,) = (tmp_path / "wandb").glob("offline-run-*")
    history = [entry["history"]["item"] for entry in map(json.loads, inspect(offline_run).splitlines()) if entry.get("type") == "history"]
    logged = [(row["train/global_step"], row["train/epoch"]) for row in history if "train/loss" in row]
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    result = json.loads((run_dir / "result.json").read_text())
    train_rows = result["counts"]["train_rows"]
    assert result["seen"]["samples"] == 2 * train_rows
    # every logged step: the samples seen over the training rows, as metrics.jsonl has it; the last is 2.0
    assert logged == [(r["step"], pytest.approx(r["epoch"], abs=1e-4)) for r in metrics if "loss" in r]
    assert logged[-1][1] == pytest.approx(2.0)
    evaluated = [row["train/epoch"] for row in history if "eval/loss" in row]
    assert evaluated and evaluated[-1] == pytest.approx(2.0)
