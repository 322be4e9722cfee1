"""An Optuna study, from any storage Optuna opens: an RDB URL (sqlite:///sweeps/x.db, postgresql://...),
a .db file path (taken as SQLite), or a JournalFileBackend file (journal:PATH, or a path ending in
.log, .jsonl, .journal).

Each trial becomes a record: its state, params (Hydra override keys), user attrs, its value, and its
intermediate values as a series. Intermediate values are what the training callback reported (the
smoothed loss at samples seen), so the series is marked presmoothed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from analysis.records import AnalysisInputError, LoadResult, RunRecord, Series, is_number, without_plumbing
from runs import attrs as attr_keys
from runs.storage import StorageError, mask_password, open_storage

TRIAL_STATES = {"COMPLETE": "completed", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}


def load_study(storage: str, study_name: str | None) -> Any:
    """The study, named or the only one in the storage; a clear error listing the names otherwise."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    try:
        opened = open_storage(storage, create=False)
    except StorageError as error:
        raise AnalysisInputError(str(error)) from None
    try:
        names = optuna.get_all_study_names(storage=opened)
    except (ImportError, SQLAlchemyError, optuna.exceptions.OptunaError) as error:
        message = str(error).splitlines()[0]
        raise AnalysisInputError(f"cannot open the storage {mask_password(storage)}: {message}") from None
    if study_name is None:
        if len(names) != 1:
            listed = ", ".join(names) if names else "none"
            raise AnalysisInputError(f"{mask_password(storage)} holds {len(names)} studies ({listed}); choose one with --study NAME")
        study_name = names[0]
    if study_name not in names:
        listed = ", ".join(names) if names else "none"
        raise AnalysisInputError(f"study {study_name!r} not found in {mask_password(storage)}; studies there: {listed}")
    return optuna.load_study(study_name=study_name, storage=opened)


def trial_record(trial: Any, study_name: str, storage: str, unit: str) -> RunRecord:
    positions = sorted(trial.intermediate_values)
    values = [float(trial.intermediate_values[position]) for position in positions]
    reported_at = [float(position) for position in positions]
    in_tokens = unit == "tokens"
    series = Series(samples=[] if in_tokens else reported_at, tokens=reported_at if in_tokens else [],
                    loss=values, presmoothed=True)
    attrs = dict(trial.user_attrs)
    summary = {key: float(value) for key, value in attrs.items() if is_number(value)}
    if trial.value is not None:
        summary["objective"] = float(trial.value)
    notes = ["values as the trial reported them (the sweep's own smoothing)"] if positions else []
    return RunRecord(
        name=f"trial-{trial.number}",
        source="optuna",
        path=f"{mask_password(storage)}#{study_name}/{trial.number}",
        status=TRIAL_STATES.get(trial.state.name, "unknown"),
        params=params_with_overrides(dict(trial.params), attrs),
        series=series,
        eval_loss=float(attrs[attr_keys.EVAL_LOSS]) if is_number(attrs.get(attr_keys.EVAL_LOSS)) else None,
        summary=summary,
        attrs=attrs,
        group=study_name,
        notes=notes,
    )


def params_with_overrides(params: dict[str, Any], attrs: dict[str, Any]) -> dict[str, Any]:
    """A trial's params with every override it ran with (user attr "overrides"): the sampled params
    alone leave out what an enqueued ablation trial fixed or the sweeper derived (gradient accumulation
    from the batch size). Unparsable overrides leave the sampled params as they are."""
    from hydra.errors import HydraException

    from analysis.load_rundir import parse_overrides

    overrides = attrs.get(attr_keys.OVERRIDES)
    if not isinstance(overrides, list):
        return params
    try:
        return {**without_plumbing(parse_overrides(overrides)), **params}
    except HydraException:
        return params


def load_study_runs(storage: str, study_name: str | None) -> LoadResult:
    study = load_study(storage, study_name)
    unit = str(study.user_attrs.get(attr_keys.UNIT, "samples"))
    trials = study.get_trials(deepcopy=False)
    if not trials:
        return LoadResult(problems=[f"study {study.study_name!r} in {mask_password(storage)} has no trials yet"])
    return LoadResult(runs=[trial_record(trial, study.study_name, storage, unit) for trial in trials])


def named_run_dirs(trial: RunRecord) -> list[str]:
    """The run dirs a trial's user attrs name: the sweeper's "run_dirs" (one per repeat) or a single "run_dir"."""
    named = trial.attrs.get(attr_keys.RUN_DIRS)
    if isinstance(named, str):
        named = [named]
    single = trial.attrs.get(attr_keys.RUN_DIR)
    return [path for path in (named or []) + ([single] if single else []) if isinstance(path, str)]


def find_run_dir(run_dirs: list[RunRecord], named: str) -> RunRecord | None:
    """The loaded run dir a trial names. A relative name (the sweep's working dir is not ours) matches
    the run dir whose path ends with the same parts."""
    wanted = Path(named)
    for run in run_dirs:
        path = Path(run.path)
        if path.resolve() == wanted.resolve() or (
            not wanted.is_absolute() and path.parts[-len(wanted.parts) :] == wanted.parts
        ):
            return run
    return None


def merge_trials_into_run_dirs(runs: list[RunRecord]) -> list[RunRecord]:
    """A trial and the run dirs it names become the run dirs' records (their raw loss series) carrying
    the trial's name and attrs; repeats of one trial then pool in the ranking. A run dir keeps its own
    params and result.json status (what that run did); the trial's state fills in where the run has no
    result. A trial whose run dirs were not loaded stays a record of its own (its reported values)."""
    run_dirs = [run for run in runs if run.source == "rundir"]
    merged_trials: set[int] = set()
    for trial in (run for run in runs if run.source == "optuna"):
        for named in named_run_dirs(trial):
            target = find_run_dir(run_dirs, named)
            if target is None:
                continue
            merged_trials.add(id(trial))
            target.name = trial.name
            if target.status in ("running", "unknown"):
                target.status = trial.status
            target.params = {**trial.params, **target.params}
            target.attrs.update(trial.attrs)
            target.group = trial.group or target.group
    return [run for run in runs if id(run) not in merged_trials]
