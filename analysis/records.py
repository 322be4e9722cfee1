"""One record type for a run, whatever wrote it (our run dirs, LLaMA-Factory, Optuna, W&B).

Every loader turns its input into `RunRecord`s so ranking, diagnosis and plots never care where a run
came from. Inputs that cannot be read become `problems` (one line each, naming the file and the fix)
instead of exceptions, so one broken run never hides the others.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

UNITS = ("samples", "tokens", "steps")


class AnalysisInputError(Exception):
    """Input the analysis cannot use at all (no runs, unknown study, bad option); the CLI exits 2."""


@dataclass
class Series:
    """A training-loss series over three x axes; a list is empty when the source did not record it.

    `presmoothed` marks values that are already smoothed (an Optuna trial's intermediate values are the
    objective the training callback reported), so ranking must read them, not smooth them again.
    """

    samples: list[float] = field(default_factory=list)
    tokens: list[float] = field(default_factory=list)
    steps: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    presmoothed: bool = False

    def positions(self, unit: str) -> list[float]:
        """The x axis in `unit`; empty when this run did not record that unit for every point."""
        if unit not in UNITS:
            raise AnalysisInputError(f"unknown unit {unit!r}; choose one of {', '.join(UNITS)}")
        values = getattr(self, unit)
        return values if len(values) == len(self.loss) else []


@dataclass
class RunRecord:
    """A run as the analysis sees it.

    params: flattened config keys (Hydra override keys such as "optimizer.lr"); summary: the last value
    of every numeric metric the run recorded (what `--by METRIC` ranks on); attrs: Optuna user attrs or
    similar tags ("ablation", "values_per_seed", "run_dirs"); result: our result.json when the run wrote one;
    heldout: its eval.json (held-out metrics written by `python -m judge`) when it has one; notes:
    caveats about how a figure was derived, shown beside the run's rank.
    """

    name: str
    source: str
    path: str
    status: str = "unknown"
    params: dict[str, Any] = field(default_factory=dict)
    series: Series = field(default_factory=Series)
    eval_loss: float | None = None
    throughput: dict[str, float] = field(default_factory=dict)
    result: dict | None = None
    heldout: dict | None = None
    problems: list[str] = field(default_factory=list)
    summary: dict[str, float] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    group: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class LoadResult:
    """What loading found: the usable runs, and one line per input that was skipped or only partly read."""

    runs: list[RunRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def extend(self, other: LoadResult) -> None:
        self.runs.extend(other.runs)
        self.problems.extend(other.problems)


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config to dotted keys ("optimizer.lr"), the form Hydra overrides and Optuna params use."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{dotted}."))
        elif isinstance(value, (list, tuple)):
            flat[dotted] = json.dumps(value)
        else:
            flat[dotted] = value
    return flat


PLUMBING_KEYS = frozenset({
    "trial", "logger.run_name", "logger.group", "cuda_visible_devices",  # set per job by our sweeper
    "output_dir", "logging_dir", "run_name",  # HF TrainingArguments, as W&B records them
})
PLUMBING_PREFIXES = ("trial.", "_wandb")


def without_plumbing(params: dict[str, Any]) -> dict[str, Any]:
    """Params without the keys that say how and where a run was launched rather than what it trained
    (the sweeper's trial reporter, run names, output folders): they differ between every two runs and
    would otherwise show up as a varied setting."""
    return {key: value for key, value in params.items() if key not in PLUMBING_KEYS and not key.startswith(PLUMBING_PREFIXES)}


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def last_numbers(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The last numeric value of each key over log rows: a run's final metrics. Searched from the end,
    since nearly every key is in the last rows (this is the hot loop when a sweep has many runs)."""
    last: dict[str, float] = {}
    for key in set().union(*rows):
        for row in reversed(rows):
            value = row.get(key)
            if is_number(value):
                last[key] = float(value)
                break
    return last


def read_jsonl(path: Path) -> tuple[list[dict], list[str]]:
    """Rows of a JSON-lines log; a broken line (a write cut off by a crash) becomes a problem, not an error."""
    rows: list[dict] = []
    problems: list[str] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                problems.append(
                    f"{path}: line {number} is not valid JSON (a truncated write?); skipped that line, "
                    "delete or repair it to silence this"
                )
                continue
            if isinstance(row, dict):
                rows.append(row)
            else:
                problems.append(f"{path}: line {number} is not a JSON object; skipped that line")
    return rows, problems


def parse_yaml(text: str) -> Any:
    """YAML through libyaml's C parser when PyYAML has it: Hydra configs are read once per run."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def read_json(path: Path) -> tuple[dict | None, str | None]:
    """A JSON object file, or a problem line saying why it could not be read."""
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        return None, f"{path}: cannot read ({error}); repair or remove the file"
    if not isinstance(value, dict):
        return None, f"{path}: expected a JSON object, found {type(value).__name__}"
    return value, None


def samples_from_steps(steps: list[float], effective_batch: int | None) -> list[float]:
    """Samples seen for sources that log only optimizer steps: steps x effective batch (per-device batch
    x gradient accumulation). Approximate: partial last batches and multi-GPU world size are not known."""
    if not effective_batch:
        return []
    return [step * effective_batch for step in steps]


def check_series_length(record: RunRecord) -> bool:
    """Whether a run has enough points to smooth and compare; adds the problem line when it has not.

    A trial's reported values are kept even when there is one (a trial pruned at its first report is a
    normal part of a sweep); a logged raw loss curve with one point is not a curve."""
    if len(record.series.loss) == 1 and not record.series.presmoothed:
        record.problems.append(
            f"{record.path}: only 1 logged loss point; a curve needs at least 2 (lower logging_steps)"
        )
        return False
    return True
