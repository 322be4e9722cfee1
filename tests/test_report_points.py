"""The sweeper refuses, before any trial, a pruner that could never stop a trial: too few reports before
the budget ends, or none at or after the pruner's first step (n_warmup_steps, min_resource)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from sweeper.errors import SweepError
from sweeper.preflight import check_report_points, report_plan

ROOT = Path(__file__).resolve().parents[1]
# the quickstart's logging: batch 8 x accumulation 1 x logging_steps 5 = a report every 40 samples
QUICKSTART = ["sweep=notes_quickstart", "experiment=quickstart", "trainer.max_samples_seen=320"]


def trial_config(*overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=[*QUICKSTART, *overrides], return_hydra_config=True)


def test_reports_fall_every_logging_interval_and_the_last_at_the_exact_budget():
    plan = report_plan(trial_config("trainer.per_device_batch_size=6", "trainer.gradient_accumulation_steps=2"))
    assert plan.points == [60, 120, 180, 240, 300]  # 27 optimizer steps of 12, the last one partial
    assert plan.budget == 320
    assert "trainer.logging_steps=5 x trainer.per_device_batch_size=6" in plan.interval


@pytest.mark.parametrize("pruner", ["median", "successive_halving", "hyperband", "patient", "racing", "none"])
def test_the_quickstart_sweep_gives_every_pruner_enough_reports(pruner):
    config = trial_config(f"hydra/sweeper/lorasweep_pruner={pruner}")
    check_report_points(config, [config])


@pytest.mark.parametrize(
    ("overrides", "message", "fix"),
    [
        # 27 optimizer steps of 12 samples, the last partial: reports at 60 ... 300, none at the end (step 27)
        (["hydra/sweeper/lorasweep_pruner=median", "hydra.sweeper.pruner.n_warmup_steps=310", "trainer.per_device_batch_size=6",
          "trainer.gradient_accumulation_steps=2"],
         "at or after 310 samples seen (hydra.sweeper.pruner.n_warmup_steps)", "set trainer.logging_steps=3 or less"),
        (["hydra/sweeper/lorasweep_pruner=successive_halving", "hydra.sweeper.pruner.min_resource=400"],
         "at or after 400 samples seen (hydra.sweeper.pruner.min_resource)", "lower hydra.sweeper.pruner.min_resource"),
        (["hydra/sweeper/lorasweep_pruner=racing", "hydra.sweeper.pruner.min_samples=400"],
         "at or after 400 samples seen (hydra.sweeper.pruner.min_samples)", "lower hydra.sweeper.pruner.min_samples"),
        (["hydra/sweeper/lorasweep_pruner=patient", "hydra.sweeper.pruner.patience=7"],
         "once the trial has made 9 reports (hydra.sweeper.pruner.patience + 2)", "set trainer.logging_steps=4 or less"),
    ],
)
def test_too_few_report_points_for_the_pruner_are_refused_with_the_numbers_and_the_fix(overrides, message, fix):
    config = trial_config(*overrides)
    with pytest.raises(SweepError) as refusal:
        check_report_points(config, [config])
    assert message in str(refusal.value)
    assert "samples of its 320-sample budget" in str(refusal.value)
    assert fix in str(refusal.value)
    assert "hydra/sweeper/lorasweep_pruner=none" in str(refusal.value)


def test_the_fix_names_a_logging_interval_that_works_for_every_probed_trial():
    settings = ["hydra/sweeper/lorasweep_pruner=median", "hydra.sweeper.pruner.n_warmup_steps=290", "trainer.max_samples_seen=300"]
    probes = [trial_config(*settings, f"trainer.per_device_batch_size={batch}") for batch in (2, 8, 16)]
    # batch 2 reports at 300; batch 8 last at 280 (would need logging_steps 2), batch 16 at 240 (needs 1)
    with pytest.raises(SweepError, match=r"reports its loss \(every 80 samples.* set trainer.logging_steps=1 or less"):
        check_report_points(probes[0], probes)
    fixed = [trial_config(*settings, f"trainer.per_device_batch_size={batch}", "trainer.logging_steps=1")
             for batch in (2, 8, 16)]
    check_report_points(fixed[0], fixed)


@pytest.mark.slow
def test_a_sweep_whose_pruner_could_never_act_stops_before_any_trial(tmp_path):
    command = [sys.executable, str(ROOT / "train.py"), *QUICKSTART, "hydra/sweeper/lorasweep_pruner=successive_halving",
               "hydra.sweeper.pruner.min_resource=400", f"hydra.sweep.dir={tmp_path}/sweep"]
    env = {**os.environ, "PROJECT_ROOT": str(tmp_path), "WANDB_MODE": "disabled"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "could never stop some trials" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.rglob("result.json"))
