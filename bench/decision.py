"""How often the ranking picks the right run: a sweep with a held-out split, its runs ranked by smoothed
training loss (what `python -m analysis rank` does), then checked against their held-out eval loss.

    python -m bench.decision                                   # the demo data (demo_yiliao), tiny model, CPU
    python -m bench.decision --dataset my_set --dataset-dir /path/to/data   # any dataset_info.json entry
    python -m bench.decision --sweep-dir multirun/DATE/TIME     # score a sweep that already ran
    python -m bench.decision --trials 12 --repeats 3 --samples 320

Prints, over the runs ranked together (group A of the ranking):
- Spearman correlation of smoothed training loss and eval loss, over all of them and over the better
  half by eval loss (the runs a user chooses among);
- the regret of the run ranked first: its eval loss minus the best eval loss, in units of the seed
  spread of the eval loss (std over repeats of one setting, pooled); <= 1 means within training noise;
- how many runs the ranking set apart as not comparable (another data stream), could not rank, or
  could not read (a run with one logged loss point, say);
- the cost: samples trained over all runs (result.json samples_trained), and how many were stopped early.
Each setting runs `--repeats` times (hydra.sweeper.repeats), which gives the seed spread. No pruning by
default, so every run reaches its budget and is evaluated at the end; `--pruner racing` runs the same
sweep with the notes' pruner (a stopped run has no eval loss at its end and is not scored), at its cost.
Everything goes to a temporary project root (or --workdir), never into the repo's outputs. It prints figures; it asserts nothing.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas

from analysis import load_runs, rank_runs
from analysis.ranking import RankedRow, pooled_spread
from runs.result import PRUNED, SAMPLES_TRAINED

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Decision:
    """The figures of one scored sweep."""

    compared: int
    set_apart: int
    unranked: int
    skipped: list[str]
    spearman_all: float | None
    spearman_better_half: float | None
    eval_rank_of_first: int | None
    regret: float | None
    eval_seed_spread: float | None
    samples_trained: int  # over every run read, stopped ones included
    stopped_early: int

    @property
    def regret_in_spreads(self) -> float | None:
        if self.regret is None or not self.eval_seed_spread:
            return None
        return self.regret / self.eval_seed_spread


def run_sweep(workdir: Path, cache: Path, args: argparse.Namespace) -> Path:
    """The notes sweep on the tiny model with a held-out split (unpruned by default); returns its sweep dir."""
    sweep_dir = workdir / "sweep"
    command = [
        sys.executable, str(ROOT / "train.py"), "sweep=notes_quickstart", "experiment=quickstart",
        f"hydra/sweeper/lorasweep_pruner={args.pruner}", f"hydra.sweeper.n_trials={args.trials}", f"hydra.sweeper.repeats={args.repeats}",
        f"hydra.sweeper.seed={args.seed}", "hydra.sweeper.study_name=decision", f"hydra.sweep.dir={sweep_dir}",
        f"task.dataset=[{args.dataset}]", f"task.val_size={args.val_size}", f"task.max_samples={args.max_samples}",
        f"trainer.max_samples_seen={args.samples}", "trainer.eval_steps=100000",  # evaluated once, at the end
        *([f"task.dataset_dir={args.dataset_dir}"] if args.dataset_dir else []), *args.overrides,
    ]
    env = {**os.environ, "PROJECT_ROOT": str(workdir), "LORASWEEP_CACHE": str(cache), "WANDB_MODE": "disabled"}
    finished = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if finished.returncode != 0:
        raise SystemExit(f"bench.decision: the sweep failed ({finished.returncode}):\n{finished.stderr[-3000:]}")
    return sweep_dir


def mean_eval(row: RankedRow) -> float | None:
    values = [run.eval_loss for run in row.members if run.eval_loss is not None]
    return statistics.fmean(values) if values else None


def spearman(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 3:
        return None
    value = pandas.Series(xs).corr(pandas.Series(ys), method="spearman")
    return None if math.isnan(value) else float(value)


def score(sweep_dir: Path) -> Decision:
    """Rank the sweep's runs as `python -m analysis rank` does and compare with their eval losses."""
    loaded = load_runs([str(sweep_dir)])
    ranking = rank_runs(loaded.runs)
    rows = [row for row in ranking.main_rows if row.value is not None and mean_eval(row) is not None]
    set_apart = sum(len(row.members) for row in ranking.rows if row.group != "A")
    unranked = sum(len(row.members) for row in ranking.main_rows if row.value is None)
    evals = [mean_eval(row) for row in rows]
    better = sorted(range(len(rows)), key=lambda index: evals[index])[: math.ceil(len(rows) / 2)]
    first = min(range(len(rows)), key=lambda index: rows[index].rank, default=None)
    eval_spread = pooled_spread([[run.eval_loss for run in row.members if run.eval_loss is not None] for row in rows])
    return Decision(
        compared=len(rows),
        set_apart=set_apart,
        unranked=unranked,
        skipped=loaded.problems,
        spearman_all=spearman([row.value for row in rows], evals),
        spearman_better_half=spearman([rows[index].value for index in better], [evals[index] for index in better]),
        eval_rank_of_first=None if first is None else sorted(evals).index(evals[first]) + 1,
        regret=None if first is None else evals[first] - min(evals),
        eval_seed_spread=eval_spread,
        samples_trained=sum(int((run.result or {}).get(SAMPLES_TRAINED) or 0) for run in loaded.runs),
        stopped_early=sum(1 for run in loaded.runs if run.status == PRUNED),
    )


