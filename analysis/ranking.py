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
from analysis.streams import comparable_groups
from runs import attrs as attr_keys
from runs.smoothing import default_time_constant, time_constant_ema, value_at_budget

SEED_KEYS = frozenset({"seed", "trainer.seed"})
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
    group: str = "A"

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
class GroupSummary:
    """One group of comparable runs: its size, why it is apart from group A, and how it was read."""

    label: str
    size: int
    reason: str | None
    notes: list[str]
    budget: float | None
    time_constant: float | None
    seed_spread: float | None


@dataclass
class Ranking:
    """Rows of group A (the ranking) first, then each set-apart group ranked among itself, then the
    unranked rows. budget, time_constant and seed_spread are group A's."""

    rows: list[RankedRow]
    by: str
    direction: str
    unit: str
    budget: float | None
    time_constant: float | None
    varying_params: list[str]
    groups: list[GroupSummary] = field(default_factory=list)
    seed_spread: float | None = None

    @property
    def main_rows(self) -> list[RankedRow]:
        """The rows of group A: what ablation, importance and the overlay compare."""
        return [row for row in self.rows if row.group == "A"]

    def notes(self) -> list[str]:
        """In words: the seed spread the calls were judged by, and each group set apart and why."""
        lines = []
        if self.seed_spread is None:
            lines.append("no repeated settings (hydra.sweeper.repeats): differences cannot be judged against "
                         "the seed spread")
        else:
            lines.append(f"seed spread (std over repeats, pooled): {self.seed_spread:.4g}; closer calls are marked "
                         "within noise")
        for group in self.groups:
            lines.extend(group.notes)
            if group.reason is not None:
                budget = "" if group.budget is None else f", read at {group.budget:g} {self.unit}"
                lines.append(f"group {group.label} ({group.size} runs{budget}) set apart: {group.reason}")
        return lines

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


def state_order(run: RunRecord) -> int:
    return STATE_ORDER.index(run.status) if run.status in STATE_ORDER else len(STATE_ORDER)


def group_repeats(runs: list[RunRecord]) -> list[list[RunRecord]]:
    """Runs whose params differ only in the seed are repeats of one setting; runs without params stand
    alone. A completed repeat leads its group (its name and state head the row)."""
    groups: dict[tuple, list[RunRecord]] = {}
    for index, run in enumerate(runs):
        key: tuple = tuple(sorted((k, repr(v)) for k, v in run.params.items() if k not in SEED_KEYS))
        groups.setdefault(key if key else ("run", index), []).append(run)
    return [sorted(members, key=state_order) for members in groups.values()]


def varying_params(runs: list[RunRecord]) -> list[str]:
    """Params that take two or more values among the runs that have them: the only ones worth showing
    (a key that only one source writes, such as LLaMA-Factory's argument names, does not count). A
    trial read from a study has only its overrides, so a key that some trials override and others do
    not (they ran the base config's value) varies too. A field of a config group that only follows the
    group's choice (`scheduler.name` beside `scheduler=cosine`) says nothing more and is left out."""
    keys = sorted({key for run in runs for key in run.params})
    trials = [run for run in runs if run.source == "optuna"]
    varying = [
        key for key in keys
        if len({repr(run.params[key]) for run in runs if key in run.params}) > 1
        or 0 < sum(key in run.params for run in trials) < len(trials)
    ]
    return [key for key in varying if not follows_its_group(key, varying, runs)]


