"""Several trials per GPU (hydra.sweeper.trials_per_gpu): where each trial is placed, the refusals, and a
trial's result not depending on how many share its GPU. On a CPU the GPU ids are only labels the jobs
carry (cuda_visible_devices), so the placement and the results are checked, not the sharing itself."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import ROOT, run_train
from optuna.trial import TrialState

from sweeper.devices import check_memory_fits, describe_sharing, measured_peak_mb, mps_running, plan_devices
from sweeper.errors import SweepError

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
SUBMITIT_LOCAL = "hydra_plugins.lorasweep.submitit_launchers.PerJobLocalLauncher"
SUBMITIT_SLURM = "hydra_plugins.lorasweep.submitit_launchers.PerJobSlurmLauncher"
BASIC = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def test_k_trials_per_gpu_are_placed_round_robin_and_more_are_refused():
    assert plan_devices(JOBLIB, ["0", "1"], 4, trials_per_gpu=2) == ["0", "1", "0", "1"]
    assert plan_devices(JOBLIB, ["3"], 3, trials_per_gpu=4) == ["3", "3", "3"]
    with pytest.raises(SweepError, match=r"5 trials would run at once .* 2 trial\(s\) per GPU.* <= 4"):
        plan_devices(JOBLIB, ["0", "1"], 5, trials_per_gpu=2)
    with pytest.raises(SweepError, match="trials_per_gpu must be >= 1"):
        plan_devices(JOBLIB, ["0"], 1, trials_per_gpu=0)


def test_submitit_local_shares_gpus_only_when_asked_and_slurm_points_to_worker_mode():
    assert plan_devices(SUBMITIT_LOCAL, ["0"], 2, trials_per_gpu=2) == ["0", "0"]
    assert plan_devices(SUBMITIT_LOCAL, ["0", "1"], 2, trials_per_gpu=1) is None  # submitit gives each job its own
    assert plan_devices(BASIC, ["0"], 1, trials_per_gpu=2) is None  # one job at a time
    with pytest.raises(SweepError, match="LORASWEEP_TRIALS_PER_GPU=2 sbatch"):
        plan_devices(SUBMITIT_SLURM, ["0"], 2, trials_per_gpu=2)


def test_k_that_does_not_fit_the_measured_peak_is_refused_naming_it(tmp_path):
    for name, peak in (("a", 20_000.0), ("b", 30_000.0), ("c", None)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.json").write_text(json.dumps({"status": "completed", "peak_gpu_memory_mb": peak}))
    peak = measured_peak_mb(str(tmp_path / name) for name in "abc")
    assert peak == 30_000.0
    check_memory_fits(2, peak, {"0": 81_559.0})
    with pytest.raises(SweepError, match=r"peaked at 30,000 MiB .* GPU 1 has 40,000 MiB, room for 1; set hydra.sweeper.trials_per_gpu=1"):
        check_memory_fits(2, peak, {"0": 81_559.0, "1": 40_000.0})
    check_memory_fits(8, None, {"0": 1.0})  # nothing measured yet: the first batch measures it
    assert measured_peak_mb([]) is None


def test_mps_is_reported_when_its_daemon_listens(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path))
    assert not mps_running()
    assert "time-sliced" in describe_sharing(2, ["0", "0"])
    os.mkfifo(tmp_path / "control")
    assert mps_running()
    assert "CUDA MPS daemon" in describe_sharing(2, ["0", "0"])
    assert describe_sharing(1, ["0"]) is None


SWEEP = ["-m", "hydra/sweeper=lorasweep", "hydra/sweeper/lorasweep_sampler=grid", "experiment=quickstart",
         "trainer.max_samples_seen=48", "task.val_size=0", "optimizer.lr=choice(2e-4, 2e-3)", "hydra.sweeper.n_trials=2"]


def losses_by_lr(project: Path, study_name: str) -> dict[float, list[float]]:
    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{project}/sweeps/{study_name}.db")
    found = {}
    for trial in study.get_trials():
        assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("reason")
        (run_dir,) = trial.user_attrs["run_dirs"]
        metrics = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
        found[trial.params["optimizer.lr"]] = [m["loss"] for m in metrics if "loss" in m]
    return found


@pytest.mark.slow
def test_two_trials_sharing_a_gpu_train_as_each_alone(tmp_path, cache_dir):
    """k=2 (joblib, both jobs on GPU label 0 at once) against k=1 (one trial after the other): the same losses."""
    run_train([*SWEEP, "hydra.sweeper.study_name=alone"], tmp_path / "alone", cache_dir)
    shared = run_train([*SWEEP, "hydra.sweeper.study_name=shared", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                        "hydra.sweeper.n_jobs=2", "hydra.sweeper.gpus=[0]", "hydra.sweeper.trials_per_gpu=2"],
                       tmp_path / "shared", cache_dir)
    assert "2 trials per GPU" in shared.stdout + shared.stderr
    alone, together = losses_by_lr(tmp_path / "alone", "alone"), losses_by_lr(tmp_path / "shared", "shared")
    assert set(alone) == {2e-4, 2e-3} and alone.keys() == together.keys()
    for lr, losses in alone.items():
        assert together[lr] == pytest.approx(losses, abs=1e-6)
    configs = [yaml.safe_load(path.read_text()) for path in (tmp_path / "shared" / "multirun").glob("*/*/*/.hydra/config.yaml")]
    assert sorted(config["cuda_visible_devices"] for config in configs) == ["0", "0"]


@pytest.mark.slow
def test_a_slurm_worker_task_runs_k_sweep_processes_on_one_study(tmp_path, cache_dir):
    """slurm/sweep_workers.sbatch run as SLURM runs it (bash, in the submit dir), outside SLURM."""
    env = {**os.environ, "PROJECT_ROOT": str(tmp_path), "LORASWEEP_CACHE": str(cache_dir), "WANDB_MODE": "offline",
           "LORASWEEP_TRIALS_PER_GPU": "2", "SLURM_SUBMIT_DIR": str(ROOT), "LORASWEEP_PYTHON": sys.executable}
    subprocess.run(["bash", str(ROOT / "slurm" / "sweep_workers.sbatch"), *SWEEP[1:], "hydra.sweeper.study_name=workers"],
                   env=env, check=True, capture_output=True, text=True, timeout=600)
    assert len(losses_by_lr(tmp_path, "workers")) == 2
    assert sorted(path.name for path in (tmp_path / "multirun" / "local").iterdir()) == ["worker-0-0", "worker-0-1"]


def test_a_worker_task_refuses_a_k_that_is_not_a_whole_number():
    refused = subprocess.run(["bash", str(ROOT / "slurm" / "sweep_workers.sbatch")], capture_output=True, text=True,
                             env={**os.environ, "LORASWEEP_TRIALS_PER_GPU": "two", "SLURM_SUBMIT_DIR": str(ROOT)})
    assert refused.returncode == 2 and "LORASWEEP_TRIALS_PER_GPU must be a whole number >= 1, got 'two'" in refused.stderr
