"""eval.json: a run's held-out evaluation, written beside the run by `python -m judge` and read here.

Its name and fields are part of the run contract (runs/files.py, runs/evaluation.py).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from analysis.records import is_number, read_json
from runs.evaluation import ADAPTER_KEY, BASE_KEY, PRIMARY_KEY
from runs.files import EVAL_FILE

COLUMN_PREFIX = "heldout_"  # a ranking column per held-out metric: heldout_accuracy, heldout_eval_loss, ...


def read_eval(run_dir: Path) -> tuple[dict | None, str | None]:
    """The run's eval.json (None when it has none), or the problem line when it cannot be read."""
    path = Path(run_dir) / EVAL_FILE
    if not path.is_file():
        return None, None
    document, problem = read_json(path)
    if document is not None and not isinstance(document.get(ADAPTER_KEY), dict):
        return None, f"{path}: no \"{ADAPTER_KEY}\" metrics; rerun python -m judge on this run"
    return document, problem


def heldout_columns(document: dict | None) -> dict[str, float]:
    """The adapter's held-out numbers as ranking columns (heldout_<metric>)."""
    if not document:
        return {}
    return {f"{COLUMN_PREFIX}{key}": float(value) for key, value in document[ADAPTER_KEY].items() if is_number(value)}


def primary(document: dict) -> tuple[str, str] | None:
    """(metric name, minimize | maximize) that decides which run is best on held-out data."""
    chosen = document.get(PRIMARY_KEY) or {}
    if chosen.get("name") and chosen.get("direction") in ("minimize", "maximize"):
        return str(chosen["name"]), str(chosen["direction"])
    return None


def heldout_verdict(ranked: Sequence[tuple[str, dict | None]], by: str = "smoothed training loss") -> list[str]:
    """Sentences comparing the ranking's order (by smoothed training loss, say) with the held-out metric.

    `ranked`: (run name, its eval.json or None), best by `by` first. Says whether the
    first run is also the best on held-out data (runs with the same best value are named as a tie,
    never one of them as "the best"), and how the best compares with the base model.
    """
    evaluated = [(name, document) for name, document in ranked if document and primary(document)]
    if not evaluated:
        return []
    metric, direction = primary(evaluated[0][1])
    scored = [(name, doc, doc[ADAPTER_KEY].get(metric)) for name, doc in evaluated if is_number(doc[ADAPTER_KEY].get(metric))]
    if not scored:
        return []
    sign = 1.0 if direction == "minimize" else -1.0
    best_name, best_doc, best_value = min(scored, key=lambda entry: sign * entry[2])
    tied = [name for name, _, value in scored if value == best_value]
    first_name, _, first_value = scored[0]
    if len(tied) == len(scored) > 1:
        lines = [f"Held-out {metric}: all {len(scored)} evaluated runs tie ({metric} {best_value:.4g}); "
                 "held-out data does not tell them apart."]
    elif len(tied) > 1:
        first = (f"the run ranked best by {by} ({first_name}) is one of them" if first_name in tied
                 else f"the run ranked best by {by}, {first_name}, has {first_value:.4g}")
        lines = [f"Held-out {metric}: {len(tied)} of the {len(scored)} evaluated runs tie for best "
                 f"({metric} {best_value:.4g}: {', '.join(tied)}); {first}."]
    elif best_name == first_name:
        lines = [f"Held-out {metric}: the run ranked best by {by} ({first_name}) is also the best "
                 f"of the {len(scored)} evaluated ({metric} {first_value:.4g})."]
    else:
        lines = [f"Held-out {metric} disagrees with the ranking by {by}: {best_name} is best on held-out data "
                 f"({metric} {best_value:.4g}), while the run ranked best by {by}, {first_name}, "
                 f"has {first_value:.4g}."]
    base_value = (best_doc.get(BASE_KEY) or {}).get(metric)
    if is_number(base_value):
        better = sign * best_value < sign * base_value
        subject = f"{best_name} is" if len(tied) == 1 else f"the {len(tied)} tied runs are"
        lines.append(f"The base model with no adapter has {metric} {base_value:.4g} on the same rows: "
                     f"{subject} {'better' if better else 'not better'}.")
    return lines


def columns_of(documents: Sequence[dict | None]) -> list[str]:
    """Held-out column names present in any of the documents, in first-seen order."""
    names: dict[str, None] = {}
    for document in documents:
        names.update(dict.fromkeys(heldout_columns(document)))
    return list(names)

