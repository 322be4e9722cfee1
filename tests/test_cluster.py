"""Sweeps on a real SLURM cluster (with accounting) and a real PostgreSQL server: train.py on the tiny
model, each trial a SLURM job on this machine. `.ci/services.sh` starts both; without them these tests
skip (and fail in CI). Kept to a few tiny trials, since every job pays Python's and torch's start."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from conftest import ROOT, run_train
from optuna.trial import TrialState

from runs.storage import open_storage

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

# 2 trials at once, 1 CPU each: the whole cluster is 2 CPUs in CI
SLURM = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10",
         "hydra.launcher.partition=null", "hydra.launcher.gpus_per_node=null", "hydra.launcher.mem_gb=null"]
TINY = ["experiment=quickstart", "task.val_size=0", "trainer.max_samples_seen=48", "trainer.logging_steps=2"]


def study_name() -> str:
    """A fresh name: the PostgreSQL database outlives a test run."""
    return f"cluster-{uuid.uuid4().hex[:8]}"


def rank(storage: str, name: str) -> str:
    result = subprocess.run([sys.executable, "-m", "analysis", "rank", "--storage", storage, "--study", name],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def assert_trained_once(study: optuna.Study, n_trials: int) -> None:
    trials = study.get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == n_trials, [(t.number, t.state, t.user_attrs.get("reason")) for t in trials]
    params = [tuple(sorted(t.params.items())) for t in finished]
    assert len(set(params)) == len(params)


def sweep_through_slurm(storage: str, tmp_path: Path, cache_dir: Path, env: dict[str, str]) -> None:
    """4 trials, 2 at a time, as SLURM job arrays; every trial finished once, and analysis ranks the study."""
    name = study_name()
    overrides = ["-m", *TINY, *SLURM, "hydra/sweeper=lorasweep", f"hydra.sweeper.study_name={name}",
                 "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2", "hydra/sweeper/lorasweep_sampler=random",
                 "optimizer.lr=tag(log, interval(1e-4, 4e-3))"]
    run_train(overrides, tmp_path, cache_dir, timeout=1200, extra_env=env)
    study = optuna.load_study(study_name=name, storage=open_storage(storage))
    assert_trained_once(study, 4)
    ranked = rank(storage, name)
    assert all(f"trial-{number}" in ranked for number in range(4))
    (sweep_dir,) = (tmp_path / "multirun").glob("*/*")
    assert (sweep_dir / "trials.csv").is_file()
    assert list((sweep_dir / ".submitit").iterdir())  # the jobs went through SLURM


def test_a_sweep_through_submitit_slurm_on_a_journal_file(tmp_path, cache_dir, slurm, tiny_model_dir):
    storage = f"journal:{tmp_path}/shared/study.log"
    sweep_through_slurm(storage, tmp_path, cache_dir, {"LORASWEEP_STORAGE": storage})


def test_a_sweep_through_submitit_slurm_on_postgresql(tmp_path, cache_dir, slurm, postgres_url, tiny_model_dir):
    """The password comes from PGPASSFILE: the URL that jobs inherit holds none."""
    sweep_through_slurm(postgres_url, tmp_path, cache_dir, {"LORASWEEP_STORAGE": postgres_url})


def train_command(overrides: list[str], project_root: Path, cache_dir: Path) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "PROJECT_ROOT": str(project_root), "LORASWEEP_CACHE": str(cache_dir), "WANDB_MODE": "offline"}
    return [sys.executable, str(ROOT / "train.py"), *overrides], env


def wait_until(condition, what: str, sweep: subprocess.Popen, timeout_s: float = 900):
    """Polls `condition` while the sweep process runs; its output on failure."""
    deadline = time.time() + timeout_s
    while not (found := condition()):
        if sweep.poll() is not None or time.time() > deadline:
            sweep.kill()
            raise AssertionError(f"no {what} (sweep exit code {sweep.poll()}):\n{sweep.communicate()[0][-3000:]}")
        time.sleep(1)
    return found


def test_scancel_fails_one_trial_the_sweep_goes_on_and_the_same_command_reruns_it(tmp_path, cache_dir, tiny_model_dir, slurm):
    name = study_name()
    storage = f"journal:{tmp_path}/shared/{name}.log"
    overrides = ["-m", "experiment=quickstart", "task.val_size=0", "trainer.max_samples_seen=160", "trainer.logging_steps=2",
                 *SLURM, "hydra/sweeper=lorasweep", f"hydra.sweeper.study_name={name}", f"hydra.sweeper.storage={storage}",
                 "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2", "hydra.sweeper.max_failure_rate=0.5",
                 "hydra/sweeper/lorasweep_sampler=grid", "optimizer.lr=choice(1e-3, 2e-3)"]
    command, env = train_command(overrides, tmp_path, cache_dir)
    sweep = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # cancel trial 0's job once it trains
    metrics = wait_until(lambda: next(iter((tmp_path / "multirun").glob("*/*/trial-0/metrics.jsonl")), None), "trial 0 training", sweep)
    sweep_dir = metrics.parents[1]
    (folder,) = (sweep_dir / ".submitit").glob("*_0")  # trial 0 is the first job of the batch's job array
    subprocess.run(["scancel", folder.name], check=True)
    output, _ = sweep.communicate(timeout=900)
    assert sweep.returncode == 0, output[-3000:]
    study = optuna.load_study(study_name=name, storage=open_storage(storage))
    cancelled, other = study.get_trials()
    assert cancelled.state == TrialState.FAIL and "cancelled" in cancelled.user_attrs["reason"], cancelled.user_attrs
    assert other.state == TrialState.COMPLETE, other.user_attrs
    assert (sweep_dir / "trials.csv").is_file()

    run_train(overrides, tmp_path, cache_dir, timeout=1200)  # the same command again
    study = optuna.load_study(study_name=name, storage=open_storage(storage))
    trials = study.get_trials()
    assert len(trials) == 3 and trials[2].params == cancelled.params and trials[2].state == TrialState.COMPLETE
    assert trials[1].datetime_complete == other.datetime_complete  # not retrained



def test_worker_mode_two_array_tasks_share_one_study(tmp_path, cache_dir, tiny_model_dir, slurm):
    name = study_name()
    storage = f"journal:{tmp_path}/shared/{name}.log"
    overrides = [*TINY, f"hydra.sweeper.study_name={name}", f"hydra.sweeper.storage={storage}", "hydra.sweeper.n_trials=4",
                 "hydra/sweeper/lorasweep_sampler=random", "optimizer.lr=tag(log, interval(1e-4, 4e-3))"]
    _, env = train_command([], tmp_path, cache_dir)
    env["LORASWEEP_PYTHON"] = sys.executable
    submitted = subprocess.run(["sbatch", "--wait", "--array=0-1", "--cpus-per-task=1", f"--output={tmp_path}/worker-%a.out",
                                str(ROOT / "slurm" / "sweep_workers.sbatch"), *overrides],
                               cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    logs = "\n".join(p.read_text() for p in sorted(tmp_path.glob("worker-*.out")))
    assert submitted.returncode == 0, logs[-4000:]
    study = optuna.load_study(study_name=name, storage=open_storage(storage))
    assert_trained_once(study, 4)
    assert len(list((tmp_path / "multirun").glob("*/worker-*/trials.csv"))) == 2
