"""What pruning saves and whether it keeps the answer: the same `sweep=notes_quickstart` study run with a
pruner (the notes' default: racing) and without one, on the tiny model (CPU), per data set and seed.

    python -m bench.sweep_cost                                   # demo and digits data, seeds 0 1 2, 12 trials
    python -m bench.sweep_cost --datasets demo --n-trials 30 --sampler random hydra.sweeper.ablations=null \
        trainer.logging_steps=1                                  # sampled trials only, a report every step
    python -m bench.sweep_cost --pruner successive_halving_budget    # another pruner against none
    python -m bench.sweep_cost --pruner-set margin=0.01              # a setting of the compared pruner only

A seed is the data seed (task.data_seed: the study's sample stream) and the sampler's seed at once. Two
data sets: the demo consultations (data/) and `digits`, a generated task (sort five digits) written into
the workdir, whose loss depends on the learning rate and schedule differently from the demo text.
With TPE the two studies sample different parameters once a trial is pruned (TPE learns from pruned
trials too); the random sampler draws the same parameters in both, so only the pruner's decisions differ.

Per data set and seed it prints the samples trained summed over all trials, pruned and unpruned, and
their ratio; each study's winner (best completed trial) and its objective; the seed spread (std of the
baseline's objective over --spread-seeds trainer seeds, on that stream); whether the two winners agree
within it; and each study's time (the sum of its trials' durations, so a study resumed from --workdir is
timed as it ran). Studies already finished in --workdir are read, not run again.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.table import Table

from runs import attrs
from runs.result import OBJECTIVE, SEEN, read_result

ROOT = Path(__file__).resolve().parents[1]
DIGITS_ROWS = 600


@dataclass
class StudyCost:
    samples: int  # trained, summed over all trials
    best: float | None
    winner: str
    pruned: int
    time_s: float  # the trials' durations, summed


def trial_samples(trial: FrozenTrial) -> int:
    """Samples the trial trained: its run dirs' result.json `seen`, else its last reported step."""
    total = 0
    for run_dir in trial.user_attrs.get(attrs.RUN_DIRS, []):
        result, _ = read_result(Path(run_dir))
        if result:
            total += int(result.get(SEEN, {}).get("samples") or 0)
    if total == 0 and trial.intermediate_values:
        total = int(max(trial.intermediate_values))
    return total


def trial_name(trial: FrozenTrial) -> str:
    ablation = trial.user_attrs.get(attrs.ABLATION)
    return f"{trial.number} ({ablation})" if ablation else str(trial.number)


def study_cost(study: optuna.Study) -> StudyCost:
    trials = study.get_trials(deepcopy=False)
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    best = min(completed, key=lambda t: t.value, default=None)
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials if t.datetime_complete and t.datetime_start]
    return StudyCost(
        samples=sum(trial_samples(t) for t in trials),
        best=best.value if best else None,
        winner=trial_name(best) if best else "-",
        pruned=sum(1 for t in trials if t.state == TrialState.PRUNED),
        time_s=sum(durations),
    )


def write_digits(directory: Path) -> Path:
    """The `digits` data set: sort five digits, 600 alpaca rows with a dataset_info.json entry."""
    generator = random.Random(0)
    rows = []
    for _ in range(DIGITS_ROWS):
        digits = [generator.randrange(10) for _ in range(5)]
        rows.append({"instruction": "Sort the digits in ascending order.", "input": " ".join(map(str, digits)),
                     "output": " ".join(map(str, sorted(digits)))})
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "digits.json").write_text(json.dumps(rows))
    (directory / "dataset_info.json").write_text(json.dumps({"digits": {"file_name": "digits.json"}}))
    return directory


def data_overrides(dataset: str, workdir: Path) -> list[str]:
    if dataset == "demo":
        return []
    return ["task.dataset=[digits]", f"task.dataset_dir={write_digits(workdir / 'digits')}"]


def environment(workdir: Path, cache: Path) -> dict[str, str]:
    return {**os.environ, "PROJECT_ROOT": str(workdir), "LORASWEEP_CACHE": str(cache), "WANDB_MODE": "disabled"}


def run(command: list[str], env: dict[str, str], what: str) -> None:
    finished = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if finished.returncode != 0:
        raise SystemExit(f"{what} failed ({finished.returncode}):\n{finished.stderr[-3000:]}")


def run_study(workdir: Path, cache: Path, name: str, pruner: str, overrides: list[str]) -> StudyCost:
    command = [sys.executable, str(ROOT / "train.py"), "sweep=notes_quickstart", "experiment=quickstart",
               f"hydra/sweeper/lorasweep_pruner={pruner}", f"hydra.sweeper.study_name={name}", *overrides]
    run(command, environment(workdir, cache), f"sweep {name}")
    return study_cost(optuna.load_study(study_name=name, storage=f"sqlite:///{workdir}/sweeps/{name}.db"))


