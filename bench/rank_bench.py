"""How long `python -m analysis rank` takes on a large sweep: 1,000 synthetic run dirs of 1,000 log
points each, written to a temp dir, then loaded and ranked (smoothing, budget, diagnosis) in-process.

    python -m bench.rank_bench [--runs 1000] [--points 1000]   (from the repo root; or `python bench/rank_bench.py`
    once the project is installed with `pip install -e .`)
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from analysis import load_runs, rank_runs
from analysis.synthetic import synthetic_losses, write_run_dir

BATCH_SIZES = (4, 8, 16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--points", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "multirun"
        started = time.perf_counter()
        for index in range(args.runs):
            write_run_dir(
                root / str(index),
                synthetic_losses(args.points, rate=0.001 + 0.00001 * index, noise=0.05, seed=index),
                batch_size=BATCH_SIZES[index % len(BATCH_SIZES)],
                overrides={"optimizer.lr": 1e-4 * (1 + index)},
            )
        written = time.perf_counter()
        loaded = load_runs([str(root)])
        load_done = time.perf_counter()
        ranking = rank_runs(loaded.runs)
        rank_done = time.perf_counter()
    print(f"{args.runs} runs x {args.points} points: write {written - started:.2f} s, "
          f"load {load_done - written:.2f} s, rank {rank_done - load_done:.2f} s "
          f"({len(loaded.runs)} loaded, {len(loaded.problems)} problems; {ranking.describe()})")


if __name__ == "__main__":
    main()
