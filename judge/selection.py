"""Which runs to judge: the best `top` of a sweep folder or an Optuna study, as analysis ranks them
(smoothed training loss at a common budget), kept to run dirs that hold an adapter."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis import load_runs, rank_runs
from analysis.load_optuna import named_run_dirs
from analysis.records import AnalysisInputError
from judge.errors import JudgeInputError
from judge.models import ADAPTER_WEIGHTS

ADAPTER_CONFIG = "adapter_config.json"
NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class Candidate:
    """A trained adapter to judge: where it is, what it is called, and its place in the training ranking."""

    run_dir: Path
    name: str
    rank: int | None
    smoothed_loss: float | None


def adapter_name(task: str, run_name: str) -> str:
    """A name a server accepts (vLLM's --lora-modules name=path): task and trial, e.g. cate-trial-3."""
    return NAME_UNSAFE.sub("-", f"{task}-{run_name.rsplit('/', 1)[-1]}").strip("-")


def choose(paths: list[str], storage: str | None, study: str | None, task: str | None, top: int) -> list[Candidate]:
    """The run dirs of the `top` best ranked rows (all repeats of a row), best first."""
    for path in paths:
        if not Path(path).exists():
            raise JudgeInputError(f"{path}: no such run dir or sweep folder; give a folder written by train.py")
    try:
        loaded = load_runs(paths, storage=storage, study=study)
        if storage is not None:
            named = sorted({path for run in loaded.runs for path in named_run_dirs(run) if Path(path).is_dir()})
            loaded = load_runs([*paths, *named], storage=storage, study=study)
    except AnalysisInputError as error:
        raise JudgeInputError(str(error)) from None
    runs = [run for run in loaded.runs if run.source == "rundir" and (Path(run.path) / ADAPTER_WEIGHTS).is_file()]
    if task is not None:
        runs = [run for run in runs if run.params.get("task.name") == task]
    if not runs:
        where = ", ".join([*paths, *([storage] if storage else [])])
        wanted = f" of task {task!r}" if task else ""
        raise JudgeInputError(f"{where}: no run dir{wanted} with a trained adapter ({ADAPTER_WEIGHTS}) found; "
                              "give the sweep's folder (multirun/DATE/TIME) or a storage whose trials' run dirs exist here")
    ranking = rank_runs(runs)
    chosen = []
    for row in [row for row in ranking.rows if row.rank is not None][:top]:
        for member in row.members:
            task_name = str(member.params.get("task.name", "run"))
            chosen.append(Candidate(Path(member.path), adapter_name(task_name, member.name), row.rank, row.value))
    if not chosen:
        raise JudgeInputError(f"{', '.join(paths) or storage}: none of the runs could be ranked (no loss logged)")
    return unique_names(chosen)


def unique_names(candidates: list[Candidate]) -> list[Candidate]:
    """Repeats of one trial share its name; number them so each adapter has its own."""
    seen: dict[str, int] = {}
    for candidate in candidates:
        count = seen.get(candidate.name, 0)
        seen[candidate.name] = count + 1
        if count:
            candidate.name = f"{candidate.name}-{count + 1}"
    return candidates


def adapter_settings(candidate: Candidate) -> dict[str, Any]:
    """The adapter's adapter_config.json (base model, rank), read with a clear error when it is missing."""
    path = candidate.run_dir / ADAPTER_CONFIG
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise JudgeInputError(f"{path}: cannot read the adapter's config ({error}); is this a finished run dir?") from None
