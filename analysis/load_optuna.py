"""An Optuna study, from any storage Optuna opens: an RDB URL (sqlite:///sweeps/x.db, postgresql://...),
a .db file path (taken as SQLite), or a JournalFileBackend file (.log, .jsonl, .journal).

Each trial becomes a record: its state, params (Hydra override keys), user attrs, its value, and its
intermediate values as a series. Intermediate values are what the training callback reported (the
smoothed loss at samples seen), so the series is marked presmoothed.
"""
from __future__ import annotations

from pathlib import Path

from analysis.records import AnalysisInputError, LoadResult, RunRecord, Series, is_number

JOURNAL_SUFFIXES = (".log", ".jsonl", ".journal")
TRIAL_STATES = {"COMPLETE": "completed", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}
RUN_DIR_ATTRS = ("run_dir", "output_dir")


def open_storage(storage: str):
    """The storage object or URL for optuna.load_study; refuses paths that do not exist, because Optuna
    would silently create an empty storage there."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if "://" in storage:
        if storage.startswith("sqlite:///"):
            database = Path(storage[len("sqlite:///") :])
            if not database.is_file():
                raise AnalysisInputError(f"{storage}: no such SQLite file {database}; check the path")
        return storage
    path = Path(storage)
    if not path.is_file():
        raise AnalysisInputError(f"{storage}: no such storage file; pass an existing journal/.db file or a URL")
    if path.suffix in JOURNAL_SUFFIXES:
        return JournalStorage(JournalFileBackend(str(path)))
    if path.suffix == ".db":
        return f"sqlite:///{path}"
    raise AnalysisInputError(
        f"{storage}: not a storage Optuna can open; give a URL (sqlite:///..., postgresql://...), "
        f"a .db file or a journal file ending in {', '.join(JOURNAL_SUFFIXES)}"
    )


def load_study(storage: str, study_name: str | None):
    """The study, named or the only one in the storage; a clear error listing the names otherwise."""
    import optuna

    opened = open_storage(storage)
    names = optuna.get_all_study_names(storage=opened)
    if study_name is None:
        if len(names) != 1:
            listed = ", ".join(names) if names else "none"
            raise AnalysisInputError(f"{storage} holds {len(names)} studies ({listed}); choose one with --study NAME")
        study_name = names[0]
    if study_name not in names:
        listed = ", ".join(names) if names else "none"
        raise AnalysisInputError(f"study {study_name!r} not found in {storage}; studies there: {listed}")
    return optuna.load_study(study_name=study_name, storage=opened)


def trial_record(trial, study_name: str, storage: str, unit: str) -> RunRecord:
    positions = sorted(trial.intermediate_values)
    values = [float(trial.intermediate_values[position]) for position in positions]
    series = Series(loss=values, presmoothed=True)
    setattr(series, unit if unit in ("samples", "tokens") else "samples", [float(p) for p in positions])
    attrs = dict(trial.user_attrs)
    summary = {key: float(value) for key, value in attrs.items() if is_number(value)}
    if trial.value is not None:
        summary["objective"] = float(trial.value)
    return RunRecord(
        name=f"trial-{trial.number}",
        source="optuna",
        path=f"{storage}#{study_name}/{trial.number}",
        status=TRIAL_STATES.get(trial.state.name, "unknown"),
        params=dict(trial.params),
        series=series,
        eval_loss=float(attrs["eval_loss"]) if is_number(attrs.get("eval_loss")) else None,
        summary=summary,
        attrs=attrs,
        group=study_name,
    )


def load_study_runs(storage: str, study_name: str | None) -> LoadResult:
    study = load_study(storage, study_name)
    unit = str(study.user_attrs.get("unit", "samples"))
    trials = study.get_trials(deepcopy=False)
    if not trials:
        return LoadResult(problems=[f"study {study.study_name!r} in {storage} has no trials yet"])
    return LoadResult(runs=[trial_record(trial, study.study_name, storage, unit) for trial in trials])


def merge_trials_into_run_dirs(runs: list[RunRecord]) -> list[RunRecord]:
    """A trial whose user attrs name its run dir and that run dir become one record: the run dir's raw
    loss series with the trial's state, params and attrs (ablation, repeats)."""
    by_path = {str(Path(run.path).resolve()): run for run in runs if run.source == "rundir"}
    merged: list[RunRecord] = []
    for run in runs:
        target = None
        if run.source == "optuna":
            for key in RUN_DIR_ATTRS:
                if isinstance(run.attrs.get(key), str):
                    target = by_path.get(str(Path(run.attrs[key]).resolve()))
                    if target is not None:
                        break
        if target is None:
            merged.append(run)
            continue
        target.name = run.name
        target.status = run.status
        target.params.update(run.params)
        target.attrs.update(run.attrs)
        target.group = run.group
        target.summary.update({key: value for key, value in run.summary.items() if key not in target.summary})
    return merged
