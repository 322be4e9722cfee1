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

from sweeper.trial_attrs import PROCESS_ATTR, REASON_ATTR

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
            log.warning(f"Trial {trial.number} was left running by {owner}, which is gone: FAIL, and re-run")
            abandon(study, trial, f"its sweep process {owner} stopped; its parameters were queued again")


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
