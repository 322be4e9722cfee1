"""Find runs under the paths a user gives and load each with the reader for its kind.

A path may be a run dir, a Hydra multirun folder or any folder above run dirs (searched recursively),
a LLaMA-Factory output dir, a wandb/ folder or one offline run dir, a glob, or `wandb:ENTITY/PROJECT[/GROUP]`.
A study comes from `storage` (+ `study`); without one, a sweep dir's trials.csv stands in for it.
What cannot be read is reported in `problems` and skipped.
"""
from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from analysis.load_llamafactory import is_llamafactory_dir, load_llamafactory_dir
from analysis.load_optuna import load_study_runs, merge_trials_into_run_dirs, named_run_dirs
from analysis.load_rundir import is_run_dir, load_run_dir
from analysis.load_trials_csv import load_trials_csv
from analysis.load_wandb import is_wandb_run_dir, load_offline_run, load_online_runs
from analysis.records import LoadResult, RunRecord, check_series_length
from runs.files import METRICS_FILE, RESULT_FILE, TRAINER_LOG_FILE, TRIALS_FILE

WANDB_PREFIX = "wandb:"
RUN_FILES = (METRICS_FILE, RESULT_FILE, TRAINER_LOG_FILE, "trainer_state.json")
LOOKED_FOR = "metrics.jsonl / result.json (our runs), trainer_log.jsonl / trainer_state.json (LLaMA-Factory), run-*.wandb"


def run_name(root: Path, run_dir: Path) -> str:
    """The run's path from the folder the user named, prefixed with that folder's own name."""
    relative = run_dir.relative_to(root)
    label = root.resolve().name
    return label if str(relative) == "." else f"{label}/{relative}"


def load_one(run_dir: Path, name: str) -> LoadResult:
    """One run with the reader for its kind; values of the wrong type (a loss written as text, a list
    where a number belongs) make this run a problem rather than stopping the whole analysis."""
    try:
        if is_run_dir(run_dir):
            return LoadResult(runs=[load_run_dir(run_dir, name)])
        if is_llamafactory_dir(run_dir):
            return LoadResult(runs=[load_llamafactory_dir(run_dir, name)])
        return load_offline_run(run_dir, name)
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        return LoadResult(problems=[f"{run_dir}: unexpected content ({type(error).__name__}: {error}); run skipped"])


def find_inputs(root: Path) -> tuple[list[Path], list[Path]]:
    """Every folder under root that is a run of a known kind (not descending into a run or a
    checkpoint), and every sweep's trials.csv found on the way."""
    runs: list[Path] = []
    trial_tables: list[Path] = []
    for current, subdirs, _ in os.walk(root):
        folder = Path(current)
        if is_run_dir(folder) or is_llamafactory_dir(folder) or is_wandb_run_dir(folder):
            runs.append(folder)
            subdirs[:] = []
            continue
        if (folder / TRIALS_FILE).is_file():
            trial_tables.append(folder / TRIALS_FILE)
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("checkpoint-") and d != ".hydra")
    return runs, trial_tables


def load_path(path: str, read_trials_csv: bool = True) -> LoadResult:
    """The runs under one path. With `read_trials_csv`, a sweep's trials.csv names its run dirs'
    trials and ablation remedies; its trials without a run dir here (other sweep dirs of a resumed
    study) are left out."""
    root = Path(path)
    if not root.exists():
        return LoadResult(problems=[f"{path}: no such file or folder"])
    if root.is_file():
        if root.name not in RUN_FILES and not (root.name.startswith("run-") and root.suffix == ".wandb"):
            return LoadResult(problems=[f"{path}: not a run file; give a run folder (or its {', '.join(RUN_FILES)})"])
        root = root.parent
    result = LoadResult()
    run_dirs, trial_tables = find_inputs(root)
    if not run_dirs:
        result.problems.append(f"{path}: no runs found (looked for {LOOKED_FOR})")
    for run_dir in run_dirs:
        result.extend(load_one(run_dir, run_name(root, run_dir)))
    if read_trials_csv:
        loaded = {Path(run.path).resolve() for run in result.runs}
        for table in with_sibling_tables(trial_tables):
            trials = load_trials_csv(table)
            result.extend(trials)
            result.extend(load_other_sweep_dirs(trials.runs, table.parent, loaded))
        result.runs = [run for run in merge_trials_into_run_dirs(result.runs) if run.source != "optuna"]
    return result


