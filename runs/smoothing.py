"""The two loss smoothings, and the objective that training, sweeper and ranking share.

LLaMA-Factory's EMA is kept for plots its users recognise. Its weight depends on how many points the
series has, so two runs of different lengths are smoothed differently: it must not be used to compare
runs. Ranking and pruning therefore use `time_constant_ema`, whose memory is a fixed number of samples
(or tokens) seen, debiased at the start, and read at one budget for every run compared.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

OBJECTIVES = ("smoothed_loss", "eval_loss", "final_loss")
DEFAULT_TIME_CONSTANT_FRACTION = 0.1


def llamafactory_weight(num_points: int) -> float:
    """The single EMA weight LLaMA-Factory uses for a series of `num_points` values."""
    return 1.8 * (1.0 / (1.0 + math.exp(-0.05 * num_points)) - 0.5)


def llamafactory_smooth(values: Sequence[float]) -> list[float]:
    """LLaMA-Factory's `smooth` (extras/ploting.py): s_0 = x_0, s_i = w*s_{i-1} + (1-w)*x_i."""
    if len(values) == 0:
        return []
    weight = llamafactory_weight(len(values))
    smoothed: list[float] = []
    last = float(values[0])
    for value in values:
        last = last * weight + (1.0 - weight) * float(value)
        smoothed.append(last)
    return smoothed


def time_constant_ema(positions: Sequence[float], values: Sequence[float], time_constant: float) -> list[float]:
    """EMA whose memory is `time_constant` units of `positions` (samples or tokens seen), debiased.

    Points may be irregularly spaced (different batch sizes, logging intervals): the decay between two
    points is exp(-gap / time_constant). The series starts at position 0 with no information, and the
    running sum is divided by the total weight it has gathered (as Adam debiases its moments), so the
    first value is not pulled towards zero and a short run is not biased against a long one.
    """
    if len(positions) != len(values):
        raise ValueError(f"positions ({len(positions)}) and values ({len(values)}) differ in length")
    if time_constant <= 0:
        raise ValueError(f"time_constant must be > 0, got {time_constant}")
    smoothed: list[float] = []
    weighted_sum = 0.0
    total_weight = 0.0
    previous = 0.0
    for position, value in zip(positions, values):
        gap = float(position) - previous
        if gap < 0:
            raise ValueError(f"positions must not decrease ({previous} then {position})")
        decay = math.exp(-gap / time_constant)
        alpha = 1.0 - decay
        if total_weight == 0.0 and alpha == 0.0:
            alpha = 1.0  # a first point at position 0 still counts fully
        weighted_sum = decay * weighted_sum + alpha * float(value)
        total_weight = decay * total_weight + alpha
        smoothed.append(weighted_sum / total_weight)
        previous = float(position)
    return smoothed


def value_at_budget(positions: Sequence[float], smoothed: Sequence[float], budget: float) -> float | None:
    """The smoothed value at the last point at or before `budget`; None when the run never got there.

    A run counts as having reached the budget when its last position is >= budget; then the value is
    the one at the last logged position not past it (no interpolation: a logged value is a fact).
    """
    if not positions or positions[-1] < budget:
        return None
    chosen = None
    for position, value in zip(positions, smoothed):
        if position <= budget:
            chosen = value
        else:
            break
    return chosen if chosen is not None else smoothed[0]


def default_time_constant(budget: float) -> float:
    """10% of the budget (in the same unit): long enough to average out batch noise, short enough to
    still follow the descent. A sweep or a ranking fixes one value for all runs it compares."""
    if budget <= 0:
        raise ValueError(f"budget must be > 0, got {budget}")
    return DEFAULT_TIME_CONSTANT_FRACTION * budget


def objective_from_metrics(
    records: Sequence[dict],
    objective: str = "smoothed_loss",
    unit: str = "samples",
    time_constant: float | None = None,
    budget: float | None = None,
) -> float | None:
    """The value a run reports as its objective, from its metrics.jsonl records.

    smoothed_loss: `time_constant_ema` of the training loss over `unit` seen, read at `budget`
    (default: the run's last logged position). eval_loss: the last eval loss. final_loss: the last raw
    training loss. None when the records hold nothing to compute it from.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    if objective == "eval_loss":
        evals = [r["eval_loss"] for r in records if r.get("eval_loss") is not None]
        return float(evals[-1]) if evals else None
    train = [r for r in records if r.get("loss") is not None]
    if not train:
        return None
    if objective == "final_loss":
        return float(train[-1]["loss"])
    positions = [float(r[unit]) for r in train]
    losses = [float(r["loss"]) for r in train]
    end = positions[-1] if budget is None else budget
    tau = time_constant if time_constant else default_time_constant(max(end, 1.0))
    return value_at_budget(positions, time_constant_ema(positions, losses, tau), end)
