"""The launchers of `hydra/launcher=slurm` and `hydra/launcher=local`: Hydra's submitit launchers with
a per-job wait (sweeper.submitit_jobs), so that a job the scheduler ends fails its own trial only.

Here because Hydra instantiates launchers only from the `hydra_plugins` namespace; the logic is in sweeper.
Hydra imports every module of that namespace at start-up, so without the `cluster` extra (no
hydra-submitit-launcher) this module defines nothing, rather than make Hydra warn on every run.
"""
from __future__ import annotations

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher
except ImportError:
    pass
else:
    from sweeper.submitit_jobs import PerJobLaunch

    class PerJobSlurmLauncher(PerJobLaunch, SlurmLauncher):
        """submitit_slurm, each job waited for on its own."""

    class PerJobLocalLauncher(PerJobLaunch, LocalLauncher):
        """submitit_local, each job waited for on its own."""
