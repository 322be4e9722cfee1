"""The custom search space of `sweep=notes`: what the practitioner's remedies need beyond plain params.

- num_cycles only means something for cosine_with_restarts, so it is suggested only then (a conditional
  parameter; the linear and cosine scheduler configs have no such key).
- a larger per-device batch is a remedy only if the effective batch stays the same, so gradient
  accumulation is derived from it (unless the space samples accumulation itself: the "free" option).
"""
from __future__ import annotations

from typing import Any

from omegaconf import DictConfig
from optuna.trial import Trial

BATCH_KEY = "trainer.per_device_batch_size"
ACCUMULATION_KEY = "trainer.gradient_accumulation_steps"
SCHEDULER_KEY = "scheduler"
RESTARTS_SCHEDULER = "cosine_with_restarts"
NUM_CYCLES_KEY = "scheduler.num_cycles"
NUM_CYCLES_RANGE = (1, 4)


def notes_space(cfg: DictConfig, trial: Trial) -> dict[str, Any]:
    """Suggests num_cycles for cosine_with_restarts; returns the derived gradient accumulation that keeps
    the base config's effective batch (per-device batch x accumulation) for the chosen batch size."""
    if trial.params.get(SCHEDULER_KEY) == RESTARTS_SCHEDULER:
        trial.suggest_int(NUM_CYCLES_KEY, *NUM_CYCLES_RANGE)
    batch = trial.params.get(BATCH_KEY)
    if batch is None or ACCUMULATION_KEY in trial.params:
        return {}
    return {ACCUMULATION_KEY: accumulation_for(effective_batch(cfg), batch)}


def effective_batch(cfg: DictConfig) -> int:
    return cfg.trainer.per_device_batch_size * cfg.trainer.gradient_accumulation_steps


def accumulation_for(effective: int, batch: int) -> int:
    """The accumulation that comes closest to `effective` without going under one step per batch."""
    return max(1, round(effective / batch))
