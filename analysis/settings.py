"""What tells a ranked row apart, in the words of the sweep: its remedy, or the settings it changed.

A reader compares settings, not trial numbers. A one-change-at-a-time trial is named by its remedy
(user attr "ablation"); any other row by the params it changed from the baseline, or, in a sweep
without a baseline, by its varied params. Settings are written as Hydra overrides
(`trainer.shuffle=false`), so a reader can paste them onto the command line.
"""
from __future__ import annotations

from typing import Any

from analysis.ranking import SEED_KEYS, RankedRow, Ranking
from runs import attrs as attr_keys


def override_value(value: Any) -> str:
    """A param value as a Hydra override writes it: true/false, 4 significant digits, text as is."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def overrides_text(params: dict[str, Any], short: bool = False) -> str:
    """`optimizer.lr=0.002 trainer.shuffle=false`; `short` keeps the last part of each key (lr=0.002)."""
    return " ".join(f"{key.rsplit('.', 1)[-1] if short else key}={override_value(value)}" for key, value in params.items())


def remedy(row: RankedRow) -> str | None:
    """The remedy a one-change-at-a-time trial tried ("baseline" for the unchanged setting), else None."""
    name = row.run.attrs.get(attr_keys.ABLATION)
    return name if isinstance(name, str) else None


def baseline_row(ranking: Ranking) -> RankedRow | None:
    """The baseline of the sweep's ablation (ranked rows first), or None without one."""
    return next((row for row in ranking.rows if remedy(row) == attr_keys.BASELINE), None)


def shown_params(ranking: Ranking) -> list[str]:
    """The varied params that describe a setting: the seed only tells repeats apart."""
    return [key for key in ranking.varying_params if key not in SEED_KEYS]


def changed_params(row: RankedRow, ranking: Ranking, baseline: RankedRow | None) -> dict[str, Any]:
    """The row's varied params that differ from the baseline's (all of its varied params without a baseline)."""
    params = row.run.params
    reference = baseline.run.params if baseline is not None else None
    return {
        key: params[key] for key in shown_params(ranking)
        if key in params and (reference is None or repr(reference.get(key)) != repr(params[key]))
    }


def setting_name(row: RankedRow, ranking: Ranking, baseline: RankedRow | None, short: bool = True) -> str:
    """The remedy, or the changed settings (`short`: the last part of each key), or the run's name
    when it has no params to tell it by."""
    name = remedy(row)
    if name is not None:
        return name
    changed = changed_params(row, ranking, baseline)
    if changed:
        return overrides_text(changed, short)
    return "same settings as the baseline" if baseline is not None and row.run.params else row.run.name
