"""Our own run dirs (docs/run_dir.md): metrics.jsonl, result.json, .hydra/config.yaml and overrides.yaml."""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import yaml

from analysis.eval_results import read_eval
from analysis.records import (
    RunRecord,
    Series,
    flatten,
    last_numbers,
    parse_yaml,
    read_json,
    read_jsonl,
    without_plumbing,
)

METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"


def is_run_dir(path: Path) -> bool:
    return (path / METRICS_FILE).is_file() or (path / RESULT_FILE).is_file()


@functools.cache
def overrides_parser() -> Any:
    """Hydra's parser, built once: it compiles a grammar."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def parse_overrides(overrides: list[str]) -> dict:
    """Hydra's own override grammar, so `optimizer.lr=1e-4` is the float Hydra used (YAML would read a
    string) and the keys match the sweep's Optuna params."""
    params: dict = {}
    for override in overrides_parser().parse_overrides([str(line) for line in overrides]):
        if override.is_delete():
            continue
        value = override.value()
        params[override.key_or_group] = json.dumps(value) if isinstance(value, (list, dict)) else value
    return params


def read_hydra_params(run_dir: Path) -> tuple[dict, list[str]]:
    """The composed config flattened, with the run's own overrides on top (they name what was varied)."""
    from hydra.errors import HydraException  # imported here: Hydra is not needed for other sources

    params: dict = {}
    config_path = run_dir / ".hydra" / "config.yaml"
    overrides_path = run_dir / ".hydra" / "overrides.yaml"
    try:
        if config_path.is_file():
            params.update(flatten(parse_yaml(config_path.read_text(encoding="utf-8")) or {}))
        if overrides_path.is_file():
            params.update(parse_overrides(parse_yaml(overrides_path.read_text(encoding="utf-8")) or []))
    except (yaml.YAMLError, HydraException) as error:
        return params, [f"{run_dir}/.hydra: unreadable config or overrides ({error}); params left out for this run"]
    return without_plumbing(params), []


def load_run_dir(run_dir: Path, name: str) -> RunRecord:
    """One run dir as a record; what is missing or broken is listed in `problems`."""
    record = RunRecord(name=name, source="rundir", path=str(run_dir))
    rows: list[dict] = []
    if (run_dir / METRICS_FILE).is_file():
        rows, problems = read_jsonl(run_dir / METRICS_FILE)
        record.problems.extend(problems)
    train = [row for row in rows if row.get("loss") is not None]
    evals = [row["eval_loss"] for row in rows if row.get("eval_loss") is not None]
    record.series = Series(
        samples=[float(row["samples"]) for row in train if row.get("samples") is not None],
        tokens=[float(row["tokens"]) for row in train if row.get("tokens") is not None],
        steps=[float(row["step"]) for row in train if row.get("step") is not None],
        loss=[float(row["loss"]) for row in train],
    )
    record.eval_loss = float(evals[-1]) if evals else None
    record.summary = last_numbers(rows)
    record.throughput = {key: record.summary[key] for key in ("samples_per_s", "tokens_per_s") if key in record.summary}
    record.params, problems = read_hydra_params(run_dir)
    record.problems.extend(problems)
    if (run_dir / RESULT_FILE).is_file():
        result, problem = read_json(run_dir / RESULT_FILE)
        if problem:
            record.problems.append(problem)
        record.result = result
    record.heldout, problem = read_eval(run_dir)
    if problem:
        record.problems.append(problem)
    if record.result:
        record.status = str(record.result.get("status") or "unknown")
        if record.result.get("objective") is not None:
            record.summary["objective"] = float(record.result["objective"])
    elif rows:
        record.status = "running"
    return record
