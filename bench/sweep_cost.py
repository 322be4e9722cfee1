"""What pruning saves: the same `sweep=notes_quickstart` study (space, budget, sampler seed) run with the
notes' default pruner (successive halving, first rung at 5% of the budget) and without one, on the tiny
model (CPU), for several sampler seeds.

    python -m bench.sweep_cost                     # seeds 0 1 2, 12 trials each, both pruner settings
    python -m bench.sweep_cost --seeds 0 --n-trials 20 hydra.sweeper.ablations=null   # sampler trials only
    python -m bench.sweep_cost --pruner hyperband --pruner-set min_resource=32     # a pruner and its settings

With TPE (the default sampler) the two studies sample different parameters after the first pruned trial,
since TPE learns from pruned trials too: their bests then differ by the luck of two searches as much as by
pruning. The random sampler draws the same parameters in both, so only the pruner's decisions differ:

    python -m bench.sweep_cost --pruner successive_halving --pruner-set min_resource=16 --n-trials 30 \
        hydra.sweeper.ablations=null hydra/sweeper/lorasweep_sampler=random

The ablation trials (baseline and each remedy alone) run to the end in both settings, so they cost the
same with and without the pruner; drop them to see the pruner's effect on the sampled trials alone.
Per run it prints the samples trained summed over all trials, the best objective, and the samples
trained until a trial first came within 1% of that run's best; then the ratios pruned / unpruned.
Everything goes to a temporary project root (or --workdir), never into the repo's outputs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.table import Table

from runs import attrs
from runs.result import SEEN, read_result

ROOT = Path(__file__).resolve().parents[1]
WITHIN = 0.01  # "reached the best" = within 1% of it


@dataclass
class StudyCost:
    pruner: str
    seed: int
    samples: int  # trained, summed over all trials
    best: float | None
    samples_to_best: int | None  # trained until a trial first came within 1% of `best`
    pruned: int
    wall_s: float


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


def study_cost(study: optuna.Study, pruner: str, seed: int, wall_s: float) -> StudyCost:
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    completed = [t.value for t in trials if t.state == TrialState.COMPLETE]
    best = min(completed) if completed else None
    spent, samples_to_best = 0, None
    for trial in trials:
        spent += trial_samples(trial)
        reached = trial.state == TrialState.COMPLETE and best is not None and trial.value <= best + abs(best) * WITHIN
        if reached and samples_to_best is None:
            samples_to_best = spent
    pruned = sum(1 for t in trials if t.state == TrialState.PRUNED)
    return StudyCost(pruner, seed, spent, best, samples_to_best, pruned, wall_s)


def run_study(workdir: Path, cache: Path, pruner: str, seed: int, n_trials: int, extra: list[str]) -> StudyCost:
    name = f"cost-{pruner}-seed{seed}"
    command = [
        sys.executable, str(ROOT / "train.py"), "sweep=notes_quickstart", "experiment=quickstart",
        f"hydra/sweeper/lorasweep_pruner={pruner}", f"hydra.sweeper.seed={seed}", f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.sweeper.study_name={name}", *extra,
    ]
    env = {**os.environ, "PROJECT_ROOT": str(workdir), "LORASWEEP_CACHE": str(cache), "WANDB_MODE": "disabled"}
    started = time.perf_counter()
    finished = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall_s = time.perf_counter() - started
    if finished.returncode != 0:
        raise SystemExit(f"sweep {name} failed ({finished.returncode}):\n{finished.stderr[-3000:]}")
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{workdir}/sweeps/{name}.db")
    return study_cost(study, pruner, seed, wall_s)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def show(value: float | None, digits: str = ".3f") -> str:
    return "-" if value is None else format(value, digits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="sampler seeds")
    parser.add_argument("--n-trials", type=int, default=12)
    parser.add_argument("--pruner", default="successive_halving_budget",
                        help="the pruner compared with none (successive_halving_budget, median, successive_halving, hyperband, patient)")
    parser.add_argument("--pruner-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting of the compared pruner only, e.g. min_resource=32 (repeatable)")
    parser.add_argument("--workdir", type=Path, help="project root for studies and run dirs (default: a temp dir)")
    parser.add_argument("--cache", type=Path, help="LORASWEEP_CACHE (tiny model, tokenized data); default: in workdir")
    parser.add_argument("overrides", nargs="*", help="more train.py overrides, e.g. trainer.max_samples_seen=640")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sweep_cost_"))
    cache = args.cache or workdir / "cache"

    table = Table(title=f"sweep=notes_quickstart, {args.n_trials} trials, tiny model (CPU)")
    for column in ("seed", "pruner", "samples trained", "best objective", "samples to within 1%", "pruned", "wall s"):
        table.add_column(column, justify="right")
    ratios = []
    for seed in args.seeds:
        pruner_overrides = [f"hydra.sweeper.pruner.{setting}" for setting in args.pruner_set]
        costs = {
            args.pruner: run_study(workdir, cache, args.pruner, seed, args.n_trials, [*args.overrides, *pruner_overrides]),
            "none": run_study(workdir, cache, "none", seed, args.n_trials, args.overrides),
        }
        for cost in costs.values():
            table.add_row(str(seed), cost.pruner, str(cost.samples), show(cost.best, ".4f"), str(cost.samples_to_best),
                          str(cost.pruned), f"{cost.wall_s:.0f}")
        with_pruner, without = costs[args.pruner], costs["none"]
        ratios.append((ratio(with_pruner.samples, without.samples),
                       ratio(with_pruner.samples_to_best, without.samples_to_best),
                       ratio(with_pruner.best, without.best)))
    console = Console()
    console.print(table)
    summary = Table(title="pruned / unpruned")
    for column in ("seed", "samples trained", "samples to within 1%", "best objective"):
        summary.add_column(column, justify="right")
    for seed, (samples, to_best, best) in zip(args.seeds, ratios):
        summary.add_row(str(seed), show(samples), show(to_best), show(best, ".4f"))
    columns = list(zip(*ratios))
    means = [statistics.fmean([v for v in column if v is not None]) if any(v is not None for v in column) else None
             for column in columns]
    summary.add_row("mean", show(means[0]), show(means[1]), show(means[2], ".4f"))
    console.print(summary)
    console.print(f"studies and run dirs: {workdir}")


if __name__ == "__main__":
    main()
