"""Trials whose sweep process is gone: they end FAIL with the reason, their parameters are queued
again, and only the re-run counts towards n_trials."""
from __future__ import annotations

import logging
import os
import socket
import warnings

import optuna
from optuna.samplers import GridSampler
from optuna.storages import RetryFailedTrialCallback
from optuna.trial import FrozenTrial, Trial, TrialState

from sweeper.outcome import finished_run_outcome, trial_outcome
from sweeper.trial_attrs import (
    ENDED_BY_SCHEDULER_ATTR,
    PROCESS_ATTR,
    REASON_ATTR,
    RUN_DIRS_ATTR,
    SEEDS_VALUES_ATTR,
    SPREAD_ATTR,
)

log = logging.getLogger(__name__)


def budget_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The trials that count towards n_trials: all but those that were queued again after their
    sweep process died (their re-run counts instead)."""
    trials = study.get_trials(deepcopy=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        replaced = {RetryFailedTrialCallback.retried_trial_number(t) for t in trials}
    return [t for t in trials if t.number not in replaced]


def fail_trials_of_dead_processes(study: optuna.Study, process: str) -> None:
    """RUNNING trials of a sweep process on this machine that is gone (or of `process` itself, which
    runs nothing between batches): FAIL, and their parameters queued again."""
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get(PROCESS_ATTR)
        if owner is None or owner.rsplit(":", 1)[0] != host:
            continue
        if owner == process or not _process_alive(int(owner.rsplit(":", 1)[1])):
            if adopt_finished_runs(study, trial):
                continue
            log.warning(f"Trial {trial.number} was left running by {owner}, which is gone: FAIL, and re-run")
            abandon(study, trial, f"its sweep process {owner} stopped; its parameters were queued again")


def adopt_finished_runs(study: optuna.Study, trial: FrozenTrial) -> bool:
    """A trial whose jobs all finished (result.json completed or pruned in every run dir) while no sweep
    process waited for them is told as they ended, not trained again. True if it was."""
    run_dirs = trial.user_attrs.get(RUN_DIRS_ATTR) or []
    jobs = [finished_run_outcome(run_dir, len(study.directions)) for run_dir in run_dirs]
    if not jobs or any(job is None for job in jobs):
        return False
    outcome = trial_outcome([job for job in jobs if job is not None])
    storage = study._storage  # the trial may belong to a dead process: write through the storage
    storage.set_trial_user_attr(trial._trial_id, REASON_ATTR, outcome.reason)
    if outcome.spread is not None:
        storage.set_trial_user_attr(trial._trial_id, SEEDS_VALUES_ATTR, outcome.values_per_seed)
        storage.set_trial_user_attr(trial._trial_id, SPREAD_ATTR, outcome.spread)
    tell(study, trial.number, outcome.state, outcome.values)
    log.info(f"Trial {trial.number} finished while no sweep process waited for it: {outcome.state.name}, from its run dirs")
    return True


def requeue_trials_ended_by_scheduler(study: optuna.Study) -> None:
    """Trials whose job SLURM ended (scancel, a time limit, a node failure) failed through no fault of
    their parameters: a new sweep command queues each again once, and the re-run counts instead."""
    trials = study.get_trials(deepcopy=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retried = {RetryFailedTrialCallback.retried_trial_number(t) for t in trials}
    for trial in trials:
        if trial.state == TrialState.FAIL and trial.user_attrs.get(ENDED_BY_SCHEDULER_ATTR) and trial.number not in retried:
            log.info(f"Trial {trial.number} was ended by SLURM ({trial.user_attrs.get(REASON_ATTR)}): run again")
            RetryFailedTrialCallback()(study, trial)


def abandon(study: optuna.Study, trial: FrozenTrial, reason: str) -> None:
    """FAIL with `reason`, and the same parameters queued again."""
    # the trial may belong to another (dead) process: write through the storage, not a Trial object,
    # whose construction would run the sampler's before_trial
    study._storage.set_trial_user_attr(trial._trial_id, REASON_ATTR, reason)
    tell(study, trial.number, TrialState.FAIL, None)
    RetryFailedTrialCallback()(study, study.get_trials(deepcopy=False)[trial.number])


def tell(study: optuna.Study, trial: Trial | int, state: TrialState, values: list[float] | None) -> None:
    """study.tell, tolerating GridSampler's Study.stop() call: outside Study.optimize that is an error,
    raised after the trial's end is saved. Whether the grid is done is asked of the sampler instead
    (GridSampler.is_exhausted) before the next trial."""
    try:
        study.tell(trial, state=state, values=values)
    except RuntimeError:
        number = trial if isinstance(trial, int) else trial.number
        saved = study.get_trials(deepcopy=False)[number].state
        if not (isinstance(study.sampler, GridSampler) and saved.is_finished()):
            raise


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True
