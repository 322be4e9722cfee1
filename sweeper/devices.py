"""Which GPU each concurrent trial runs on under a multi-process launcher (joblib, submitit_local), with
`trials_per_gpu` trials sharing one GPU.

A trial of a 0.5B model leaves most of an 80 GB GPU idle, and its steps wait on the host: k trial
processes on one GPU overlap one another's host time. The sweeper places them (round-robin, so the
GPUs fill evenly), refuses a k whose measured per-trial peak memory does not fit the GPU, and says
whether CUDA MPS (which runs the processes' kernels side by side instead of time-slicing the GPU) is on.
Found without importing torch (the sweeper process stays light and never initialises CUDA): the
configured list, else CUDA_VISIBLE_DEVICES, else the GPUs `nvidia-smi -L` lists.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from runs import result as run_result
from sweeper.errors import SweepError

log = logging.getLogger(__name__)

# launchers that start concurrent jobs as local processes without assigning devices themselves
# (the basic launcher runs one job at a time)
_LOCAL_PROCESS_LAUNCHERS = ("JoblibLauncher",)
# submitit's local launcher gives each job whole GPUs of its own (gpus_per_node); sharing one GPU
# between k jobs is the sweeper's placement instead
_SUBMITIT_LOCAL_LAUNCHERS = ("LocalLauncher",)
_SUBMITIT_SLURM_LAUNCHERS = ("SlurmLauncher",)
MEMORY_HEADROOM = 0.95  # of a GPU's memory that k trials' peaks may fill (the CUDA context, fragmentation)
MPS_DEFAULT_PIPE_DIR = "/tmp/nvidia-mps"


def visible_gpus(configured: list[int] | None) -> list[str]:
    if configured is not None:
        return [str(gpu) for gpu in configured]
    from_env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if from_env is not None:
        return [gpu.strip() for gpu in from_env.split(",") if gpu.strip() and gpu.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    if listing.returncode != 0:
        return []
    return [str(index) for index, line in enumerate(listing.stdout.splitlines()) if line.startswith("GPU ")]


def sweeper_must_assign_devices(launcher_target: str, trials_per_gpu: int = 1) -> bool:
    """True for launchers that run concurrent local jobs but leave their devices to the sweeper: joblib
    always, submitit_local when GPUs are shared (it would give each job a GPU of its own)."""
    if launcher_target.endswith(_LOCAL_PROCESS_LAUNCHERS):
        return True
    return trials_per_gpu > 1 and launcher_target.endswith(_SUBMITIT_LOCAL_LAUNCHERS)


def plan_devices(launcher_target: str, gpus: list[str], jobs_at_once: int, trials_per_gpu: int = 1) -> list[str] | None:
    """The GPU for each of `jobs_at_once` concurrent jobs, or None when the sweeper leaves devices alone.

    Raises before any trial when the jobs do not fit `trials_per_gpu` to a GPU, or when k trials per
    GPU are asked of a launcher that submits each trial as a job of its own to a scheduler.
    """
    if trials_per_gpu < 1:
        raise SweepError(f"hydra.sweeper.trials_per_gpu must be >= 1, got {trials_per_gpu}")
    if trials_per_gpu > 1 and launcher_target.endswith(_SUBMITIT_SLURM_LAUNCHERS):
        raise SweepError(
            f"hydra.sweeper.trials_per_gpu={trials_per_gpu} under hydra/launcher=slurm: SLURM gives each trial's "
            f"job its own GPU. Run {trials_per_gpu} trials per GPU in worker mode (LORASWEEP_TRIALS_PER_GPU="
            f"{trials_per_gpu} sbatch ... slurm/sweep_workers.sbatch), or let jobs share GPUs through the "
            "cluster's GPU sharding (hydra.launcher.gpus_per_node=null hydra.launcher.additional_parameters="
            "{gres:shard:1}) with trials_per_gpu=1"
        )
    if not gpus or not sweeper_must_assign_devices(launcher_target, trials_per_gpu):
        return None
    slots = len(gpus) * trials_per_gpu
    if jobs_at_once > slots:
        raise SweepError(
            f"{jobs_at_once} trials would run at once (hydra.sweeper.n_jobs x repeats) on {len(gpus)} GPU(s) "
            f"({','.join(gpus)}) at {trials_per_gpu} trial(s) per GPU: set hydra.sweeper.n_jobs so that "
            f"n_jobs x repeats <= {slots}, raise hydra.sweeper.trials_per_gpu, or list more GPUs in hydra.sweeper.gpus"
        )
    return [gpus[job % len(gpus)] for job in range(jobs_at_once)]


def measured_peak_mb(run_dirs: Iterable[str]) -> float | None:
    """The largest GPU memory peak that the given runs recorded in result.json (None before any did)."""
    peaks = []
    for run_dir in run_dirs:
        result, _ = run_result.read_result(Path(run_dir))
        if result and result.get(run_result.PEAK_GPU_MEMORY_MB):
            peaks.append(float(result[run_result.PEAK_GPU_MEMORY_MB]))
    return max(peaks, default=None)


def gpu_memory_mb(gpus: list[str]) -> dict[str, float]:
    """Each GPU's total memory as nvidia-smi reports it (empty without nvidia-smi)."""
    if not gpus or shutil.which("nvidia-smi") is None:
        return {}
    query = subprocess.run(
        ["nvidia-smi", f"--id={','.join(gpus)}", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
        capture_output=True, text=True, check=False,
    )
    if query.returncode != 0:
        return {}
    return {gpu: float(line) for gpu, line in zip(gpus, query.stdout.split())}


def check_memory_fits(trials_per_gpu: int, peak_mb: float | None, memory_mb: dict[str, float]) -> None:
    """Refuses k trials per GPU whose measured peaks would not fit the smallest GPU."""
    if trials_per_gpu == 1 or peak_mb is None or not memory_mb:
        return
    gpu, total = min(memory_mb.items(), key=lambda item: item[1])
    fits = int(total * MEMORY_HEADROOM // peak_mb)
    if trials_per_gpu > fits:
        raise SweepError(
            f"hydra.sweeper.trials_per_gpu={trials_per_gpu} does not fit: a trial of this study peaked at "
            f"{peak_mb:,.0f} MiB of GPU memory (result.json {run_result.PEAK_GPU_MEMORY_MB}) and GPU {gpu} has "
            f"{total:,.0f} MiB, room for {fits}; set hydra.sweeper.trials_per_gpu={max(fits, 1)}"
        )


def mps_running() -> bool:
    """True when a CUDA MPS control daemon listens (its pipe dir holds the control pipe): the trials'
    processes then connect to it on their own and their kernels run side by side."""
    pipe_dir = Path(os.environ.get("CUDA_MPS_PIPE_DIRECTORY", MPS_DEFAULT_PIPE_DIR))
    return (pipe_dir / "control").exists()


def describe_sharing(trials_per_gpu: int, devices: list[str] | None) -> str | None:
    """One log line on how k trials share each GPU, or None when they do not."""
    if trials_per_gpu == 1 or not devices:
        return None
    if mps_running():
        return f"{trials_per_gpu} trials per GPU, through the CUDA MPS daemon (kernels of the trials run side by side)"
    return (
        f"{trials_per_gpu} trials per GPU, time-sliced: no CUDA MPS daemon is running (start one with "
        "`nvidia-cuda-mps-control -d` to run the trials' kernels side by side)"
    )
