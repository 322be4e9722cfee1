"""Hydra's submitit launchers, waiting for each job on its own: a job that SLURM ends (scancel, a time
limit without requeue, a node failure, an out-of-memory kill) ends its own trial FAIL with SLURM's
state as the reason, instead of raising out of launch() and ending the sweep.

The plugin's launch() returns `[job.results()[0] for job in jobs]`, which raises at the first job that
produced no result, and polls forever a job whose state SLURM cannot tell (no accounting: sacct answers
nothing). Here every job gets a JobReturn: its own, or a FAILED one carrying `JobEnded`. Without
accounting, squeue says whether the job is still queued; one that left the queue without a result is
given JOB_GONE_GRACE_S for its result file to appear on the shared disk, then fails. When a sweep starts,
the launcher warns of settings that submitit's timeout rule turns around (timeout_rule_warnings).
"""
from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf

from sweeper.outcome import JobEnded
from sweeper.overrides import planned_run_dir

log = logging.getLogger(__name__)

POLL_S = 2.0
JOB_GONE_GRACE_S = 60.0


class PerJobLaunch:
    """Mixed into the plugin's SlurmLauncher / LocalLauncher (hydra_plugins.lorasweep.submitit_launchers):
    the same executor and job array, then per-job results."""

    _EXECUTOR: str
    params: dict[str, Any]
    config: Any
    # a job runs on whether or not the sweep process waits for it: after Ctrl-C the sweep leaves its
    # trials RUNNING for the next sweep command to adopt (sweeper.study_loop.StudyLoop._end_own_trials)
    jobs_outlive_the_sweep = True

    def setup(self, **kwargs: Any) -> None:
        super().setup(**kwargs)  # type: ignore[misc]
        for warning in timeout_rule_warnings(self.params):
            log.warning(warning)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        executor = submitit.AutoExecutor(
            cluster=self._EXECUTOR,
            folder=self.params["submitit_folder"],
            **({f"{self._EXECUTOR}_max_num_timeout": self.params["max_num_timeout"]} if "max_num_timeout" in self.params else {}),
        )
        base_keys = set(OmegaConf.structured(BaseQueueConf).keys())  # the rest get the executor's prefix
        executor.update_parameters(**{
            key if key in base_keys else f"{self._EXECUTOR}_{key}": value
            for key, value in self.params.items() if key not in ("submitit_folder", "max_num_timeout")
        })
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        arguments = []
        for offset, overrides in enumerate(job_overrides):
            index = initial_job_idx + offset
            log.info(f"\t#{index} : {' '.join(filter_overrides(overrides))}")
            arguments.append((list(overrides), "hydra.sweep.dir", index, f"job_id_for_{index}", Singleton.get_state()))
        jobs = executor.map_array(self, *zip(*arguments))
        run_dirs = [planned_run_dir(str(sweep_dir), list(o), initial_job_idx + i) for i, o in enumerate(job_overrides)]
        return wait_for_jobs(jobs, run_dirs, [list(o) for o in job_overrides])


def timeout_rule_warnings(params: Mapping[str, Any]) -> list[str]:
    """One warning line for each launcher setting that submitit's timeout rule does not take as it reads.

    submitit (core.job_environment.SignalHandler.has_timed_out) counts a stop signal as the job's time
    limit once the job has run min(0.8 x T, T - 10 min) of its limit T (timeout_min); an earlier one is a
    preemption. A time limit uses up one of max_num_timeout requeues (with none left the job is not
    requeued and its trial fails); a preemption is requeued without counting.
    """
    timeout_min = params.get("timeout_min")
    if timeout_min is None:
        return []
    limit_s = float(timeout_min) * 60
    counted_from_s = min(0.8 * limit_s, limit_s - 600)
    warnings = []
    if counted_from_s <= 0:
        warnings.append(
            f"hydra.launcher.timeout_min={timeout_min}: with timeout_min <= 10 submitit counts every stop signal as "
            "the time limit, so a preemption uses up one of max_num_timeout requeues (and fails the trial once none "
            "is left); set timeout_min above 10")
    delay_s = params.get("signal_delay_s")
    if delay_s is not None and limit_s - float(delay_s) < counted_from_s:
        warnings.append(
            f"hydra.launcher.signal_delay_s={delay_s} with timeout_min={timeout_min}: submitit takes a time-limit "
            "signal that early for a preemption and requeues without counting it against max_num_timeout, so a "
            "trial that never fits its time limit is requeued forever; keep signal_delay_s <= max(600, 12 x timeout_min)")
    return warnings


def wait_for_jobs(jobs: Sequence[Any], run_dirs: list[str], overrides: list[list[str]]) -> list[JobReturn]:
    """Polls until every job has a JobReturn: its own result, or FAILED with JobEnded."""
    returns: list[JobReturn | None] = [None] * len(jobs)
    gone_since: dict[int, float] = {}
    while any(result is None for result in returns):
        for index, job in enumerate(jobs):
            if returns[index] is not None:
                continue
            if job.done():
                returns[index] = _job_return(job, run_dirs[index], overrides[index])
            elif job.state.upper() == "UNKNOWN" and not _in_queue(job.job_id):
                since = gone_since.setdefault(index, time.time())
                if time.time() - since > JOB_GONE_GRACE_S:
                    error = JobEnded(f"job {job.job_id} left the queue without a result and SLURM has no "
                                     "accounting (sacct) to say why: cancelled, killed or its node failed")
                    returns[index] = _failed(error, run_dirs[index], overrides[index])
        if any(result is None for result in returns):
            time.sleep(POLL_S)
    return [result for result in returns if result is not None]


def _job_return(job: Any, run_dir: str, overrides: list[str]) -> JobReturn:
    from submitit.core.utils import FailedJobError, UncompletedJobError

    try:
        return job.results()[0]
    except FailedJobError as error:  # raised in the job outside the task (Hydra records the task's own errors)
        if "Job not requeued because" in str(error):  # submitit's hook at a time limit, out of requeues
            error = JobEnded(f"time limit reached and not requeued again (job {job.job_id}, max_num_timeout used up)")
        return _failed(error, run_dir, overrides)
    except UncompletedJobError as error:
        state = job.state
        word = state.split()[0].lower().replace("_", " ")
        reason = f"{word} by SLURM (job {job.job_id}, state {state})" if state != "UNKNOWN" else str(error).splitlines()[0]
        return _failed(JobEnded(reason), run_dir, overrides)


def _failed(error: Exception, run_dir: str, overrides: list[str]) -> JobReturn:
    log.warning(f"{run_dir}: {error}")
    return JobReturn(overrides=overrides, working_dir=run_dir, status=JobStatus.FAILED, _return_value=error)


def _in_queue(job_id: str) -> bool:
    """True while squeue still lists the job (pending, running, completing), or when squeue cannot say."""
    try:
        listed = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return True
    return listed.returncode != 0 and "Invalid job id" not in listed.stderr or bool(listed.stdout.strip())
