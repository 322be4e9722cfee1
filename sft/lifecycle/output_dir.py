"""A Hydra callback that makes the run's (or the sweep's) output dir before Hydra does, so a dir that
cannot be made (under /proc, under a file, a full disk) is refused in one line that names
hydra.run.dir / hydra.sweep.dir, not with a traceback from inside Hydra."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from runs.exits import refuse


class OutputDirCheck(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _make(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _make(config.hydra.sweep.dir, "hydra.sweep.dir")


def _make(directory: str, key: str) -> None:
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        # refuse() exits: Hydra turns a callback's exceptions into warnings and would go on
        refuse(
            f"cannot create the output dir {directory} ({error.strerror}): set {key} (or paths.root_dir / "
            "PROJECT_ROOT) to a writable place"
        )
