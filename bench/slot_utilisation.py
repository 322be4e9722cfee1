"""Slot utilisation of a 2-slot study with pruning: busy time / (slots x wall), driver mode vs worker mode.

    python -m bench.slot_utilisation [--n-trials 16] [--steps 20] [--sleep-s 0.3]

Driver mode is one sweep process launching 2 trials at a time (`hydra.sweeper.n_jobs=2`, here through
the joblib launcher; submitit_slurm batches the same way): a batch ends when its slowest trial ends, so
the slot of a pruned trial waits. Worker mode is 2 sweep processes on the shared study, each running one
trial at a time (what `slurm/sweep_workers.sbatch` starts as a job array): a slot takes the next trial as
soon as its last one ends. The trials are the tests' small app (tests/sweeper_app) sleeping `--sleep-s`
per step, with the median pruner, so the figure measures the scheduling and not the machine's speed.
Busy time is the sum of the jobs' own run times (result.json `elapsed`, from the job's start to its
result: a pruned trial's slot is free once it stops); wall is from the first trial's start to the last
trial's end in the study, so the sweep's own work between trials counts as idle; in worker mode the median gap
says how much of it a trial costs. Everything goes to a temporary dir.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
from optuna.trial import TrialState
from rich.console import Console
from rich.table import Table

from runs import attrs

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "tests" / "sweeper_app" / "app.py"
SLOTS = 2


def sweep_command(storage: str, n_trials: int, steps: int, sleep_s: float, n_jobs: int, out: Path) -> list[str]:
    return [
        sys.executable, str(APP), "-m", "hydra/sweeper=lorasweep", f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=slots", f"hydra.sweeper.n_trials={n_trials}", f"hydra.sweeper.n_jobs={n_jobs}",
        "hydra.sweeper.seed=0", "hydra/sweeper/lorasweep_pruner=median", "hydra.sweeper.pruner.n_startup_trials=2",
        "x=interval(-1, 1)", f"steps={steps}", f"sleep_s={sleep_s}", f"hydra.sweep.dir={out}",
        *(["hydra/launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}"] if n_jobs > 1 else []),
    ]


def utilisation(storage: str, worker: bool) -> dict[str, float | None]:
    study = optuna.load_study(study_name="slots", storage=storage)
    trials = [t for t in study.get_trials() if t.state.is_finished()]
    # each job's own run time (result.json `elapsed`): a pruned trial's slot is free once it stops
    elapsed = {t.number: sum(json.loads((Path(d) / "result.json").read_text())["elapsed"] for d in t.user_attrs[attrs.RUN_DIRS])
               for t in trials}
    wall = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    pruned = sum(t.state == TrialState.PRUNED for t in trials)
    return {"trials": len(trials), "pruned": pruned, "gap_s": median_gap(trials, elapsed) if worker else None, "busy_s": sum(elapsed.values()), "wall_s": wall,
            "utilisation": sum(elapsed.values()) / (SLOTS * wall)}


def median_gap(trials: list[optuna.trial.FrozenTrial], elapsed: dict[int, float]) -> float:
    """In worker mode, a slot's median time per trial outside the job's own clock: from one trial's
    start (ask) to the next trial's start in the same process, less the first job's `elapsed` (telling
    Optuna, asking, Hydra's composition and job set-up). A driver runs a batch's trials side by side,
    so there the figure would mean nothing."""
    gaps = []
    for process in {t.user_attrs[attrs.PROCESS] for t in trials}:
        own = sorted((t for t in trials if t.user_attrs[attrs.PROCESS] == process), key=lambda t: t.datetime_start)
        gaps += [(after.datetime_start - before.datetime_start).total_seconds() - elapsed[before.number]
                 for before, after in zip(own, own[1:])]
    return statistics.median(gaps)


def run_mode(mode: str, workdir: Path, n_trials: int, steps: int, sleep_s: float) -> dict[str, float | None]:
    storage = f"sqlite:///{workdir / mode}.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if mode == "driver":
        commands = [sweep_command(storage, n_trials, steps, sleep_s, SLOTS, workdir / mode)]
    else:
        commands = [sweep_command(storage, n_trials, steps, sleep_s, 1, workdir / f"{mode}-{i}") for i in range(SLOTS)]
    processes = [subprocess.Popen(c, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for c in commands]
    for process in processes:
        _, stderr = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"{mode} sweep failed:\n{stderr[-2000:]}")
    return utilisation(storage, worker=mode == "worker")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-trials", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--sleep-s", type=float, default=0.3)
    args = parser.parse_args()
    table = Table(title=f"{SLOTS} slots, {args.n_trials} trials of {args.steps} steps x {args.sleep_s} s, median pruner")
    for column in ("mode", "trials", "pruned", "busy s", "wall s", "utilisation", "median gap s (worker)"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as workdir:
        for mode in ("driver", "worker"):
            figures = run_mode(mode, Path(workdir), args.n_trials, args.steps, args.sleep_s)
            table.add_row(mode, str(figures["trials"]), str(figures["pruned"]), f"{figures['busy_s']:.1f}",
                          f"{figures['wall_s']:.1f}", f"{figures['utilisation']:.0%}", "-" if figures["gap_s"] is None else f"{figures['gap_s']:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
