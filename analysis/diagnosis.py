"""The practitioner's two complaints made measurable, per run: the curve is jagged, and it does not fall
far enough. Plus spikes, the usual cause of a jagged look.

Jaggedness is measured as noise, and only as noise: from second differences of the logged loss
(y[i-1] - 2 y[i] + y[i+1]), which cancel any locally straight trend whatever its slope, so a curve that
falls fast does not read noisier than one that falls slowly or not at all. Only the part of the run after
the steep initial drop is used, where the curve bends little. (A causal smoothing would lag behind a
falling curve and count that lag as jaggedness.)
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

from analysis.records import RunRecord
from runs.smoothing import time_constant_ema

SPIKE_ROBUST_STDS = 3.0
TAIL_FRACTION = 0.2
STILL_FALLING_BELOW = -0.01
MAD_TO_STD = 1.4826  # MAD of a normal distribution times this is its standard deviation
DROP_DONE_FRACTION = 0.9  # the steep initial drop is over once the curve has done this much of its fall
TREND_WINDOW_FRACTION = 0.05  # the centred moving average that finds the drop spans 5% of the points
SECOND_DIFFERENCE_VARIANCE = 6.0  # var(e[i-1] - 2 e[i] + e[i+1]) = 6 var(e) for independent noise
MIN_NOISE_POINTS = 5  # a short run keeps at least this many points, at the cost of some of the drop


@dataclass
class Diagnosis:
    """noise: the std of the logged loss around its trend, in loss units (from second differences, after
    the steep initial drop); the level is the ranked value, reported apart from it. descent: (first -
    last smoothed) / first. tail_change: relative change of the loss over the last 20% of the run
    (least-squares slope of the logged loss times the whole window's length, over the window's mean);
    still_falling: tail_change below -1%.
    spikes: points more than 3 robust stds (1.4826 x MAD) above the mean of their two neighbours."""

    noise: float | None
    descent: float
    tail_change: float | None
    still_falling: bool | None
    spikes: int | None
    points: int

    def as_dict(self) -> dict:
        return asdict(self)


def least_squares_slope(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 2:
        return None
    mean_x = statistics.fmean(xs)
    mean_y = statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def tail_change(positions: list[float], losses: list[float], tail_fraction: float = TAIL_FRACTION) -> float | None:
    """Relative change of the loss across the last `tail_fraction` of the run: the slope fitted to the
    points inside the window, times the full window length (not only the span its logged points cover)."""
    length = tail_fraction * (positions[-1] - positions[0])
    window = [(x, y) for x, y in zip(positions, losses, strict=True) if x >= positions[-1] - length]
    xs = [x for x, _ in window]
    ys = [y for _, y in window]
    slope = least_squares_slope(xs, ys)
    level = statistics.fmean(ys) if ys else 0.0
    if slope is None or level == 0:
        return None
    return slope * length / level


def centred_mean(values: list[float], half_width: int) -> list[float]:
    """A two-sided moving average (narrower at the ends): a trend that does not lag."""
    return [
        statistics.fmean(values[max(0, i - half_width) : i + half_width + 1])
        for i in range(len(values))
    ]


def drop_end(losses: list[float]) -> int:
    """The index where the steep initial drop is over: where the centred trend has done 90% of its fall
    from the first point to its lowest, and at the latest the middle of the run."""
    trend = centred_mean(losses, max(2, int(TREND_WINDOW_FRACTION * len(losses)) // 2))
    fall = trend[0] - min(trend)
    middle = len(losses) // 2
    if fall <= 0:
        return 0
    target = trend[0] - DROP_DONE_FRACTION * fall
    return min(next(i for i, value in enumerate(trend) if value <= target), middle)


def second_differences(losses: list[float]) -> list[float]:
    return [losses[i - 1] - 2 * losses[i] + losses[i + 1] for i in range(1, len(losses) - 1)]


def noise_level(losses: list[float]) -> float | None:
    """Std of the logged loss around its trend after the steep initial drop; None with fewer than 5
    points. A run logged only a few times keeps its last 5 points even if the drop reaches into them:
    a rough figure (log more often, trainer.logging_steps, for a firm one)."""
    if len(losses) < MIN_NOISE_POINTS:
        return None
    differences = second_differences(losses[min(drop_end(losses), len(losses) - MIN_NOISE_POINTS) :])
    return math.sqrt(statistics.fmean(d * d for d in differences) / SECOND_DIFFERENCE_VARIANCE)


def count_spikes(losses: list[float], robust_stds: float = SPIKE_ROBUST_STDS) -> int:
    """Points far above the straight line through their two neighbours (a two-sided residual)."""
    residuals = [-d / 2 for d in second_differences(losses)]
    if not residuals:
        return 0
    median = statistics.median(residuals)
    robust_std = MAD_TO_STD * statistics.median(abs(r - median) for r in residuals)
    if robust_std == 0:
        return 0
    return sum(1 for r in residuals if r - median > robust_stds * robust_std)


def diagnose(run: RunRecord, unit: str, time_constant: float) -> Diagnosis | None:
    """Figures for one run's loss curve; descent uses the ranking's smoothing; None without a curve.

    A presmoothed series (Optuna intermediate values) has no raw noise left, so noise and spikes are
    None for it; descent and the tail still say whether it was falling.
    """
    positions = run.series.positions(unit)
    losses = run.series.loss
    if len(positions) < 2:
        return None
    smoothed = losses if run.series.presmoothed else time_constant_ema(positions, losses, time_constant)
    descent = (smoothed[0] - smoothed[-1]) / smoothed[0] if smoothed[0] else 0.0
    tail = tail_change(positions, losses)
    noise = spikes = None
    if not run.series.presmoothed:
        noise = noise_level(losses)
        spikes = count_spikes(losses)
    return Diagnosis(
        noise=noise,
        descent=descent,
        tail_change=tail,
        still_falling=None if tail is None else tail < STILL_FALLING_BELOW,
        spikes=spikes,
        points=len(losses),
    )