def names_a_run_in(table: Path, sweep_dir: Path) -> bool:
    """Whether a trials.csv names a run dir inside `sweep_dir`: then both belong to one study."""
    inside = sweep_dir.resolve()
    for trial in load_trials_csv(table).runs:
        for named in named_run_dirs(trial):
            found = locate(named, table.parent)
            if found is not None and inside in found.resolve().parents:
                return True
    return False


def with_sibling_tables(tables: list[Path]) -> list[Path]:
    """The trials.csv files found, plus those of other sweep dirs of the same study beside them
    (`multirun/DATE/TIME`: the same parent or grandparent). A study resumed later writes its whole
    trial list into the later sweep dir only, so the earlier dir ranks whole through it."""
    found = list(tables)
    for table in tables:
        sweep_dir = table.parent
        for pattern_root, pattern in ((sweep_dir.parent, f"*/{TRIALS_FILE}"), (sweep_dir.parent.parent, f"*/*/{TRIALS_FILE}")):
            for sibling in sorted(pattern_root.glob(pattern)):
                if sibling not in found and names_a_run_in(sibling, sweep_dir):
                    found.append(sibling)
    return found


def locate(named: str, sweep_dir: Path) -> Path | None:
    """A run dir a trial names, as it is on this disk: absolute, relative to the working dir, or relative
    to a folder above the sweep dir (the sweep ran from there: `multirun/DATE/TIME/N`)."""
    path = Path(named)
    candidates = [path] if path.is_absolute() else [path, *(folder / path for folder in sweep_dir.resolve().parents)]
    return next((candidate for candidate in candidates if candidate.is_dir()), None)


def load_other_sweep_dirs(trials: list[RunRecord], sweep_dir: Path, loaded: set[Path]) -> LoadResult:
    """The run dirs of a resumed study's trials that ran from another sweep dir (each sweep process
    writes its own): trials.csv lists every trial of the study, so the study ranks whole from any of them."""
    result = LoadResult()
    for trial in trials:
        for named in named_run_dirs(trial):
            found = locate(named, sweep_dir)
            if found is not None and found.resolve() not in loaded and is_run_dir(found):
                loaded.add(found.resolve())
                result.extend(load_one(found, run_name(found.parent.parent, found)))
    return result


def expand(paths: Sequence[str]) -> tuple[list[str], list[str]]:
    """Globs the shell did not expand (quoted, or from Python callers) are expanded here."""
    expanded: list[str] = []
    problems: list[str] = []
    for path in paths:
        if not path.startswith(WANDB_PREFIX) and glob.has_magic(path):
            matches = sorted(glob.glob(path))
            if not matches:
                problems.append(f"{path}: the pattern matches nothing")
            expanded.extend(matches)
        else:
            expanded.append(path)
    return expanded, problems


def keep_usable(runs: list[RunRecord]) -> LoadResult:
    """Drops runs loaded twice and runs with a single loss point; their problems travel with the result."""
    result = LoadResult()
    seen: set[str] = set()
    for run in runs:
        key = run.path if run.source != "rundir" else str(Path(run.path).resolve())
        if key in seen:
            continue
        seen.add(key)
        usable = check_series_length(run)
        result.problems.extend(run.problems)
        if usable:
            result.runs.append(run)
    return result


def load_runs(
    paths: Sequence[str] = (), storage: str | None = None, study: str | None = None, wandb_api: Any = None
) -> LoadResult:
    """All runs under `paths` plus the trials of `study` in `storage`, as RunRecords.

    Raises AnalysisInputError only for a storage or study that cannot be opened (the user named it
    explicitly, so there is nothing sensible to fall back on); everything else becomes `problems`.
    `wandb_api` reads `wandb:` paths (an object shaped like wandb.Api; default: wandb.Api() when
    WANDB_API_KEY is set).
    """
    expanded, problems = expand(paths)
    loaded = LoadResult(problems=problems)
    for path in expanded:
        if path.startswith(WANDB_PREFIX):
            loaded.extend(load_online_runs(path[len(WANDB_PREFIX) :], api=wandb_api))
        else:
            loaded.extend(load_path(path, read_trials_csv=storage is None))
    if storage is not None:
        loaded.extend(load_study_runs(storage, study))
    usable = keep_usable(merge_trials_into_run_dirs(loaded.runs))
    usable.problems[:0] = loaded.problems
    return usable
