"""How much a run trains, planned exactly, and when it reports to a sweeper's pruner: the arithmetic
that training (sft) plans a run by and the sweeper predicts trials by, so the two cannot drift apart.

Reads the typed `trainer` node (runs.schema). Imports no torch, so train.py checks a budget in samples or
steps before the heavy imports.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from runs.errors import ConfigError


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def plan_budget(trainer_cfg: Any, train_rows: int | None, samples_per_row: float = 1.0) -> dict[str, int]:
    """Rows of the sample stream the run trains on, the samples they hold, and the optimizer steps that
    takes. A budget in samples wins (fair across batch sizes: every trial of a sweep trains on exactly
    the stream's first N samples), then max_steps, then epochs (which needs train_rows). The last
    optimizer step takes what is left of the budget (a partial batch, a partial accumulation), so the
    budget is exact rather than rounded up to whole steps. With packing a row holds samples_per_row
    samples on average."""
    batch = trainer_cfg.per_device_batch_size * world_size()
    accumulation = trainer_cfg.gradient_accumulation_steps
    if trainer_cfg.max_samples_seen > 0:
        rows = math.ceil(trainer_cfg.max_samples_seen / samples_per_row)
    elif trainer_cfg.max_steps > 0:
        rows = trainer_cfg.max_steps * batch * accumulation
    else:
        if train_rows is None:
            raise ValueError("an epoch budget needs the number of training rows")
        rows = round(trainer_cfg.epochs * train_rows)
    steps = math.ceil(math.ceil(rows / batch) / accumulation)
    return {"rows": rows, "samples": round(rows * samples_per_row), "steps": steps}


def check_budget(trainer_cfg: Any, budget: dict[str, int]) -> None:
    """Refuses a budget that would end before its first logged loss: the run would have no objective."""
    logging_steps = trainer_cfg.logging_steps
    if budget["steps"] < logging_steps:
        per_step = trainer_cfg.per_device_batch_size * trainer_cfg.gradient_accumulation_steps * world_size()
        raise ConfigError(
            f"the budget ({budget['samples']} samples = {budget['steps']} optimizer steps of up to {per_step}) is "
            f"shorter than one logging interval (trainer.logging_steps={logging_steps}), so no loss would be logged "
            f"and the run would have no objective: set trainer.logging_steps={budget['steps']} or less, or raise "
            "the budget (trainer.max_samples_seen)"
        )


def budget_warnings(cfg: Any, budget: dict[str, int]) -> list[str]:
    """Settings that make a run's numbers hard to compare with other runs'."""
    scheduler = cfg.scheduler
    if scheduler.get("warmup_ratio") is None and scheduler.warmup_steps >= budget["steps"]:
        return [
            f"scheduler.warmup_steps={scheduler.warmup_steps} is at least the whole run ({budget['steps']} optimizer "
            "steps): the learning rate never reaches its peak, so this run reads as a lower-lr run; lower "
            "scheduler.warmup_steps or use scheduler.warmup_ratio"
        ]
    return []


def known_budget(trainer_cfg: Any) -> dict[str, int] | None:
    """The plan, when it is known before the data is read: a budget in samples (without packing) or steps."""
    if trainer_cfg.max_samples_seen > 0 and not trainer_cfg.packing:
        return plan_budget(trainer_cfg, None)
    if trainer_cfg.max_samples_seen <= 0 and trainer_cfg.max_steps > 0:
        return plan_budget(trainer_cfg, None)
    return None


@dataclass(frozen=True)
class ReportPlan:
    """The samples seen at each report of one run to its pruner, from its budget and logging interval."""

    points: list[int]
    budget: int
    interval: str


def report_plan(trainer_cfg: Any) -> ReportPlan | None:
    """The run's reports in samples seen, as training makes them: every trainer.report_every log steps, a
    log step every trainer.logging_steps optimizer steps of per_device_batch_size x
    gradient_accumulation_steps samples, the last step taking what is left of the budget. None when the
    budget is not known before the data is read (epochs, packing)."""
    planned = known_budget(trainer_cfg)
    if planned is None:
        return None
    batch, accumulation = trainer_cfg.per_device_batch_size, trainer_cfg.gradient_accumulation_steps
    per_step = batch * accumulation * world_size()
    budget, steps = planned["samples"], planned["steps"]
    every = trainer_cfg.logging_steps * trainer_cfg.report_every
    points = [min(step * per_step, budget) for step in range(every, steps + 1, every)]
    interval = (
        f"every {every * per_step} samples: trainer.logging_steps={trainer_cfg.logging_steps} x "
        f"trainer.per_device_batch_size={batch} x trainer.gradient_accumulation_steps={accumulation} x "
        f"trainer.report_every={trainer_cfg.report_every}"
    )
    return ReportPlan(points, budget, interval)
