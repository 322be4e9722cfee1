"""How a finished job ends its trial: COMPLETE with its value, PRUNED, or FAIL with the reason.

The run dir's result.json (docs/run_dir.md) is the first witness, since a job that was pruned or failed
says so there with a reason; Hydra's JobReturn (status, return value, exception) is the fallback for a
job that never got to write it (killed mid-way) and for apps that write no result.json.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from omegaconf import OmegaConf
from optuna.trial import TrialState

from runs import result as run_result


class JobEnded(RuntimeError):
    """The scheduler ended a job before it returned (sweeper.submitit_jobs); the message gives its state."""


@dataclass(frozen=True)
class JobOutcome:
    state: TrialState
    values: list[float] | None
    reason: str | None
    run_dir: str | None
    ended_by_scheduler: bool = False  # SLURM ended the job (scancel, time limit, node failure, OOM)


def job_run_dir(job: JobReturn) -> str | None:
    output_dir = OmegaConf.select(job.hydra_cfg, "hydra.runtime.output_dir") if job.hydra_cfg else None
    return str(output_dir) if output_dir else job.working_dir


def read_result(run_dir: str | None) -> dict[str, Any] | None:
    """The run's result.json; None when it has none or it is unreadable (a job killed while writing
    it): then the JobReturn decides."""
    return run_result.read_result(Path(run_dir))[0] if run_dir is not None else None


def job_outcome(job: JobReturn, n_objectives: int) -> JobOutcome:
    run_dir = job_run_dir(job)
    result = read_result(run_dir)
    recorded_reason = result.get(run_result.REASON) if result else None
    try:
        returned = job.return_value  # re-raises the job's exception when it failed
    except JobEnded as error:  # SLURM's word first, then what the run recorded (an interrupted run's step)
        reason = f"{error}; the run: {recorded_reason}" if recorded_reason else str(error)
        return JobOutcome(TrialState.FAIL, None, reason, run_dir, ended_by_scheduler=True)
    except Exception as error:
        reason = recorded_reason or f"{type(error).__name__}: {error}"
        return JobOutcome(TrialState.FAIL, None, reason, run_dir)
    status = result.get(run_result.STATUS) if result else run_result.COMPLETED
    if status == run_result.PRUNED:
        return JobOutcome(TrialState.PRUNED, None, recorded_reason, run_dir)
    if status == run_result.FAILED:
        return JobOutcome(TrialState.FAIL, None, recorded_reason or "the run reported status failed", run_dir)
    if returned is None and result is not None:
        returned = result.get(run_result.OBJECTIVE)
    if returned is None:
        reason = "the run finished without an objective: did it log a loss before its budget ran out? (see logging_steps)"
        return JobOutcome(TrialState.FAIL, None, reason, run_dir)
    values, problem = _as_values(returned, n_objectives)
    if problem:
        return JobOutcome(TrialState.FAIL, None, problem, run_dir)
    return JobOutcome(TrialState.COMPLETE, values, None, run_dir)


def finished_run_outcome(run_dir: str, n_objectives: int) -> JobOutcome | None:
    """How a run ended as its result.json says, if it finished (completed or pruned); else None. For a
    trial whose job ended while no sweep process waited for it."""
    result = read_result(run_dir)
    status = result.get(run_result.STATUS) if result else None
    if status == run_result.PRUNED:
        return JobOutcome(TrialState.PRUNED, None, result.get(run_result.REASON), run_dir)
    if status != run_result.COMPLETED:
        return None
    values, problem = _as_values(result.get(run_result.OBJECTIVE), n_objectives)
    if problem:
        return JobOutcome(TrialState.FAIL, None, problem, run_dir)
    return JobOutcome(TrialState.COMPLETE, values, None, run_dir)


def _as_values(returned: Any, n_objectives: int) -> tuple[list[float] | None, str | None]:
    items = list(returned) if isinstance(returned, (list, tuple)) else [returned]
    try:
        values = [float(item) for item in items]
    except (TypeError, ValueError):
        return None, f"the task returned {returned!r}, not {n_objectives} number(s)"
    if len(values) != n_objectives:
        return None, f"the task returned {len(values)} value(s) for {n_objectives} objective(s)"
    if not all(math.isfinite(value) for value in values):
        return None, f"the objective is not finite ({returned!r}): the loss diverged"
    return values, None


@dataclass(frozen=True)
class TrialOutcome:
    state: TrialState
    values: list[float] | None
    reason: str | None
    run_dirs: list[str]
    values_per_seed: list[Any] | None  # each repeat's value(s), when there are repeats
    spread: list[float] | None  # sample standard deviation over repeats, per objective
    ended_by_scheduler: bool = False  # a job of it was ended by SLURM: the same command re-runs it


def trial_outcome(jobs: list[JobOutcome]) -> TrialOutcome:
    """The trial's end from its repeats: any failure fails it, else any prune prunes it, else the mean."""
    run_dirs = [job.run_dir for job in jobs if job.run_dir]
    for state in (TrialState.FAIL, TrialState.PRUNED):
        ended = [job for job in jobs if job.state == state]
        if ended:
            by_scheduler = any(job.ended_by_scheduler for job in ended)
            return TrialOutcome(state, None, ended[0].reason, run_dirs, None, None, by_scheduler)
    per_job = [job.values for job in jobs if job.values]
    per_objective = list(zip(*per_job))
    values = [statistics.fmean(column) for column in per_objective]
    if len(jobs) == 1:
        return TrialOutcome(TrialState.COMPLETE, values, None, run_dirs, None, None)
    per_seed = [v[0] if len(v) == 1 else v for v in per_job]
    spread = [statistics.stdev(column) for column in per_objective]
    return TrialOutcome(TrialState.COMPLETE, values, None, run_dirs, per_seed, spread)
