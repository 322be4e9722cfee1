"""Rank runs fairly: every run read at one budget with one time constant, repeats pooled.

Why a common budget: a run that trained longer has a lower loss for that reason alone. The default
budget is the smallest final position among the comparable runs; runs that ended before half of the
median final position (pruned early, crashed) are flagged "too short" instead of dragging the budget
down. The time constant defaults to 10% of the budget and is the same for every run.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from analysis.diagnosis import Diagnosis, diagnose
from analysis.records import AnalysisInputError, RunRecord, is_number
from analysis.smoothing import default_time_constant, time_constant_ema, value_at_budget

SEED_KEYS = frozenset({"seed", "trainer.seed"})
SEED_VALUES_ATTR = "values_per_seed"  # the sweeper's user attrs for repeats
SPREAD_ATTR = "spread"
SHORT_FRACTION = 0.5
TIE_TOLERANCE = 1e-9
STATE_ORDER = ("completed", "running", "pruned", "failed", "waiting", "unknown")


@dataclass
class RankedRow:
    """One line of the ranking: a run, or several repeats of one setting (same params but the seed)."""

    members: list[RunRecord]
    value: float | None = None
    spread: float | None = None
    repeats: list[float] = field(default_factory=list)
    rank: int | None = None
    flags: list[str] = field(default_factory=list)
    diagnosis: Diagnosis | None = None
    diagnoses: list[Diagnosis] = field(default_factory=list)

    @property
    def run(self) -> RunRecord:
        return self.members[0]

    @property
    def name(self) -> str:
        return self.run.name if len(self.members) == 1 else f"{self.run.name} (+{len(self.members) - 1} repeats)"

    def figure_values(self, figure: str) -> list[float]:
        """One diagnosis figure ("noise", "descent", ...) of every repeat that has it."""
        values = (getattr(diagnosis, figure) for diagnosis in self.diagnoses)
        return [float(value) for value in values if value is not None]


def pooled_spread(groups: list[list[float]]) -> float | None:
    """The seed spread: the std of repeats around their own setting's mean, pooled over every setting
    with two or more repeats (each weighted by its degrees of freedom); None without repeats."""
    repeated = [values for values in groups if len(values) >= 2]
    freedom = sum(len(values) - 1 for values in repeated)
    if not freedom:
        return None
    squares = sum(statistics.variance(values) * (len(values) - 1) for values in repeated)
    return (squares / freedom) ** 0.5


@dataclass
class Ranking:
    rows: list[RankedRow]
    by: str
    direction: str
    unit: str
    budget: float | None
    time_constant: float | None
    varying_params: list[str]

    def describe(self) -> str:
        """The sentence every output carries, so a reader knows what the numbers mean."""
        if self.budget is None or self.time_constant is None:
            smoothing = f"no {self.unit} series to smooth"
        else:
            smoothing = (
                f"smoothed loss read at a common budget of {self.budget:g} {self.unit}, "
                f"time constant {self.time_constant:g} {self.unit}"
            )
        what = "smoothed_loss" if self.by == "smoothed_loss" else f"{self.by} (last recorded value)"
        return f"ranked by {what}, {self.direction}; {smoothing}"


def common_budget(finals: list[float], short_fraction: float = SHORT_FRACTION) -> tuple[float | None, float]:
    """The smallest final position among runs not shorter than `short_fraction` of the median final."""
    if not finals:
        return None, 0.0
    threshold = short_fraction * statistics.median(finals)
    comparable = [final for final in finals if final >= threshold]
    return min(comparable), threshold


def why_not_at_budget(run: RunRecord, final: float | None, short_below: float, budget: float | None, unit: str) -> str | None:
    """Why a run cannot be read at the common budget (the flag shown beside it), or None when it can."""
    if final is None:
        return f"no {unit} series" if run.series.loss else "no loss logged"
    if final < short_below:
        return f"too short ({final:g} < half the median, {short_below:g} {unit})"
    if budget is not None and final < budget:
        return f"did not reach the budget ({final:g} {unit})"
    return None


def smoothed_value(run: RunRecord, unit: str, budget: float, time_constant: float) -> float | None:
    positions = run.series.positions(unit)
    if run.series.presmoothed:
        return value_at_budget(positions, run.series.loss, budget)
    return value_at_budget(positions, time_constant_ema(positions, run.series.loss, time_constant), budget)


def group_repeats(runs: list[RunRecord]) -> list[list[RunRecord]]:
    """Runs whose params differ only in the seed are repeats of one setting; runs without params stand alone."""
    groups: dict[tuple, list[RunRecord]] = {}
    for index, run in enumerate(runs):
        key: tuple = tuple(sorted((k, repr(v)) for k, v in run.params.items() if k not in SEED_KEYS))
        groups.setdefault(key if key else ("run", index), []).append(run)
    return list(groups.values())


def varying_params(runs: list[RunRecord]) -> list[str]:
    """Params that take two or more values among the runs that have them: the only ones worth showing
    (a key that only one source writes, such as LLaMA-Factory's argument names, does not count)."""
    keys = sorted({key for run in runs for key in run.params})
    return [key for key in keys if len({repr(run.params[key]) for run in runs if key in run.params}) > 1]


def metric_value(run: RunRecord, by: str) -> float | None:
    if by == "eval_loss":
        return run.eval_loss
    value = run.summary.get(by)
    return float(value) if is_number(value) else None


def first_objective(value: Any) -> float | None:
    """A number, or the first entry of a per-objective list (the sweeper stores lists for multi-objective)."""
    if isinstance(value, list) and value:
        value = value[0]
    return float(value) if is_number(value) else None


def pool(row: RankedRow, values: list[float | None], by: str) -> None:
    """Mean and spread (sample std) over a row's repeats.

    A row of several run dirs pools their values. A lone trial record (no run dirs loaded) keeps its
    value at the common budget, read from the curve its first seed reported, and takes its spread from
    the sweeper's user attrs: the std of "values_per_seed", else "spread" (the objective only).
    """
    row.repeats = [v for v in values if v is not None]
    if row.repeats:
        row.value = statistics.fmean(row.repeats)
    if len(row.repeats) >= 2:
        row.spread = statistics.stdev(row.repeats)
        return
    if row.value is None or len(row.members) > 1 or row.run.source != "optuna" or by != "smoothed_loss":
        return
    attrs = row.run.attrs
    per_seed = [first_objective(v) for v in attrs.get(SEED_VALUES_ATTR) or []]
    if len(per_seed) >= 2 and all(v is not None for v in per_seed):
        row.repeats = per_seed
        row.spread = statistics.stdev(per_seed)
    elif first_objective(attrs.get(SPREAD_ATTR)) is not None:
        row.spread = first_objective(attrs[SPREAD_ATTR])


def flag_neighbours(ranked: list[RankedRow]) -> None:
    """Ties share a rank; a gap inside the repeats' spread is "within noise" and not called a win."""
    for position, row in enumerate(ranked):
        row.rank = position + 1
        if position == 0:
            continue
        above = ranked[position - 1]
        gap = abs(row.value - above.value)
        if gap <= TIE_TOLERANCE * max(1.0, abs(above.value)):
            row.rank = above.rank
            row.flags.append(f"tie with #{above.rank}")
        elif gap <= max(row.spread or 0.0, above.spread or 0.0):
            row.flags.append(f"within noise of #{above.rank}")


def rank_runs(
    runs: list[RunRecord],
    by: str = "smoothed_loss",
    unit: str = "samples",
    budget: float | None = None,
    time_constant: float | None = None,
    direction: str = "minimize",
    short_fraction: float = SHORT_FRACTION,
) -> Ranking:
    """Rank `runs` by the smoothed loss at a common budget (default), eval_loss, or any recorded metric.

    The common budget and time constant are worked out for every `by`, because diagnosis and the
    overlay plot read the curves with them too.
    """
    if direction not in ("minimize", "maximize"):
        raise AnalysisInputError(f"direction must be minimize or maximize, got {direction!r}")
    if by not in ("smoothed_loss", "eval_loss") and not any(metric_value(run, by) is not None for run in runs):
        known = sorted({key for run in runs for key in run.summary} | {"smoothed_loss", "eval_loss"})
        raise AnalysisInputError(f"no run recorded the metric {by!r}; recorded metrics: {', '.join(known)}")
    finals = {id(run): run.series.positions(unit)[-1] for run in runs if run.series.positions(unit)}
    default_budget, short_below = common_budget(list(finals.values()), short_fraction)
    budget = budget if budget is not None else default_budget
    if time_constant is None and budget is not None:
        time_constant = default_time_constant(budget)
    rows: list[RankedRow] = []
    for members in group_repeats(runs):
        row = RankedRow(members=members)
        values: list[float | None] = []
        for run in members:
            final = finals.get(id(run))
            who = f"{run.name}: " if len(members) > 1 else ""
            row.flags.extend(who + note for note in run.notes)
            unreadable = why_not_at_budget(run, final, short_below, budget, unit)
            if unreadable:
                row.flags.append(who + unreadable)
            if by == "smoothed_loss":
                readable = unreadable is None and budget is not None
                values.append(smoothed_value(run, unit, budget, time_constant) if readable else None)
            else:
                values.append(metric_value(run, by))
        pool(row, values, by)
        if row.value is None and by != "smoothed_loss":
            row.flags.append(f"no {by} recorded")
        if budget is not None and time_constant is not None:
            row.diagnoses = [d for d in (diagnose(run, unit, time_constant) for run in members) if d is not None]
            row.diagnosis = diagnose(row.run, unit, time_constant)
        rows.append(row)
    sign = 1.0 if direction == "minimize" else -1.0
    ranked = sorted((row for row in rows if row.value is not None), key=lambda row: sign * row.value)
    unranked = sorted(
        (row for row in rows if row.value is None),
        key=lambda row: STATE_ORDER.index(row.run.status) if row.run.status in STATE_ORDER else len(STATE_ORDER),
    )
    flag_neighbours(ranked)
    return Ranking(
        rows=ranked + unranked,
        by=by,
        direction=direction,
        unit=unit,
        budget=budget,
        time_constant=time_constant,
        varying_params=varying_params(runs),
    )
