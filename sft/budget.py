"""How much a run trains, planned exactly, and the budgets refused or warned about before training.

Imports no torch, so train.py checks a budget in samples or steps before the heavy imports.
"""
from __future__ import annotations

import math
import os
from typing import Any

from sft.errors import ConfigError


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def plan_budget(trainer_cfg: Any, train_rows: int | None, samples_per_row: float = 1.0) -> dict[str, int]:
    """Rows of the sample stream the run trains on, the samples they hold, and the optimizer steps that
    takes. A budget in samples wins (fair across batch sizes: every trial of a sweep trains on exactly
    the stream's first N samples), then max_steps, then epochs (which needs train_rows). The last
    optimizer step takes what is left of the budget (a partial batch, a partial accumulation), so the
    budget is exact rather than rounded up to whole steps. With packing a row holds samples_per_row
    samples on average."""
    batch = int(trainer_cfg.per_device_batch_size) * world_size()
    accumulation = int(trainer_cfg.gradient_accumulation_steps)
    if int(trainer_cfg.max_samples_seen) > 0:
        rows = math.ceil(int(trainer_cfg.max_samples_seen) / samples_per_row)
    elif int(trainer_cfg.max_steps) > 0:
        rows = int(trainer_cfg.max_steps) * batch * accumulation
    else:
        if train_rows is None:
            raise ValueError("an epoch budget needs the number of training rows")
        rows = round(float(trainer_cfg.epochs) * train_rows)
    steps = math.ceil(math.ceil(rows / batch) / accumulation)
    return {"rows": rows, "samples": round(rows * samples_per_row), "steps": steps}


def check_budget(cfg: Any, budget: dict[str, int]) -> None:
    """Refuses a budget that would end before its first logged loss: the run would have no objective."""
    trainer = cfg.trainer
    logging_steps = int(trainer.logging_steps)
    if budget["steps"] < logging_steps:
        per_step = int(trainer.per_device_batch_size) * int(trainer.gradient_accumulation_steps) * world_size()
        raise ConfigError(
            f"the budget ({budget['samples']} samples = {budget['steps']} optimizer steps of up to {per_step}) is "
            f"shorter than one logging interval (trainer.logging_steps={logging_steps}), so no loss would be logged "
            f"and the run would have no objective: set trainer.logging_steps={budget['steps']} or less, or raise "
            "the budget (trainer.max_samples_seen)"
        )


def budget_warnings(cfg: Any, budget: dict[str, int]) -> list[str]:
    """Settings that make a run's numbers hard to compare with other runs'."""
    scheduler = cfg.scheduler
    if scheduler.get("warmup_ratio") is None and float(scheduler.warmup_steps) >= budget["steps"]:
        return [
            f"scheduler.warmup_steps={scheduler.warmup_steps} is at least the whole run ({budget['steps']} optimizer "
            "steps): the learning rate never reaches its peak, so this run reads as a lower-lr run; lower "
            "scheduler.warmup_steps or use scheduler.warmup_ratio"
        ]
    return []


def known_budget(trainer_cfg: Any) -> dict[str, int] | None:
    """The plan, when it is known before the data is read: a budget in samples (without packing) or steps."""
    if int(trainer_cfg.max_samples_seen) > 0 and not bool(trainer_cfg.packing):
        return plan_budget(trainer_cfg, None)
    if int(trainer_cfg.max_samples_seen) <= 0 and int(trainer_cfg.max_steps) > 0:
        return plan_budget(trainer_cfg, None)
    return None
