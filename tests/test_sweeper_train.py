"""End to end: the sweeper driving train.py on the tiny model (CPU), with W&B offline runs.
Kept to a few tiny-budget trials; the loop itself is tested on the small app in test_sweeper.py."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from conftest import ROOT, run_train
from optuna.trial import TrialState

pytestmark = pytest.mark.slow


def wandb_summary(run_dir: Path) -> dict:
    """What W&B recorded for an offline run, read with wandb's own reader (offline dirs hold no config.yaml)."""
    inspected = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--summary", "--json", str(run_dir)],
                               capture_output=True, text=True, timeout=300, check=True)
    return json.loads(inspected.stdout)


def test_notes_sweep_runs_the_ablation_first_with_wandb_runs_grouped_by_study(tmp_path, cache_dir):
    result = run_train(["sweep=notes_quickstart", "experiment=quickstart", "hydra.sweeper.n_trials=3",
                        # logging every 2 steps: the ablation's more_accumulation (64 samples a step) logs within 80 samples
                        "trainer.max_samples_seen=80", "trainer.logging_steps=2", "task.val_size=0", "logger=wandb",
                        "hydra/sweeper/lorasweep_pruner=none"], tmp_path, cache_dir)  # every run to its end
    console = result.stdout + result.stderr
    assert "FutureWarning" not in console and "TrialReporter" not in console  # one short launch line per trial
    study = optuna.load_study(study_name="notes-demo-tiny", storage=f"sqlite:///{tmp_path}/sweeps/notes-demo-tiny.db")
    trials = study.get_trials()
    assert [t.user_attrs["ablation"] for t in trials] == ["baseline", "larger_batch", "lower_lr"]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    larger_batch = trials[1]
    assert larger_batch.params == {"trainer.per_device_batch_size": 16}
    # quickstart's effective batch is 8 x 1; 16 cannot shrink accumulation below 1
    assert "trainer.gradient_accumulation_steps=1" in larger_batch.user_attrs["overrides"]
    (sweep_dir,) = (tmp_path / "multirun").glob("*/*")
    assert {"optimization_results.yaml", "trials.csv", "best_overrides.txt"} <= {p.name for p in sweep_dir.iterdir()}

    runs = {summary["name"]: summary for summary in map(wandb_summary, (tmp_path / "wandb").glob("offline-run-*"))}
    assert set(runs) == {"trial-0", "trial-1", "trial-2"}
    for name, summary in runs.items():
        assert summary["config"]["logger"]["group"] == "notes-demo-tiny"
        assert summary["config"]["logger"]["job_type"] == "demo"
    assert runs["trial-1"]["config"]["trainer"]["per_device_batch_size"] == 16
    assert runs["trial-2"]["config"]["optimizer"]["lr"] == pytest.approx(1e-3)


def test_a_diverging_trial_fails_with_its_reason_and_the_study_refuses_other_data(tmp_path, cache_dir):
    command = ["-m", "hydra/sweeper=lorasweep", "hydra/sweeper/lorasweep_sampler=grid", "experiment=quickstart",
               "trainer.max_samples_seen=48", "task.val_size=0", "optimizer.lr=choice(1e30, 2e-3)", "optimizer.allow_any_lr=true",
               "hydra.sweeper.n_trials=2", "hydra.sweeper.study_name=diverge", "hydra.sweeper.max_failure_rate=0.5"]
    run_train(command, tmp_path, cache_dir)
    study = optuna.load_study(study_name="diverge", storage=f"sqlite:///{tmp_path}/sweeps/diverge.db")
    by_lr = {t.params["optimizer.lr"]: t for t in study.get_trials()}
    assert by_lr[1e30].state == TrialState.FAIL
    assert "loss became nan" in by_lr[1e30].user_attrs["reason"]
    assert by_lr[2e-3].state == TrialState.COMPLETE

    other = run_train([*command, "task.dataset=[demo_cate]"], tmp_path, cache_dir, check=False)
    assert other.returncode == 2
    assert ("was made for other data than this sweep composes: task.dataset is ['demo_yiliao'] in the study, "
            "['demo_cate'] now. Start a study for this data (hydra.sweeper.study_name=diverge-") in other.stderr
    assert len(study.get_trials()) == 2


def rank_json(tmp_path: Path, name: str, *args: str) -> dict:
    """`python -m analysis rank ARGS --json FILE`, read back."""
    out = tmp_path / f"{name}.json"
    subprocess.run([sys.executable, "-m", "analysis", "rank", *args, "--json", str(out)], cwd=ROOT,
                   capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.read_text())


def test_analysis_ranks_a_real_sweep_from_its_folder_and_from_its_storage(tmp_path, cache_dir):
    """The run contract end to end: what the sweeper and train.py write is what the analysis reads, so a
    renamed user attr, result.json field or run-dir file breaks this test."""
    run_train(["sweep=notes_quickstart", "experiment=quickstart", "hydra.sweeper.n_trials=3",
               "trainer.max_samples_seen=48", "trainer.logging_steps=1", "task.val_size=0",
               "hydra/sweeper/lorasweep_pruner=none"], tmp_path, cache_dir)  # every run completed
    storage = tmp_path / "sweeps" / "notes-demo-tiny.db"
    trials = optuna.load_study(study_name="notes-demo-tiny", storage=f"sqlite:///{storage}").get_trials()
    values = {f"trial-{t.number}": t.value for t in trials}
    (sweep_dir,) = (tmp_path / "multirun").glob("*/*")

    from_folder = rank_json(tmp_path, "folder", str(sweep_dir))
    from_storage = rank_json(tmp_path, "storage", "--storage", str(storage))
    merged = rank_json(tmp_path, "merged", str(sweep_dir), "--storage", str(storage))
    for ranking in (from_folder, from_storage, merged):
        rows = {row["run"]: row for row in ranking["rows"]}
        # trials named through the run_dirs attr (trials.csv, the storage) or by the study itself
        assert set(rows) == set(values)
        assert all(row["state"] == "completed" for row in rows.values())
        assert {name: rows[name]["smoothed_loss"] for name in values} == pytest.approx(values, rel=1e-6)
        assert {effect["remedy"] for effect in ranking["ablation"]} == {"larger_batch", "lower_lr"}
    for ranking in (from_folder, merged):  # the run dirs' loss curves and resolved params
        rows = {row["run"]: row for row in ranking["rows"]}
        assert {row["source"] for row in rows.values()} == {"rundir"}
        assert rows["trial-1"]["trainer.per_device_batch_size"] == 16
        assert rows["trial-2"]["optimizer.lr"] == pytest.approx(1e-3)
