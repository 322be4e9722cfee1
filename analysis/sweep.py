"""What a sweep says as a whole: which remedy moved which figure, and which params matter.

Ablation: the sweeper enqueues one-change-at-a-time trials first, each with the user attr "ablation"
naming its remedy ("baseline" for the unchanged seed setting); each remedy is compared with the baseline.

Importance: Optuna's evaluators, run on an in-memory study rebuilt from the ranked rows, so the
importances explain the very numbers in the ranking table (the common budget and time constant), for
runs from any source, not only from a study.
"""
from __future__ import annotations

import statistics
import warnings
from dataclasses import dataclass
from typing import Any

from analysis.ranking import RankedRow, Ranking, pooled_spread
from analysis.records import is_number
from runs import attrs as attr_keys

MIN_TRIALS_FOR_IMPORTANCE = 4
FIGURES = ("value", "noise", "descent", "spikes")


@dataclass
class Effect:
    """A remedy's change of one figure against the baseline. `spread` is the seed spread of that figure:
    the larger of the two rows' own spreads over repeats and the spread pooled over every repeated
    setting of the sweep; a change inside it is not a finding."""

    remedy: str
    figure: str
    baseline: float
    remedy_value: float | None  # None: the remedy was stopped before the budget the figure is read at
    spread: float | None = None
    stopped: str | None = None  # the racing pruner's decision on a remedy it stopped, in words

    @property
    def within_noise(self) -> bool:
        return self.spread is not None and self.change is not None and abs(self.change) <= self.spread

    @property
    def change(self) -> float | None:
        return None if self.remedy_value is None else self.remedy_value - self.baseline

    @property
    def relative(self) -> float | None:
        return self.change / abs(self.baseline) if self.baseline and self.change is not None else None


def figure_values(row: RankedRow, figure: str) -> list[float]:
    """The figure for each of the row's repeats: the ranked value ("value") or a diagnosis figure."""
    return row.repeats if figure == "value" else row.figure_values(figure)


def figure_of(row: RankedRow, figure: str) -> float | None:
    """The row's figure: the mean over its repeats."""
    if figure == "value":
        return row.value
    values = row.figure_values(figure)
    return statistics.fmean(values) if values else None


def own_spread(row: RankedRow, figure: str) -> float | None:
    """The spread of the figure over the row's own repeats (for the value, as the ranking pooled it)."""
    return row.spread if figure == "value" else pooled_spread([row.figure_values(figure)])


def seed_spread(rows: list[RankedRow], figure: str) -> float | None:
    return pooled_spread([figure_values(row, figure) for row in rows])


def ablation_effects(ranking: Ranking) -> tuple[list[Effect], str | None]:
    """Each remedy's change of each figure against the baseline; a message instead when there is none."""
    ablations: dict[str, RankedRow] = {}
    for row in ranking.main_rows:  # ranked rows come first: a remedy re-run after a failure is read from its ranked run
        if isinstance(row.run.attrs.get(attr_keys.ABLATION), str):
            ablations.setdefault(row.run.attrs[attr_keys.ABLATION], row)
    if not ablations:
        return [], f"no one-change-at-a-time trials (user attr '{attr_keys.ABLATION}') among these runs"
    baseline = ablations.pop(attr_keys.BASELINE, None)
    if baseline is None:
        return [], f"ablation trials found ({', '.join(sorted(ablations))}) but no '{attr_keys.BASELINE}' trial to compare with"
    if not ablations:
        return [], f"only the '{attr_keys.BASELINE}' ablation trial so far; no remedy to compare with it yet"
    effects: list[Effect] = []
    pooled = {figure: seed_spread(ranking.main_rows, figure) for figure in FIGURES}
    for remedy, row in ablations.items():
        for figure in FIGURES:
            before, after = figure_of(baseline, figure), figure_of(row, figure)
            stopped = race_call(row.run.attrs) if figure == "value" else None
            # a remedy the pruner stopped before the common budget has no level there: its line says why
            if before is not None and (after is not None or stopped):
                candidates = (own_spread(baseline, figure), own_spread(row, figure), pooled[figure])
                spreads = [spread for spread in candidates if spread is not None]
                effects.append(Effect(remedy, figure, before, after, max(spreads) if spreads else None, stopped))
    return effects, None


def race_call(run_attrs: dict[str, Any]) -> str | None:
    """What the racing pruner decided on a remedy it stopped (user attr attrs.RACE), in words."""
    race = run_attrs.get(attr_keys.RACE)
    if not isinstance(race, dict):
        return None
    return (f"stopped at {race['stopped_at']} samples, worse than {race['against']} by {race['worse_by']:.3g} "
            f"(bound {race['bound']:.3g})")


def distribution_for(values: list) -> tuple[Any, list]:
    """An Optuna distribution spanning the values (numbers: int/float range, log when wide; else
    categories), and the values in the form that distribution takes."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if all(is_number(value) for value in values):
        low, high = min(values), max(values)
        if all(isinstance(value, int) for value in values):
            return IntDistribution(int(low), int(high)), values
        return FloatDistribution(float(low), float(high), log=low > 0 and high / low >= 100), [float(v) for v in values]
    labels = [str(value) for value in values]
    return CategoricalDistribution(sorted(set(labels))), labels


def param_importances(ranking: Ranking) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Importances per Optuna evaluator; messages for evaluators that cannot run here or too few runs."""
    import optuna
    from optuna.importance import (
        FanovaImportanceEvaluator,
        MeanDecreaseImpurityImportanceEvaluator,
        PedAnovaImportanceEvaluator,
        get_param_importances,
    )

    rows = [row for row in ranking.main_rows if row.value is not None]
    keys = [key for key in ranking.varying_params if all(key in row.run.params for row in rows)]
    if len(rows) < MIN_TRIALS_FOR_IMPORTANCE or not keys:
        return {}, [
            f"parameter importance needs at least {MIN_TRIALS_FOR_IMPORTANCE} ranked runs with varied params "
            f"(have {len(rows)} runs, {len(keys)} varied params)"
        ]
    columns = {key: distribution_for([row.run.params[key] for row in rows]) for key in keys}
    keys = [key for key in keys if not columns[key][0].single()]
    if not keys:
        return {}, ["parameter importance: no param takes two values among the ranked runs"]
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" line for a study of our own
    try:
        study = optuna.create_study(direction=ranking.direction)
    finally:
        optuna.logging.set_verbosity(verbosity)
    study.add_trials(
        optuna.trial.create_trial(
            params={key: columns[key][1][index] for key in keys},
            distributions={key: columns[key][0] for key in keys},
            value=row.value,
        )
        for index, row in enumerate(rows)
    )
    importances: dict[str, dict[str, float]] = {}
    messages: list[str] = []
    for evaluator in (PedAnovaImportanceEvaluator, FanovaImportanceEvaluator, MeanDecreaseImpurityImportanceEvaluator):
        label = evaluator.__name__.removesuffix("ImportanceEvaluator")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                importances[label] = get_param_importances(study, evaluator=evaluator())
            except ImportError:
                messages.append(f"{label} importance needs scikit-learn (pip install scikit-learn)")
            except (ValueError, RuntimeError) as error:
                messages.append(f"{label} importance could not be computed: {error}")
        messages.extend(f"{label}: {warning.message}" for warning in caught)
    return importances, messages