def follows_its_group(key: str, keys: list[str], runs: list[RunRecord]) -> bool:
    """Whether `key` ("group.field") only restates its group's choice ("group", also varying): every run
    that has it has the group too, and the two determine each other."""
    group = key.rsplit(".", 1)[0]
    if "." not in key or group not in keys:
        return False
    pairs = set()
    for run in runs:
        if key in run.params:
            if group not in run.params:
                return False
            pairs.add((repr(run.params[group]), repr(run.params[key])))
    return len(pairs) == len({choice for choice, _ in pairs}) == len({value for _, value in pairs})


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
    per_seed = [first_objective(v) for v in attrs.get(attr_keys.VALUES_PER_SEED) or []]
    if len(per_seed) >= 2 and all(v is not None for v in per_seed):
        row.repeats = per_seed
        row.spread = statistics.stdev(per_seed)
    elif first_objective(attrs.get(attr_keys.SPREAD)) is not None:
        row.spread = first_objective(attrs[attr_keys.SPREAD])


def flag_neighbours(ranked: list[RankedRow], seed_spread: float | None) -> None:
    """Ties share a rank; a gap inside the seed spread (the two rows' own, or `seed_spread` pooled over
    the group's repeated settings) is "within noise" and not called a win."""
    for position, row in enumerate(ranked):
        row.rank = position + 1
        if position == 0:
            continue
        above = ranked[position - 1]
        gap = abs(row.value - above.value)
        noise = max(row.spread or 0.0, above.spread or 0.0, seed_spread or 0.0)
        if gap <= TIE_TOLERANCE * max(1.0, abs(above.value)):
            row.rank = above.rank
            row.flags.append(f"tie with #{above.rank}")
        elif gap <= noise:
            row.flags.append(f"within noise of #{above.rank} (gap {gap:.3g} <= seed spread {noise:.3g})")


def rank_group(
    runs: list[RunRecord], by: str, unit: str, budget: float | None, time_constant: float | None, short_fraction: float
) -> tuple[list[RankedRow], float | None, float | None]:
    """The rows of one group of comparable runs, unsorted, and the budget and time constant they were read with."""
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
    return rows, budget, time_constant


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

    Only runs that used the same data are ranked against each other (analysis.streams): group A, the
    largest such group, is the ranking; every other group is ranked among itself after it, with the
    reason. The common budget and time constant are worked out per group for every `by`, because
    diagnosis and the overlay plot read the curves with them too. A gap between neighbours smaller than
    the seed spread (their own, or pooled over the group's repeated settings) is marked "within noise".
    """
    if direction not in ("minimize", "maximize"):
        raise AnalysisInputError(f"direction must be minimize or maximize, got {direction!r}")
    if by not in ("smoothed_loss", "eval_loss") and not any(metric_value(run, by) is not None for run in runs):
        known = sorted({key for run in runs for key in run.summary} | {"smoothed_loss", "eval_loss"})
        raise AnalysisInputError(f"no run recorded the metric {by!r}; recorded metrics: {', '.join(known)}")
    sign = 1.0 if direction == "minimize" else -1.0
    ordered: list[RankedRow] = []
    unranked: list[RankedRow] = []
    readings: list[tuple[float | None, float | None, float | None]] = []
    groups = comparable_groups(runs, by)
    for group in groups:
        rows, group_budget, group_tau = rank_group(group.runs, by, unit, budget, time_constant, short_fraction)
        for row in rows:
            row.group = group.label
            row.flags.extend(group.flags[id(run)] for run in row.members if id(run) in group.flags)
        ranked = sorted((row for row in rows if row.value is not None), key=lambda row: sign * row.value)
        spread = pooled_spread([row.repeats for row in ranked])
        flag_neighbours(ranked, spread)
        ordered.extend(ranked)
        unranked.extend(row for row in rows if row.value is None)
        readings.append((group_budget, group_tau, spread))
    unranked.sort(key=lambda row: state_order(row.run))
    main_budget, main_tau, main_spread = readings[0]
    return Ranking(
        rows=ordered + unranked,
        by=by,
        direction=direction,
        unit=unit,
        budget=main_budget,
        time_constant=main_tau,
        varying_params=varying_params(runs),
        groups=[GroupSummary(group.label, len(group.runs), group.reason, group.notes, *reading)
                for group, reading in zip(groups, readings, strict=True)],
        seed_spread=main_spread,
    )
