"""The class Hydra instantiates for `hydra/sweeper=lorasweep`: a shim over sweeper.study_loop.

Hydra refuses to instantiate a sweeper whose class lives outside `hydra_plugins`, so the class is here
and delegates everything. The heavy import (optuna) happens only when a sweep actually starts.
"""
from __future__ import annotations

from typing import Any, List

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from sweeper.config import register_configs

register_configs()


class LorasweepSweeper(Sweeper):
    """Optuna ask/tell over any Hydra launcher, with pruning, resume and W&B grouping."""

    def __init__(self, **settings: Any) -> None:
        from sweeper.study_loop import StudyLoop

        self._loop = StudyLoop(**settings)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self._loop.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> None:
        self._loop.sweep(arguments)
