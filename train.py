"""Train one LoRA run (or, with -m / sweep=..., many): `python train.py experiment=quickstart`.

Thin on purpose: Hydra composes conf/train.yaml, the recipe in sft.recipe.train does the work, and the
return value is the objective a Hydra sweeper optimises. What needs no model (config values, data
files) is checked before torch or transformers is imported, against the schema (runs/schema.py).
A failed run has written result.json before its error is raised, so a multirun records it and goes on.
The console gets one line (runs.exits): bad input on stderr with exit code 2, naming the key or file and
the fix; an unexpected error with exit code 1, saying which train.log holds its traceback.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from runs.exits import crash, one_line, refuse, run_hydra_app, stop
from runs.project import register_project_dir
from runs.schema import explain
from sft.lifecycle.stop_signals import noted_from_the_start

log = logging.getLogger("train")

register_project_dir()


class JobFailed(CompactHydraException):
    """A job of a multirun stopped by bad input or an error it reported: the message says what to fix
    (the sweeper records it for that job and goes on)."""


class RunCrashed(Exception):
    """A job of a multirun stopped by an unexpected error: the message says which train.log holds the
    traceback."""


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    # first, before torch and transformers import: a stop signal (a time limit, a preemption) that lands
    # before training is noted, and the recipe ends the run with it as the reason (sft.lifecycle.stop_signals)
    with noted_from_the_start():
        return _run(cfg)


def _run(cfg: DictConfig) -> float | None:
    if cfg.get("cuda_visible_devices") is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(cfg.cuda_visible_devices)
    from sft.lifecycle.ending import USER_ERRORS, ending_recorded, reason_of
    from sft.lifecycle.errors import TrainingInterrupted
    from sft.lifecycle.preflight import check_before_loading

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        with ending_recorded(run_dir, cfg.objective):
            check_before_loading(cfg)
            reporter = _instantiate(cfg.trial) if cfg.get("trial") else None
        if "transformers" not in sys.modules:  # seconds of imports before the recipe's own first line
            log.info("loading torch, transformers and PEFT")
        from sft.recipe.train import run_training

        result = run_training(cfg, run_dir, reporter)
    except USER_ERRORS as error:
        _log_traceback_to_file(error)
        if HydraConfig.get().mode == RunMode.RUN and isinstance(error, TrainingInterrupted):
            stop(reason_of(error))
        if HydraConfig.get().mode == RunMode.RUN:
            refuse(reason_of(error))
        raise JobFailed(f"{reason_of(error)} (run dir {run_dir})") from None
    except Exception as error:
        log_files = _log_traceback_to_file(error)
        if not log_files:
            raise
        message = (f"the run stopped on an unexpected error, {type(error).__name__}: {one_line(str(error))}; its "
                 f"traceback is in {', '.join(log_files)}")
        if HydraConfig.get().mode == RunMode.RUN:
            crash(message)
        raise RunCrashed(f"{message} (run dir {run_dir})") from None
    log.info("%s: %s = %s (run dir %s)", result["status"], result["objective_name"], result["objective"], run_dir)
    return result["objective"]


def _instantiate(node: DictConfig) -> object:
    from hydra.utils import instantiate

    return instantiate(node)


def _log_traceback_to_file(error: BaseException) -> list[str]:
    """The traceback, for whoever debugs the project, into the run dir's log file only (the console
    shows the message); returns the files written to."""
    record = logging.LogRecord(log.name, logging.DEBUG, __file__, 0, "traceback of the error", None,
                               (type(error), error, error.__traceback__))
    files = []
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
            files.append(handler.baseFilename)
    return files


if __name__ == "__main__":
    # Hydra's refusals (a value of the wrong type, an unknown key or option), the sweeper's (compact
    # Hydra errors too) and a run's own are bad input; a crashed run has said where its traceback is
    run_hydra_app(main, user_errors=(CompactHydraException, OmegaConfBaseException), explain=explain, reported=(RunCrashed,))
