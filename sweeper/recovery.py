"""Trials whose sweep process is gone: they end FAIL with the reason, their parameters are queued
again, and only the re-run counts towards n_trials. A re-run that dies is replaced in turn: Optuna's
retry callback records the whole chain in the re-run (`retry_history`: the original, then each re-run
before it), so every trial of a chain but its last is left out of the count.

A RUNNING trial is held by a lease that its sweep process renews (a timestamp in the trial, in the
storage, so the rule holds whatever host the process runs on and for every storage, the journal file
included). A trial whose lease is older than the grace period is reclaimed by any sweep process; a
trial nobody ever renewed (its process died right after asking for it) expires from its start time.
On the same host a dead owner is seen at once (its pid is gone)."""
from __future__ import annotations

import copy
import logging
import os
import socket
import threading
import time
import warnings
from types import TracebackType

import optuna
from optuna.samplers import GridSampler
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, Trial, TrialState

from runs import attrs
from sweeper.outcome import TrialOutcome, finished_run_outcome, trial_outcome


log = logging.getLogger(__name__)


def budget_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The trials that count towards n_trials: all but those that a re-run replaced (their sweep process
    died, or SLURM ended their job), through the whole chain of re-runs."""
    trials = study.get_trials(deepcopy=False)
    replaced = replaced_trials(trials)
    return [t for t in trials if t.number not in replaced]


def replaced_trials(trials: list[FrozenTrial]) -> set[int]:
    """The numbers of the trials that were queued again: every number in some trial's retry_history (a
    re-run of a re-run names both the original and the re-run it replaces)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return {number for trial in trials for number in RetryHeartbeatStaleTrialCallback.retry_history(trial)}


def fail_trials_of_dead_processes(study: optuna.Study, process: str, grace_s: float) -> None:
    """RUNNING trials whose lease expired, whose owner on this host is gone, or of `process` itself
    (which runs nothing between batches): FAIL, and their parameters queued again."""
    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get(attrs.PROCESS)
        if owner == process or _gone_from_this_host(owner):
            why = f"its sweep process {owner} stopped"
        elif _lease_age(trial, now) > grace_s:
            why = f"its lease (owner {owner or 'none'}) was not renewed for {grace_s:g} s"
        else:
            continue
        if adopt_finished_runs(study, trial):
            continue
        log.warning(f"Trial {trial.number}: {why}: FAIL, and re-run")
        abandon(study, trial, f"{why}; its parameters were queued again")


def renew_lease(study: optuna.Study, trial_id: int) -> None:
    try:
        study._storage.set_trial_system_attr(trial_id, attrs.LEASE, time.time())
    except optuna.exceptions.UpdateFinishedTrialError:
        pass  # reclaimed by another process after this one stalled past the grace period


class LeaseKeeper:
    """Renews the leases of this process's running trials from a thread, every quarter of the grace
    period, while a batch runs (the launcher blocks the main thread)."""

    def __init__(self, study: optuna.Study, trial_ids: list[int], grace_s: float) -> None:
        self._study, self._trial_ids, self._interval = study, trial_ids, grace_s / 4
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_until_stopped, name="lorasweep-leases", daemon=True)

    def __enter__(self) -> "LeaseKeeper":
        self._thread.start()
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

    def _renew_until_stopped(self) -> None:
        while not self._stop.wait(self._interval):
            for trial_id in self._trial_ids:
                renew_lease(self._study, trial_id)


def _lease_age(trial: FrozenTrial, now: float) -> float:
    renewed = trial.system_attrs.get(attrs.LEASE)
    if renewed is None:
        renewed = trial.datetime_start.timestamp() if trial.datetime_start else now
    return now - float(renewed)


def _gone_from_this_host(owner: str | None) -> bool:
    if owner is None or owner.rsplit(":", 1)[0] != socket.gethostname():
        return False
    return not _process_alive(int(owner.rsplit(":", 1)[1]))


def adopt_finished_runs(study: optuna.Study, trial: FrozenTrial) -> bool:
    """A trial whose jobs all finished (result.json completed or pruned in every run dir) while no sweep
    process waited for them is told as they ended, not trained again. True if it was."""
    run_dirs = trial.user_attrs.get(attrs.RUN_DIRS) or []
    jobs = [finished_run_outcome(run_dir, len(study.directions)) for run_dir in run_dirs]
    if not jobs or any(job is None for job in jobs):
        return False
    outcome = trial_outcome([job for job in jobs if job is not None])
    record_outcome(study, trial._trial_id, outcome)  # the trial may belong to a dead process
    tell(study, trial.number, outcome.state, outcome.values)
    log.info(f"Trial {trial.number} finished while no sweep process waited for it: {outcome.state.name}, from its run dirs")
    return True


def record_outcome(study: optuna.Study, trial_id: int, outcome: TrialOutcome) -> None:
    """A trial's run dirs, reason and spread over repeats, as user attrs, before it is told: written
    through the storage, so it works for a trial of this process and of a dead one alike."""
    storage = study._storage
    storage.set_trial_user_attr(trial_id, attrs.RUN_DIRS, outcome.run_dirs)
    storage.set_trial_user_attr(trial_id, attrs.REASON, outcome.reason)
    # always set: a re-run copies the user attrs of the trial it replaces
    storage.set_trial_user_attr(trial_id, attrs.ENDED_BY_SCHEDULER, outcome.ended_by_scheduler)
    if outcome.spread is not None:
        storage.set_trial_user_attr(trial_id, attrs.VALUES_PER_SEED, outcome.values_per_seed)
        storage.set_trial_user_attr(trial_id, attrs.SPREAD, outcome.spread)


def requeue_trials_ended_by_scheduler(study: optuna.Study) -> None:
    """Trials whose job SLURM ended (scancel, a time limit, a node failure) failed through no fault of
    their parameters: a new sweep command queues each again once, and the re-run counts instead."""
    for trial in budget_trials(study):
        if trial.state == TrialState.FAIL and trial.user_attrs.get(attrs.ENDED_BY_SCHEDULER):
            log.info(f"Trial {trial.number} was ended by SLURM ({trial.user_attrs.get(attrs.REASON)}): run again")
            requeue(study, trial)


def abandon(study: optuna.Study, trial: FrozenTrial, reason: str) -> None:
    """FAIL with `reason`, and the same parameters queued again. The re-run is queued before the FAIL
    is told, and only once: a process that dies in between leaves the trial RUNNING, and the next
    process that abandons it finds its re-run already queued."""
    # the trial may belong to another (dead) process: write through the storage, not a Trial object,
    # whose construction would run the sampler's before_trial
    study._storage.set_trial_user_attr(trial._trial_id, attrs.REASON, reason)
    requeue(study, study.get_trials(deepcopy=False)[trial.number])
    tell(study, trial.number, TrialState.FAIL, None)


def requeue(study: optuna.Study, trial: FrozenTrial) -> None:
    """A WAITING copy of `trial` (its parameters and user attrs) whose retry_history extends the
    trial's, unless one was queued already."""
    if trial.number in replaced_trials(study.get_trials(deepcopy=False)):
        return
    # a copy: the callback appends to the trial's own retry_history list, which deepcopy=False shares
    # with the storage's in-memory state
    RetryHeartbeatStaleTrialCallback()(study, copy.deepcopy(trial))


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
