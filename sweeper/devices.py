"""One GPU per concurrent trial under a multi-process launcher (joblib), never two trials on one GPU.

Found without importing torch (the sweeper process stays light and never initialises CUDA): the
configured list, else CUDA_VISIBLE_DEVICES, else the GPUs `nvidia-smi -L` lists.
"""
from __future__ import annotations

import os
import shutil
import subprocess

# launchers that start concurrent jobs as local processes without assigning devices themselves
# (submitit assigns GPUs itself; the basic launcher runs one job at a time)
_LOCAL_PROCESS_LAUNCHERS = ("JoblibLauncher",)


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


def sweeper_must_assign_devices(launcher_target: str) -> bool:
    """True for launchers that run concurrent local jobs but leave their devices to the sweeper."""
    return launcher_target.endswith(_LOCAL_PROCESS_LAUNCHERS)


def plan_devices(launcher_target: str, gpus: list[str], jobs_at_once: int) -> list[str] | None:
    """The GPU for each of `jobs_at_once` concurrent jobs, or None when the sweeper leaves devices alone.

    Raises before any trial when there are fewer GPUs than concurrent jobs.
    """
    if not gpus or not sweeper_must_assign_devices(launcher_target):
        return None
    if jobs_at_once > len(gpus):
        raise ValueError(
            f"{jobs_at_once} trials would run at once (hydra.sweeper.n_jobs x repeats) on {len(gpus)} GPU(s) "
            f"({','.join(gpus)}); one GPU per trial: set hydra.sweeper.n_jobs so that n_jobs x repeats <= "
            f"{len(gpus)}, or list more GPUs in hydra.sweeper.gpus"
        )
    return gpus[:jobs_at_once]
