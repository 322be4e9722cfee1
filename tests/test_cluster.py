"""Sweeps on a real SLURM cluster (with accounting) and a real PostgreSQL server: train.py on the tiny
model, each trial a SLURM job on this machine. `.ci/services.sh` starts both; without them these tests
skip (and fail in CI). Kept to a few tiny trials, since every job pays Python's and torch's start."""
from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
from conftest import ROOT, run_train
from optuna.trial import TrialState

from sweeper.storage import open_storage

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


@pytest.mark.parametrize("backend", ["journal", "postgresql"])
def test_a_sweep_through_submitit_slurm_finishes_every_trial(backend, tmp_path, cache_dir, tiny_model_dir, slurm, request):
    name = study_name()
    if backend == "journal":
        storage, env = f"journal:{tmp_path}/shared/{name}.log", {}
    else:
        storage = request.getfixturevalue("postgres_url")
        env = {"LORASWEEP_STORAGE": storage}
    overrides = ["-m", *TINY, *SLURM, "hydra/sweeper=lorasweep", f"hydra.sweeper.study_name={name}",
                 "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2", "hydra/sweeper/sampler=random",
                 "optimizer.lr=tag(log, interval(1e-4, 4e-3))"]
    if backend == "journal":
        overrides.append(f"hydra.sweeper.storage={storage}")
    run_train(overrides, tmp_path, cache_dir, timeout=1200, extra_env=env)

    study = optuna.load_study(study_name=name, storage=open_storage(storage))
    assert_trained_once(study, 4)
    print(rank(storage, name))
    (sweep_dir,) = (tmp_path / "multirun").glob("*/*")
    assert (sweep_dir / "trials.csv").is_file()
    assert list((sweep_dir / ".submitit").iterdir())  # the jobs went through SLURM