def seed_spread(workdir: Path, cache: Path, name: str, seeds: int, overrides: list[str]) -> float | None:
    """Std of the baseline's objective over trainer seeds 0..seeds-1, each a plain run (no sweep)."""
    values = []
    for seed in range(seeds):
        run_dir = workdir / "spread" / f"{name}-trainer{seed}"
        if read_result(run_dir)[0] is None:
            command = [sys.executable, str(ROOT / "train.py"), "experiment=quickstart", "trainer.max_samples_seen=320",
                       "task.val_size=0", f"trainer.seed={seed}", f"hydra.run.dir={run_dir}", *overrides]
            run(command, environment(workdir, cache), f"seed-spread run {run_dir.name}")
        values.append(float(read_result(run_dir)[0][OBJECTIVE]))
    return statistics.stdev(values) if len(values) > 1 else None


def show(value: float | None, digits: str = ".3f") -> str:
    return "-" if value is None else format(value, digits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["demo", "digits"], choices=["demo", "digits"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="data and sampler seeds")
    parser.add_argument("--n-trials", type=int, default=12)
    parser.add_argument("--sampler", default="tpe", help="hydra/sweeper/lorasweep_sampler (tpe, random, ...)")
    parser.add_argument("--pruner", default="racing", help="the pruner compared with none")
    parser.add_argument("--pruner-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting of the compared pruner only, e.g. margin=0.02 (repeatable)")
    parser.add_argument("--spread-seeds", type=int, default=3, help="trainer seeds for the seed spread")
    parser.add_argument("--workdir", type=Path, help="project root for studies and run dirs (default: a temp dir)")
    parser.add_argument("--cache", type=Path, help="LORASWEEP_CACHE (tiny model, tokenized data); default: in workdir")
    parser.add_argument("overrides", nargs="*", help="more train.py overrides, e.g. hydra.sweeper.ablations=null")
    args = parser.parse_args()
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="sweep_cost_"))).resolve()
    cache = args.cache or workdir / "cache"
    settings = "-".join(setting.replace("=", "") for setting in args.pruner_set)
    table = Table(title=f"sweep=notes_quickstart, {args.n_trials} trials, {args.sampler} sampler, {args.pruner} vs none, "
                        f"tiny model; {platform.machine()}, {os.cpu_count()} CPU cores, load {os.getloadavg()[0]:.1f} at the end")
    for column in ("data", "seed", f"samples {args.pruner}", "samples none", "ratio", "pruned", f"winner {args.pruner}",
                   "winner none", "seed spread", "agree", f"time {args.pruner} s", "time none s"):
        table.add_column(column, justify="right")
    ratios: dict[str, list[float]] = {}
    for dataset in args.datasets:
        for seed in args.seeds:
            common = [f"task.data_seed={seed}", f"hydra.sweeper.seed={seed}", f"hydra.sweeper.n_trials={args.n_trials}",
                      f"hydra/sweeper/lorasweep_sampler={args.sampler}", *data_overrides(dataset, workdir), *args.overrides]
            stem = f"cost-{dataset}-{args.sampler}-n{args.n_trials}"
            pruned = run_study(workdir, cache, f"{stem}-{args.pruner}{settings}-seed{seed}", args.pruner,
                               [*common, *(f"hydra.sweeper.pruner.{setting}" for setting in args.pruner_set)])
            unpruned = run_study(workdir, cache, f"{stem}-none-seed{seed}", "none", common)
            spread = seed_spread(workdir, cache, f"{dataset}-seed{seed}", args.spread_seeds,
                                 [f"task.data_seed={seed}", *data_overrides(dataset, workdir)])
            ratio = pruned.samples / unpruned.samples
            ratios.setdefault(dataset, []).append(ratio)
            gap = None if pruned.best is None or unpruned.best is None else pruned.best - unpruned.best
            agree = "-" if gap is None or spread is None else (
                "yes" if abs(gap) <= spread else f"no: {args.pruner} {'better' if gap < 0 else 'worse'} by {abs(gap):.4f}")
            table.add_row(dataset, str(seed), str(pruned.samples), str(unpruned.samples), f"{ratio:.2f}x", str(pruned.pruned),
                          f"{pruned.winner}: {show(pruned.best, '.4f')}", f"{unpruned.winner}: {show(unpruned.best, '.4f')}",
                          show(spread, ".4f"), agree, f"{pruned.time_s:.0f}", f"{unpruned.time_s:.0f}")
    console = Console(width=200)
    console.print(table)
    for dataset, values in ratios.items():
        console.print(f"{dataset}: samples {args.pruner} / none = {statistics.fmean(values):.2f}x mean "
                      f"({min(values):.2f}-{max(values):.2f}x)")
    console.print(f"studies and run dirs: {workdir}")


if __name__ == "__main__":
    main()