def show(value: float | int | None, digits: str = ".3f") -> str:
    return "-" if value is None else format(value, digits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="demo_yiliao", help="a dataset_info.json entry (default %(default)s)")
    parser.add_argument("--dataset-dir", help="the folder of its dataset_info.json (default: the demo data, data/)")
    parser.add_argument("--trials", type=int, default=8, help="parameter settings (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=2, help="seeds per setting, for the seed spread (default %(default)s)")
    parser.add_argument("--samples", type=int, default=320, help="training budget per run in samples (default %(default)s)")
    parser.add_argument("--max-samples", type=int, default=600, help="rows read from the data set (default %(default)s)")
    parser.add_argument("--val-size", type=float, default=0.1, help="held-out fraction or row count (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed (default %(default)s)")
    parser.add_argument("--pruner", default="none", help="hydra/sweeper/lorasweep_pruner of the sweep (default %(default)s)")
    parser.add_argument("--sweep-dir", type=Path, help="score this sweep dir instead of running one")
    parser.add_argument("--workdir", type=Path, help="keep the sweep here (default: a temporary dir)")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache", help="tiny model and tokenized data cache")
    parser.add_argument("overrides", nargs="*", help="further Hydra overrides for the sweep")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as temporary:
        sweep_dir = args.sweep_dir or run_sweep(args.workdir or Path(temporary), args.cache, args)
        decision = score(sweep_dir)
    spent = time.perf_counter() - started
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}; "
          f"{'scored' if args.sweep_dir else 'swept and scored'} in {spent:.0f} s")
    print(f"sweep: {sweep_dir if args.sweep_dir else f'{args.trials} settings x {args.repeats} repeats, {args.dataset}, '}"
          f"{'' if args.sweep_dir else f'{args.samples} samples per run, val_size {args.val_size}'}")
    print(f"runs ranked together (group A, with an eval loss): {decision.compared} settings")
    print(f"runs set apart as not comparable (another data stream): {decision.set_apart}; "
          f"not ranked (too short, no loss): {decision.unranked}; skipped when read: {len(decision.skipped)}")
    for problem in decision.skipped:
        print(f"  skipped: {problem}")
    print(f"cost: {decision.samples_trained} samples trained, {decision.stopped_early} runs stopped early by the pruner")
    print(f"Spearman(smoothed train loss, eval loss), all:         {show(decision.spearman_all)}")
    print(f"Spearman(smoothed train loss, eval loss), better half: {show(decision.spearman_better_half)}")
    print(f"eval rank of the run ranked first: {show(decision.eval_rank_of_first, 'd')} of {decision.compared}")
    print(f"its eval-loss regret: {show(decision.regret, '.4f')} = {show(decision.regret_in_spreads, '.2f')} seed spreads "
          f"(eval-loss seed spread {show(decision.eval_seed_spread, '.4f')})")


if __name__ == "__main__":
    main()
