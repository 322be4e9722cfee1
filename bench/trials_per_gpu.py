"""k trials on one GPU at once (hydra.sweeper.trials_per_gpu): the aggregate trial-samples/s for k = 1, 2, 4, 8.

    python -m bench.trials_per_gpu                       # on a GPU: k = 1, 2, 4, 8 until memory runs out
    python -m bench.trials_per_gpu --dry-run --ks 1,2    # the same path on a CPU (bench.throughput's dry run)

Each of the k trials is its own `python -m bench.throughput` process timing one mode (default: padding-free
merged, the seed yiliao settings), started together, as a sweep's k trial processes on one GPU are. A row
gives the k processes' summed samples/s, its ratio to k = 1, and the largest peak memory of one process;
the next k is tried only while k x that peak fits the GPU's memory (and a row whose processes fail, e.g.
out of memory, ends the table). Each row is printed as it ends. With a CUDA MPS daemon running the
processes' kernels run side by side, else the GPU time-slices them: the header says which.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sweeper.devices import mps_running

DEFAULT_MODE = "padding-free merged"


def run_k(k: int, mode: str, dry_run: bool, work_dir: Path, extra: list[str]) -> list[dict] | None:
    """k bench.throughput processes at once; each one's result for the mode, or None when any failed."""
    outputs = [work_dir / f"k{k}-{index}.json" for index in range(k)]
    command = [sys.executable, "-m", "bench.throughput", "--modes", mode, "--repeats", "1", *extra]
    command += ["--dry-run"] if dry_run else ["--device", "cuda"]
    processes = [subprocess.Popen([*command, "--json", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for output in outputs]
    failed = [process.communicate()[1] for process in processes if process.wait() != 0]
    if failed:
        print(f"k={k}: {len(failed)} of {k} processes failed; last lines: {failed[-1].strip().splitlines()[-3:]}", flush=True)
        return None
    return [json.loads(output.read_text())["modes"][0] for output in outputs]


def gpu_memory_gib() -> float | None:
    import torch

    return torch.cuda.get_device_properties(0).total_memory / 2**30 if torch.cuda.is_available() else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ks", default="1,2,4,8", help="trial counts to try, in order (default 1,2,4,8)")
    parser.add_argument("--mode", default=DEFAULT_MODE, help=f"the bench.throughput mode each trial times (default: {DEFAULT_MODE})")
    parser.add_argument("--dry-run", action="store_true", help="bench.throughput's CPU dry run in each process")
    parser.add_argument("--steps", type=int, help="optimizer steps each process times (bench.throughput --steps)")
    args = parser.parse_args(argv)
    extra = ["--steps", str(args.steps)] if args.steps else []
    memory = None if args.dry_run else gpu_memory_gib()
    sharing = "CUDA MPS daemon running" if mps_running() else "no CUDA MPS daemon: time-sliced"
    print(f"k trials at once, each timing '{args.mode}'; {sharing}; GPU memory "
          f"{f'{memory:.1f} GiB' if memory else 'not known (CPU)'}", flush=True)
    print(f"{'k':>3} {'trial-samples/s':>16} {'vs k=1':>7} {'per trial':>10} {'peak GiB/trial':>15} {'wall s':>7}", flush=True)
    alone = None
    with tempfile.TemporaryDirectory(prefix="lorasweep-k-trials-") as work_dir:
        ks = [int(value) for value in args.ks.split(",")]
        for k, next_k in zip(ks, [*ks[1:], None]):
            started = time.perf_counter()
            results = run_k(k, args.mode, args.dry_run, Path(work_dir), extra)
            if results is None:
                break
            total = sum(result["samples_per_s"] for result in results)
            alone = alone or total / k
            peaks = [result["peak_memory_gib"] for result in results if result["peak_memory_gib"] is not None]
            peak = max(peaks, default=None)
            print(f"{k:3d} {total:16.2f} {total / alone:6.2f}x {total / k:10.2f} "
                  f"{f'{peak:15.1f}' if peak is not None else '              -'} {time.perf_counter() - started:7.0f}", flush=True)
            if next_k and memory is not None and peak is not None and next_k * peak > memory:
                print(f"k={next_k} would need {next_k * peak:.1f} GiB of {memory:.1f}: stopped", flush=True)
                break


if __name__ == "__main__":
    main()
