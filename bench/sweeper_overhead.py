"""What the sweeper itself costs: the same 6-trial tiny study (train.py on the tiny model, pruning off,
the basic launcher, one trial at a time) run by `hydra/sweeper=lorasweep` and by the official
hydra-optuna-sweeper 1.4.0rc3, side by side, the two alternating round by round so that both see the
same load.

    python -m bench.sweeper_overhead                 # 2 rounds; builds the official plugin's venv first if absent
    python -m bench.sweeper_overhead --rounds 3 --samples 64

The official plugin needs Hydra 1.4, so it gets its own venv under the cache dir ($LORASWEEP_CACHE or
.cache, `hydra-optuna-sweeper-1.4.0rc3/`): hydra-core, omegaconf and the plugin installed there, and
everything else (torch, transformers, optuna) taken from the running interpreter's site-packages
through a .pth file, so that the two sweeps train with the very same libraries. Per study it prints
the wall time, the training time the trials' result.json files record (`elapsed`), and the rest (start,
config composition, data and model loading, the sweeper); then ours over the official one, and our
extra seconds per trial as a share of the official study's wall time per trial.
Everything goes to a temporary dir (or --workdir), never into the repo's outputs.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.venvs import cached_venv

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL = ["hydra-optuna-sweeper==1.4.0rc3", "hydra-core==1.4.0rc3"]
STUDY = ["experiment=quickstart", "task.val_size=0", "trainer.logging_steps=2", "trainer.save_steps=1000",
         "optimizer.lr=tag(log, interval(1e-4, 4e-3))"]
SWEEPERS = {
    "lorasweep": ["hydra/sweeper=lorasweep", "hydra/sweeper/lorasweep_pruner=none", "hydra.sweeper.seed=0"],
    "official": ["hydra/sweeper=optuna", "hydra.sweeper.sampler.seed=0"],
}


def official_venv(cache_dir: Path) -> Path:
    """The official plugin's python: its Hydra 1.4 shadows ours, everything else is shared."""
    return cached_venv(cache_dir / "hydra-optuna-sweeper-1.4.0rc3", OFFICIAL, share_site_packages=True, pre=True)


@dataclass
class StudyTime:
    wall_s: float
    cpu_s: float  # user + system of the sweep process and everything it started
    training_s: float  # the trials' result.json `elapsed`, summed


def run_study(python: Path, sweeper: str, sweep_dir: Path, env: dict[str, str], n_trials: int,
              samples: int) -> StudyTime:
    command = [str(python), str(ROOT / "train.py"), "-m", *STUDY, *SWEEPERS[sweeper],
               f"trainer.max_samples_seen={samples}", f"hydra.sweeper.n_trials={n_trials}",
               f"hydra.sweep.dir={sweep_dir}", f"hydra.sweeper.study_name={sweep_dir.name}"]
    if sweeper == "lorasweep":
        command.append(f"hydra.sweeper.storage_dir={sweep_dir.parent / 'sweeps'}")
    log = sweep_dir.parent / f"{sweep_dir.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as output:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{sweeper} study failed (exit {os.waitstatus_to_exitcode(status)}), see {log}:\n"
                         f"{log.read_text()[-3000:]}")
    results = [json.loads(path.read_text()) for path in sweep_dir.glob("*/result.json")]
    if len(results) != n_trials or any(result["status"] != "completed" for result in results):
        raise SystemExit(f"{sweeper}: expected {n_trials} completed trials in {sweep_dir}, found {len(results)}")
    return StudyTime(wall, usage.ru_utime + usage.ru_stime, sum(result["elapsed"] for result in results))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="studies per sweeper, alternating")
    parser.add_argument("--n-trials", type=int, default=6)
    parser.add_argument("--samples", type=int, default=64, help="trainer.max_samples_seen of each trial")
    parser.add_argument("--cache-dir", default=os.environ.get("LORASWEEP_CACHE", str(ROOT / ".cache")))
    parser.add_argument("--workdir", help="keep the sweeps here (default: a temporary dir)")
    args = parser.parse_args(argv)

    cache_dir = Path(args.cache_dir).expanduser().resolve()
    pythons = {"lorasweep": Path(sys.executable), "official": official_venv(cache_dir)}
    env = {**os.environ, "LORASWEEP_CACHE": str(cache_dir), "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "1"}
    env.pop("LORASWEEP_STORAGE", None)
    with tempfile.TemporaryDirectory(prefix="sweeper-overhead-") as temporary:
        workdir = Path(args.workdir or temporary).resolve()
        measured: dict[str, list[StudyTime]] = {name: [] for name in SWEEPERS}
        warm = workdir / "warm-up"  # builds the tiny model and tokenizes the data once, outside the timing
        run_study(pythons["lorasweep"], "lorasweep", warm, env, 1, args.samples)
        for round_index in range(args.rounds):
            for name in (SWEEPERS if round_index % 2 == 0 else reversed(SWEEPERS)):
                study = run_study(pythons[name], name, workdir / f"{name}-{round_index}", env, args.n_trials, args.samples)
                measured[name].append(study)
                print(f"round {round_index} {name}: {study.wall_s:.1f} s wall, {study.cpu_s:.1f} s CPU, "
                      f"{study.training_s:.1f} s training", flush=True)
    print_table(measured, args.n_trials)


def print_table(measured: dict[str, list[StudyTime]], n_trials: int) -> None:
    """Medians over the rounds, and ours against the official plugin: wall time follows the machine's
    load, CPU time (the sweep process and its children) much less, so both are shown."""
    table = Table(title=f"{n_trials}-trial tiny study, pruning off, basic launcher (median of rounds)")
    for column in ("sweeper", "wall s", "CPU s", "training s", "wall - training s / trial"):
        table.add_column(column, justify="right")
    median = {name: {field: statistics.median(getattr(study, field) for study in studies)
                     for field in ("wall_s", "cpu_s", "training_s")} for name, studies in measured.items()}
    for name, row in median.items():
        rest = (row["wall_s"] - row["training_s"]) / n_trials
        table.add_row(name, f"{row['wall_s']:.1f}", f"{row['cpu_s']:.1f}", f"{row['training_s']:.1f}", f"{rest:.2f}")
    Console().print(table)
    ours, official = measured["lorasweep"], measured["official"]
    # the trials train the same samples with the same code under both: the sweeper's cost is the rest
    rest = {name: (row["wall_s"] - row["training_s"]) / n_trials for name, row in median.items()}
    extra = rest["lorasweep"] - rest["official"]
    print(f"lorasweep's extra time outside training per trial: {extra:+.2f} s, "
          f"{100 * extra / (median['official']['wall_s'] / n_trials):+.1f}% of the official plugin's wall time per trial")
    for field, what in (("wall_s", "wall"), ("cpu_s", "CPU")):
        ratios = ", ".join(f"{getattr(a, field) / getattr(b, field):.3f}" for a, b in zip(ours, official))
        extra = (median["lorasweep"][field] - median["official"][field]) / n_trials
        share = 100 * extra / (median["official"][field] / n_trials)
        print(f"lorasweep / official {what} time per round: {ratios}; lorasweep's extra {what} time per trial "
              f"{extra:+.2f} s, {share:+.1f}% of the official plugin's per trial")


if __name__ == "__main__":
    main()
