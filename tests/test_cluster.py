"""Sweeps on a real SLURM cluster (with accounting) and a real PostgreSQL server: train.py on the tiny
model, each trial a SLURM job on this machine. `.ci/services.sh` starts both; without them these tests
skip (and fail in CI). Kept to a few tiny trials, since every job pays Python's and torch's start."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from conftest import ROOT, run_train, signal_while_importing
from optuna.trial import TrialState

from runs.storage import open_storage

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

# 2 trials at once, 1 CPU each: the whole cluster is 2 CPUs in CI. timeout_min=10: submitit then counts every
# stop signal as the time limit (the launcher warns of it), so whether a signalled job is requeued depends on
# max_num_timeout alone
SLURM = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10",
         "hydra.launcher.partition=null", "hydra.launcher.gpus_per_node=null", "hydra.launcher.mem_gb=null"]
TINY = ["experiment=quickstart", "task.val_size=0", "trainer.max_samples_seen=48", "trainer.logging_steps=2"]


def study_name() -> str:
    """A fresh name: the PostgreSQL database outlives a test run."""
    return f"cluster-{uuid.uuid4().hex[:8]}"


def rank(storage: str, name: str) -> str:
    result = subprocess.run([sys.executable, "-m", "analysis", "rank", "--wide", "--storage", storage, "--study", name],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def assert_trained_once(study: optuna.Study, n_trials: int) -> None:
    """Exactly n_trials finished, no parameter set among them twice."""
    trials = study.get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == n_trials, [(t.number, t.state, t.user_attrs.get("reason")) for t in trials]
    params = [tuple(sorted(t.params.items())) for t in finished]
    assert len(set(params)) == len(params)


def assert_ranked(storage: str, name: str, n_trials: int) -> None:
    """analysis ranks the study from the storage alone."""
    ranked = rank(storage, name)
    assert all(f"trial-{number}" in ranked for number in range(n_trials)), ranked


def sweep_through_slurm(storage: str, n_trials: int, tmp_path: Path, cache_dir: Path, env: dict[str, str]) -> None:
    """n_trials trials, 2 at a time, as SLURM job arrays; every trial finished once, and analysis ranks the study."""
    name = study_name()
    overrides = ["-m", *TINY, *SLURM, "hydra/sweeper=lorasweep", f"hydra.sweeper.study_name={name}",
                 f"hydra.sweeper.n_trials={n_trials}", "hydra.sweeper.n_jobs=2", "hydra/sweeper/lorasweep_sampler=random",
                 "optimizer.lr=tag(log, interval(1e-4, 4e-3))"]
    run_train(overrides, tmp_path, cache_dir, timeout=1800, extra_env=env)
    study = optuna.load_study(study_name=name, storage=open_storage(storage))
    assert_trained_once(study, n_trials)
    assert_ranked(storage, name, n_trials)
    (sweep_dir,) = (tmp_path / "multirun").glob("*/*")
    assert (sweep_dir / "trials.csv").is_file()
    assert list((sweep_dir / ".submitit").iterdir())  # the jobs went through SLURM


def test_a_sweep_through_submitit_slurm_on_a_journal_file(tmp_path, cache_dir, slurm, tiny_model_dir):
    storage = f"journal:{tmp_path}/shared/study.log"
    sweep_through_slurm(storage, 4, tmp_path, cache_dir, {"LORASWEEP_STORAGE": storage})


def test_a_sweep_through_submitit_slurm_on_postgresql(tmp_path, cache_dir, slurm, postgres_url, tiny_model_dir):
    """6 trials, as the issue asks. The password comes from PGPASSFILE: the URL that jobs inherit holds none."""
    sweep_through_slurm(postgres_url, 6, tmp_path, cache_dir, {"LORASWEEP_STORAGE": postgres_url})


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
    # 150 steps, about 7 s on one idle core: trial 0 still trains when scancel lands, a second or two after its first log
    overrides = ["-m", "experiment=quickstart", "task.val_size=0", "trainer.max_samples_seen=1200", "trainer.logging_steps=2",
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
    assert cancelled.state != TrialState.COMPLETE, "trial 0 ended before scancel landed: train longer (trainer.max_samples_seen)"
    assert cancelled.state == TrialState.FAIL and "cancelled" in cancelled.user_attrs["reason"], cancelled.user_attrs
    assert other.state == TrialState.COMPLETE, other.user_attrs
    assert (sweep_dir / "trials.csv").is_file()

    run_train(overrides, tmp_path, cache_dir, timeout=1200)  # the same command again
    study = optuna.load_study(study_name=name, storage=open_storage(storage))
    trials = study.get_trials()
    assert len(trials) == 3 and trials[2].params == cancelled.params and trials[2].state == TrialState.COMPLETE
    assert trials[1].datetime_complete == other.datetime_complete  # not retrained



def test_worker_mode_two_array_tasks_share_one_study_on_postgresql(tmp_path, cache_dir, tiny_model_dir, slurm, postgres_url):
    """6 trials by 2 array tasks on this one machine, where the sweep's lock keeps the count exact."""
    name = study_name()
    overrides = [*TINY, f"hydra.sweeper.study_name={name}", f"hydra.sweeper.storage={postgres_url}", "hydra.sweeper.n_trials=6",
                 "hydra/sweeper/lorasweep_sampler=random", "optimizer.lr=tag(log, interval(1e-4, 4e-3))"]
    _, env = train_command([], tmp_path, cache_dir)
    env["LORASWEEP_PYTHON"] = sys.executable
    submitted = subprocess.run(["sbatch", "--wait", "--array=0-1", "--cpus-per-task=1", f"--output={tmp_path}/worker-%a.out",
                                str(ROOT / "slurm" / "sweep_workers.sbatch"), *overrides],
                               cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    logs = "\n".join(p.read_text() for p in sorted(tmp_path.glob("worker-*.out")))
    assert submitted.returncode == 0, logs[-4000:]
    study = optuna.load_study(study_name=name, storage=open_storage(postgres_url))
    assert_trained_once(study, 6)
    assert_ranked(postgres_url, name, 6)
    assert len(list((tmp_path / "multirun").glob("*/worker-*/trials.csv"))) == 2


def test_a_trial_past_its_time_limit_is_requeued_and_resumes_the_same_curve(tmp_path, cache_dir, tiny_model_dir, slurm):
    """Once the trial trains, its job's time limit is cut to the first whole minute at least 60 s away:
    with signal_delay_s=120 the job is then inside its warning window, so SLURM signals it at its next
    time-limit check (every 30 s). The trial checkpoints, submitit requeues the job, the test gives the
    waiting job a long limit again (a requeued job keeps its limit), and the requeued job resumes into
    the same run dir. The training (1500 steps, about 67 s on one idle core, 0.045 s a step) outlasts SLURM's 30 s;
    `.ci/services.sh` shortens SLURM's wait before a requeued job starts again."""
    name = study_name()
    storage = f"journal:{tmp_path}/shared/{name}.log"
    training = ["experiment=quickstart", "task.val_size=0", "trainer.max_samples_seen=12000", "trainer.logging_steps=4",
                "trainer.save_steps=1000"]
    reference = tmp_path / "reference"
    command, env = train_command([*training, "optimizer.lr=2e-3", f"hydra.run.dir={reference}"], tmp_path, cache_dir)
    uninterrupted_run = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    overrides = ["-m", *training, *SLURM, "hydra.launcher.signal_delay_s=120", "hydra.launcher.max_num_timeout=1",
                 "hydra/sweeper=lorasweep", f"hydra.sweeper.study_name={name}", f"hydra.sweeper.storage={storage}",
                 "hydra.sweeper.n_trials=1", "hydra.sweeper.ablations=null", "optimizer.lr=choice(2e-3)"]
    command, env = train_command(overrides, tmp_path, cache_dir)
    sweep = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        metrics = wait_until(lambda: next(iter((tmp_path / "multirun").glob("*/*/trial-0/metrics.jsonl")), None), "trial 0 training", sweep)
        run_dir = metrics.parent
        (folder,) = [p for p in (run_dir.parent / ".submitit").iterdir() if p.name.isdigit()]  # one job: named by its id
        job_id = folder.name
        elapsed = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%M"], capture_output=True, text=True, check=True).stdout
        seconds = sum(int(part) * 60**power for power, part in enumerate(reversed(elapsed.strip().split(":"))))
        subprocess.run(["scontrol", "update", f"JobId={job_id}", f"TimeLimit={-(-(seconds + 60) // 60)}"], check=True)
        status = wait_until(lambda: (run_dir / "result.json").is_file() and json.loads((run_dir / "result.json").read_text())["status"],
                            "result after SLURM's signal", sweep, timeout_s=300)
        assert status == "interrupted", f"the trial ended {status} before SLURM's signal: train longer (trainer.max_samples_seen)"
        # an hour, so that no second signal comes however busy this machine is
        subprocess.run(["scontrol", "update", f"JobId={job_id}", "TimeLimit=60"], check=True)
        checkpoint = f"checkpoint-{json.loads((run_dir / 'result.json').read_text())['seen']['steps']}"
        output, _ = sweep.communicate(timeout=1800)
        assert sweep.returncode == 0, output[-3000:]
        _, stderr = uninterrupted_run.communicate(timeout=1800)
        assert uninterrupted_run.returncode == 0, stderr[-3000:]
    finally:
        for process in (sweep, uninterrupted_run):
            process.kill()

    (trial,) = optuna.load_study(study_name=name, storage=open_storage(storage)).get_trials()
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("reason")
    states = subprocess.run(["sacct", "-j", job_id, "--duplicates", "-X", "-n", "-o", "State"], capture_output=True, text=True, check=True).stdout
    assert states.split() == ["REQUEUED", "COMPLETED"], states  # requeued once, by submitit on SLURM's signal
    assert (run_dir / checkpoint).is_dir()  # saved on the signal, in the run dir the requeued job resumed in
    log = (run_dir / "train.log").read_text()  # both jobs' log lines, the recipe's INFO lines among them
    assert f"resuming from {run_dir / checkpoint}" in log and log.count("[sft.recipe.train][INFO] - data: ") == 2, log
    resumed, uninterrupted = read_jsonl(run_dir / "metrics.jsonl"), read_jsonl(reference / "metrics.jsonl")
    assert [m["step"] for m in resumed] == [m["step"] for m in uninterrupted]  # continued, no step twice
    assert [m["loss"] for m in resumed] == pytest.approx([m["loss"] for m in uninterrupted], rel=1e-5)


@pytest.mark.parametrize("requeues", [1, 0])
def test_a_stop_signal_while_the_job_imports_is_the_trials_reason_and_the_job_requeued(tmp_path, cache_dir, tiny_model_dir, slurm, requeues):
    """submitit's USR2 (what SLURM sends before a time limit) lands as the trial's job starts to import
    transformers: the job writes result.json "interrupted" with that signal as the reason; submitit
    requeues it and the requeued job trains the trial, or, with no requeue left, the trial fails with
    that reason (with timeout_min <= 10 submitit counts every signal as the time limit)."""
    name = study_name()
    storage = f"journal:{tmp_path}/shared/{name}.log"
    hook = signal_while_importing(tmp_path / "hook", "transformers", "SIGUSR2")  # in the first job only
    overrides = ["-m", *TINY, *SLURM, f"hydra.launcher.max_num_timeout={requeues}", f"hydra.launcher.setup=['export PYTHONPATH={hook}']",
                 "hydra/sweeper=lorasweep", f"hydra.sweeper.study_name={name}", f"hydra.sweeper.storage={storage}",
                 "hydra.sweeper.n_trials=1", "hydra.sweeper.max_failure_rate=1.0", "hydra.sweeper.ablations=null",
                 "optimizer.lr=choice(2e-3)"]
    command, env = train_command(overrides, tmp_path, cache_dir)
    sweep = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        result_file = wait_until(lambda: next(iter((tmp_path / "multirun").glob("*/*/trial-0/result.json")), None),
                                 "result.json of the first job", sweep)
        first = json.loads(result_file.read_text())
        output, _ = sweep.communicate(timeout=1200)
    finally:
        sweep.kill()
    assert first["status"] == "interrupted", first
    assert first["reason"].startswith("stopped by SIGUSR2 before training started"), first
    assert sweep.returncode == 0, output[-3000:]
    (trial,) = optuna.load_study(study_name=name, storage=open_storage(storage)).get_trials()
    (folder,) = [p for p in (result_file.parents[1] / ".submitit").iterdir() if p.name.isdigit()]
    states = subprocess.run(["sacct", "-j", folder.name, "--duplicates", "-X", "-n", "-o", "State"],
                            capture_output=True, text=True, check=True).stdout
    if requeues:
        assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("reason")
        assert states.split() == ["REQUEUED", "COMPLETED"], states
    else:
        assert trial.state == TrialState.FAIL and trial.user_attrs["reason"] == first["reason"], trial.user_attrs
        assert states.split() == ["COMPLETED"], states


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]
