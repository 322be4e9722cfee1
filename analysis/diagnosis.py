"""The practitioner's two complaints made measurable, per run: the curve is jagged, and it does not fall
far enough. Plus spikes, the usual cause of a jagged look. All figures are relative to the loss level,
so runs on different tasks (different loss scales) read alike.
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

from analysis.records import RunRecord
from runs.smoothing import time_constant_ema

SPIKE_ROBUST_STDS = 3.0
TAIL_FRACTION = 0.2
STILL_FALLING_BELOW = -0.01
MAD_TO_STD = 1.4826  # MAD of a normal distribution times this is its standard deviation


@dataclass
class Diagnosis:
    """jaggedness: std of (raw - smoothed) / mean smoothed loss. descent: (first - last smoothed) / first.
    tail_change: relative change of the smoothed loss over the last 20% of the run (least-squares slope
    times the window length, over the window's mean); still_falling: tail_change below -1%.
    spikes: raw points more than 3 robust stds (1.4826 x MAD of the residuals) above the smoothed curve.
    The smoothing is causal, so where the loss falls steeply within one time constant its lag adds to
    the jaggedness: compare jaggedness between runs read with the same time constant, as ranking does."""

    jaggedness: float | None
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


def tail_change(positions: list[float], smoothed: list[float], tail_fraction: float = TAIL_FRACTION) -> float | None:
    """Relative change of the smoothed loss across the last `tail_fraction` of the run."""
    start = positions[-1] - tail_fraction * (positions[-1] - positions[0])
    window = [(x, y) for x, y in zip(positions, smoothed, strict=True) if x >= start]
    xs = [x for x, _ in window]
    ys = [y for _, y in window]
    slope = least_squares_slope(xs, ys)
    level = statistics.fmean(ys) if ys else 0.0
    if slope is None or level == 0:
        return None
    return slope * (xs[-1] - xs[0]) / level


def count_spikes(residuals: list[float], robust_stds: float = SPIKE_ROBUST_STDS) -> int:
    median = statistics.median(residuals)
    robust_std = MAD_TO_STD * statistics.median(abs(r - median) for r in residuals)
    if robust_std == 0:
        return 0
    return sum(1 for r in residuals if r - median > robust_stds * robust_std)


def diagnose(run: RunRecord, unit: str, time_constant: float) -> Diagnosis | None:
    """Figures for one run's loss curve, smoothed with the ranking's time constant; None without a curve.

    A presmoothed series (Optuna intermediate values) has no raw noise left, so jaggedness and spikes
    are None for it; descent and the tail still say whether it was falling.
    """
    positions = run.series.positions(unit)
    losses = run.series.loss
    if len(positions) < 2:
        return None
    smoothed = losses if run.series.presmoothed else time_constant_ema(positions, losses, time_constant)
    descent = (smoothed[0] - smoothed[-1]) / smoothed[0] if smoothed[0] else 0.0
    tail = tail_change(positions, smoothed)
    jaggedness = spikes = None
    if not run.series.presmoothed:
        residuals = [raw - smooth for raw, smooth in zip(losses, smoothed, strict=True)]
        level = statistics.fmean(smoothed)
        jaggedness = statistics.pstdev(residuals) / level if level else None
        spikes = count_spikes(residuals)
    return Diagnosis(
        jaggedness=jaggedness,
        descent=descent,
        tail_change=tail,
        still_falling=None if tail is None else tail < STILL_FALLING_BELOW,
        spikes=spikes,
        points=len(losses),
    )
