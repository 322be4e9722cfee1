"""Train one LoRA run (or, with -m / sweep=..., many): `python train.py experiment=quickstart`.

Thin on purpose: Hydra composes conf/train.yaml, the recipe in sft.train does the work, and the
return value is the objective a Hydra sweeper optimises. What needs no model (config values, data
files) is checked before torch or transformers is imported. A failed run has written result.json
before its error is raised, so a multirun records it and goes on; the console gets the one line that
says what to fix, and the traceback goes to the run dir's log.
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

from runs.project import register_project_dir
from sft.stop_signals import noted_from_the_start

log = logging.getLogger("train")
EXIT_INTERRUPTED = 130  # the shell's code for a process stopped by Ctrl-C

register_project_dir()


class JobFailed(CompactHydraException):
    """A job of a multirun stopped by bad input or an error it reported: Hydra prints the message alone."""


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    # first, before torch and transformers import: a stop signal (a time limit, a preemption) that lands
    # before training is noted, and the recipe ends the run with it as the reason (sft.stop_signals)
    with noted_from_the_start():
        return _run(cfg)


def _run(cfg: DictConfig) -> float | None:
    if cfg.get("cuda_visible_devices") is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(cfg.cuda_visible_devices)
    from sft.ending import USER_ERRORS, ending_recorded, reason_of
    from sft.preflight import check_before_loading

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        with ending_recorded(run_dir, cfg.objective):
            check_before_loading(cfg)
            reporter = _instantiate(cfg.trial) if cfg.get("trial") else None
        if "transformers" not in sys.modules:  # seconds of imports before the recipe's own first line
            log.info("loading torch, transformers and PEFT")
        from sft.train import run_training

        result = run_training(cfg, run_dir, reporter)
    except USER_ERRORS as error:
        _log_traceback_to_file(error)
        if HydraConfig.get().mode == RunMode.RUN:
            log.error("%s", reason_of(error))
            sys.exit(1)
        raise JobFailed(f"{reason_of(error)} (run dir {run_dir})") from None
    log.info("%s: %s = %s (run dir %s)", result["status"], result["objective_name"], result["objective"], run_dir)
    return result["objective"]


def _instantiate(node: DictConfig) -> object:
    from hydra.utils import instantiate

    return instantiate(node)


def _log_traceback_to_file(error: BaseException) -> None:
    """The traceback, for whoever debugs the project, into the run dir's log file only (the console
    shows the message)."""
    record = logging.LogRecord(log.name, logging.DEBUG, __file__, 0, "traceback of the error", None,
                               (type(error), error, error.__traceback__))
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # result.json says "interrupted"; a traceback would add nothing
        sys.exit(EXIT_INTERRUPTED)
