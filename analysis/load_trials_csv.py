"""A sweep dir's trials.csv: Optuna's `study.trials_dataframe()` saved as CSV (columns number, value,
state, params_<name>, user_attrs_<name>), which our sweeper writes beside the run dirs it launched.

Read when no storage is given, so `rank multirun/DATE/TIME` knows each run dir's trial, state and
ablation remedy without the study's database. pandas writes list cells as Python literals
("['multirun/.../0']"), hence ast.literal_eval.
"""
from __future__ import annotations

import ast
import csv
from pathlib import Path
from typing import Any

from analysis.load_optuna import TRIAL_STATES, params_with_overrides
from analysis.records import LoadResult, RunRecord, is_number

PARAM_PREFIX = "params_"
ATTR_PREFIX = "user_attrs_"


def parse_cell(text: str) -> Any:
    """A CSV cell as the value it was: number, list, bool, None for an empty cell, else the text."""
    if text == "":
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def columns_with(row: dict[str, str], prefix: str) -> dict[str, Any]:
    return {key[len(prefix) :]: parse_cell(text) for key, text in row.items() if key.startswith(prefix) and text != ""}


def load_trials_csv(path: Path) -> LoadResult:
    """One trial record per line (no loss series: the run dirs carry those), to be merged into them."""
    result = LoadResult()
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, csv.Error, UnicodeDecodeError) as error:
        return LoadResult(problems=[f"{path}: cannot read ({error}); trial states and ablation names left out"])
    for line, row in enumerate(rows, start=2):
        number = parse_cell(row.get("number") or "")
        if not is_number(number):
            result.problems.append(f"{path}: line {line} has no trial number; skipped that line")
            continue
        value = parse_cell(row.get("value") or "")
        attrs = columns_with(row, ATTR_PREFIX)
        result.runs.append(RunRecord(
            name=f"trial-{int(number)}",
            source="optuna",
            path=f"{path}#{int(number)}",
            status=TRIAL_STATES.get(row.get("state") or "", "unknown"),
            params=params_with_overrides(columns_with(row, PARAM_PREFIX), attrs),
            summary={"objective": float(value)} if is_number(value) else {},
            attrs=attrs,
        ))
    return result
