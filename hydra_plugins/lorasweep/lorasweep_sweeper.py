"""The class Hydra instantiates for `hydra/sweeper=lorasweep`: a shim over sweeper.study_loop.

Hydra refuses to instantiate a sweeper whose class lives outside `hydra_plugins`, so the class is here
and delegates everything. The heavy import (optuna) happens only when a sweep actually starts. A
refusal (sweeper.errors.SweepError) leaves here as one line on stderr and exit code 2, Ctrl-C as exit
code 130 after the loop has said what became of the running trials (runs.exits).
"""
from __future__ import annotations

from typing import Any, List

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from runs.exits import EXIT_INTERRUPTED, refuse
from sweeper.config import register_configs
from sweeper.errors import SweepError

register_configs()


class LorasweepSweeper(Sweeper):
    """Optuna ask/tell over any Hydra launcher, with pruning, resume and W&B grouping."""

    def __init__(self, **settings: Any) -> None:
        from sweeper.study_loop import StudyLoop

        try:
            self._loop = StudyLoop(**settings)
        except SweepError as error:
            refuse(str(error))

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self._loop.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> None:
        try:
            self._loop.sweep(arguments)
        except SweepError as error:
            refuse(str(error))
        except KeyboardInterrupt:
            raise SystemExit(EXIT_INTERRUPTED) from None
