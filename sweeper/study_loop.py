"""The sweep: Optuna's ask/tell over whatever Hydra launcher is configured.

One pass of the loop, under a lock shared by all sweep processes on the storage: fail the trials whose
sweep process died (and queue their parameters again), count what the study has started, ask for at
most n_jobs more (queued trials first: the ablation, retries), then launch them as one batch and tell
Optuna how each ended. n_trials is a total for the study, so a second process, or the same command
after a crash, only runs what is missing. Trials whose process died do not count; their re-run does.
Checks before the study is touched are in sweeper.preflight, the ablation queue in sweeper.ablation,
the recovery of abandoned trials in sweeper.recovery, the study's binding to its data in
sweeper.data_binding. A sweep that stops on an error leaves none of its trials RUNNING, except after
Ctrl-C under submitit, whose jobs run on for the next sweep command to adopt.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.samplers import GridSampler
from optuna.trial import Trial, TrialState

from runs import attrs
from runs.storage import StorageError, mask_password, process_storage, storage_lock
from sweeper import preflight
from sweeper.ablation import enqueue_ablations
from sweeper.data_binding import bind_to_data, composed_data
from sweeper.devices import check_memory_fits, describe_sharing, gpu_memory_mb, measured_peak_mb, plan_devices, visible_gpus
from sweeper.errors import SweepError, SweepStopped
from sweeper.no_repeats import claim_stream, finished_twin, stream_seed
from sweeper.outcome import job_outcome, trial_outcome
from sweeper.outputs import best_trials, print_progress, write_outputs
from sweeper.overrides import planned_run_dir, render_override, render_value
from sweeper.preflight import SpaceExtender
from sweeper.recovery import (
    LeaseKeeper,
    abandon,
    budget_trials,
    fail_trials_of_dead_processes,
    record_outcome,
    renew_lease,
    requeue_trials_ended_by_scheduler,
    tell,
)
from sweeper.search_space import SearchSpace, build_search_space
from sweeper.storage import STORAGE_ENV, TRIAL_ENV, resolve_storage_url

log = logging.getLogger(__name__)

REPORTER_TARGET = "sweeper.reporter.TrialReporter"
WAIT_FOR_OTHERS_S = 2.0  # poll interval while other processes finish the study's last trials
DIRECTIONS = ("minimize", "maximize")


class StudyLoop:
    """The sweeper's logic; hydra_plugins.lorasweep.lorasweep_sweeper.LorasweepSweeper delegates here."""

    def __init__(
        self,
        *,
        sampler: DictConfig,
        pruner: DictConfig,
        study_name: str,
        storage: str | None,
        storage_dir: str,
        direction: Any,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        seed: int | None,
        repeats: int,
        seed_key: str,
        params: Mapping[str, Any] | None,
        custom_search_space: str | None,
        ablations: Mapping[str, Any] | None,
        prune_ablations: bool,
        gpus: list[int] | None,
        trials_per_gpu: int,
        lease_grace_s: float,
    ) -> None:
        for name, value in (("n_trials", n_trials), ("n_jobs", n_jobs), ("repeats", repeats)):
            if value < 1:
                raise SweepError(f"hydra.sweeper.{name}={value}: it must be 1 or more")
        if not 0.0 <= max_failure_rate <= 1.0:
            raise SweepError(f"hydra.sweeper.max_failure_rate={max_failure_rate}: it must be in [0, 1]")
        if lease_grace_s <= 0:
            raise SweepError(f"hydra.sweeper.lease_grace_s={lease_grace_s}: it must be > 0 (seconds)")
        several = OmegaConf.is_list(direction) or isinstance(direction, (list, tuple))
        self.directions = [str(d) for d in direction] if several else [str(direction)]
        unknown = [d for d in self.directions if d.lower() not in DIRECTIONS]
        if unknown or not self.directions:
            raise SweepError(
                f"hydra.sweeper.direction={direction}: each direction must be one of {', '.join(DIRECTIONS)} "
                "(a list of them for a multi-objective study)"
            )
        self.sampler_conf = sampler
        self.pruner_conf = pruner
        self.study_name = study_name
        self.storage = storage
        self.storage_dir = storage_dir
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.max_failure_rate = max_failure_rate
        self.seed = seed
        self.repeats = repeats
        self.seed_key = seed_key
        self.params = OmegaConf.to_container(params, resolve=True) if OmegaConf.is_config(params) else params
        self.custom_search_space = custom_search_space
        self.ablations = OmegaConf.to_container(ablations, resolve=True) if OmegaConf.is_config(ablations) else ablations
        self.prune_ablations = prune_ablations
        self.gpus = list(gpus) if gpus is not None else None
        self.trials_per_gpu = trials_per_gpu
        self.lease_grace_s = lease_grace_s
        self.process = f"{socket.gethostname()}:{os.getpid()}"
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: list[str]) -> None:
        space = build_search_space(self.params, arguments)
        extender = preflight.load_custom_search_space(self.custom_search_space)
        preflight.check_not_empty(space, extender)
        preflight.check_seed_key(self.config, space, self.repeats, self.seed_key)
        probes = preflight.check_space_composes(self.hydra_context, self.config, space)
        preflight.check_ablations(self.hydra_context, self.config, space, extender, self.ablations)
        preflight.check_report_points(self.config, probes)
        devices = plan_devices(
            str(self.config.hydra.launcher._target_), visible_gpus(self.gpus), self.n_jobs * self.repeats,
            self.trials_per_gpu,
        )
        sharing = describe_sharing(self.trials_per_gpu, devices)
        if sharing:
            log.info(sharing)
        data = composed_data(self.config)
        url = resolve_storage_url(self.storage, self.storage_dir, self.study_name)
        os.environ[STORAGE_ENV] = url  # jobs' reporters (and joblib/submitit workers) inherit it
        study = self._open_study(url, space, data)
        unit = OmegaConf.select(self.config, "smoothing.unit")
        if unit is not None:
            study.set_user_attr(attrs.UNIT, str(unit))
        with storage_lock(url, self.study_name):
            enqueue_ablations(study, self.ablations, space, extender, self.config, self.n_trials)
            requeue_trials_ended_by_scheduler(study)
        try:
            self._run(study, space, extender, devices, url)
        except BaseException as error:
            self._end_own_trials(study, error)
            raise
        finally:
            paths = write_outputs(study, str(self.config.hydra.sweep.dir))
            log.info(f"Sweep outputs: {', '.join(str(path) for path in paths.values() if path.exists())}")

    # --- setting up ------------------------------------------------------------------------------------

    def _open_study(self, url: str, space: SearchSpace, data: dict[str, Any] | None) -> optuna.Study:
        sampler_conf = OmegaConf.to_container(self.sampler_conf, resolve=True)
        preflight.check_sampler_package(sampler_conf["_target_"])
        if sampler_conf["_target_"].endswith("GridSampler") and not sampler_conf.get("search_space"):
            sampler_conf["search_space"] = space.grid()
        pruner = instantiate(OmegaConf.to_container(self.pruner_conf, resolve=True))
        try:
            storage = process_storage(url)
        except StorageError as error:
            raise SweepError(f"hydra.sweeper.storage: {error}") from None
        with storage_lock(url, self.study_name), _quiet_optuna():  # the sweep says itself what it found (below)
            study = optuna.create_study(
                study_name=self.study_name,
                storage=storage,
                pruner=pruner,
                directions=self.directions,
                load_if_exists=True,
            )
            bind_to_data(study, data, url)  # before the stream is claimed: a refused sweep leaves the study as it was
            stream = claim_stream(study)
        sampler_conf["seed"] = stream_seed(sampler_conf.get("seed"), stream)
        sampler = instantiate(sampler_conf)
        study.sampler = sampler
        stored = [d.name.lower() for d in study.directions]
        if stored != [d.lower() for d in self.directions]:
            raise SweepError(
                f"study {self.study_name!r} in {mask_password(url)} was created with direction(s) {stored}, "
                f"not {self.directions}; use another hydra.sweeper.study_name or the stored direction"
            )
        finished = sum(1 for t in budget_trials(study) if t.state.is_finished())
        log.info(f"Study {self.study_name!r} in {mask_password(url)}: {finished} of {self.n_trials} trials done")
        log.info(
            f"Sampler: {type(sampler).__name__} (seed {sampler_conf['seed']}, stream {stream}), "
            f"pruner: {type(pruner).__name__}, direction(s): {stored}"
        )
        return study

    # --- the loop ----------------------------------------------------------------------------------------

    def _run(
        self, study: optuna.Study, space: SearchSpace, extender: SpaceExtender | None, devices: list[str] | None, url: str
    ) -> None:
        while True:
            with storage_lock(url, self.study_name):
                fail_trials_of_dead_processes(study, self.process, self.lease_grace_s)
                batch = [] if _grid_exhausted(study) else self._ask_batch(study, space, extender)
            if batch:
                self._check_gpu_memory(study, devices)
                self._launch(study, space, batch, devices)
                self._check_failure_rate(study)
                continue
            others = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if not others:
                return
            owners = sorted({t.user_attrs.get(attrs.PROCESS, "?") for t in others})
            log.info(f"Waiting for {len(others)} trial(s) running in other sweep processes: {', '.join(owners)}")
            time.sleep(WAIT_FOR_OTHERS_S)

    def _check_gpu_memory(self, study: optuna.Study, devices: list[str] | None) -> None:
        """k trials per GPU must fit its memory: checked before each batch against the largest peak
        the study's finished trials recorded (the first batch runs before any is known)."""
        if self.trials_per_gpu == 1 or not devices:
            return
        finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        peak = measured_peak_mb(run_dir for t in finished for run_dir in t.user_attrs.get(attrs.RUN_DIRS, []))
        check_memory_fits(self.trials_per_gpu, peak, gpu_memory_mb(sorted(set(devices))))

    def _ask_batch(
        self, study: optuna.Study, space: SearchSpace, extender: SpaceExtender | None
    ) -> list[tuple[Trial, list[str]]]:
        started = [t for t in budget_trials(study) if t.state != TrialState.WAITING]
        room = min(self.n_jobs, self.n_trials - len(started))
        batch = []
        for _ in range(room):
            trial = study.ask()  # queued trials first (ablation, re-runs), then the sampler
            trial.set_user_attr(attrs.PROCESS, self.process)
            renew_lease(study, trial._trial_id)
            batch.append((trial, self._suggest(study, trial, space, extender)))
        return batch

    def _suggest(
        self, study: optuna.Study, trial: Trial, space: SearchSpace, extender: SpaceExtender | None
    ) -> list[str]:
        """Chooses the trial's values and returns the overrides that re-run it. An ablation trial sets
        only its remedy's parameters; everything else stays as the base config has it."""
        ablation = trial.user_attrs.get(attrs.ABLATION)
        fixed = study.get_trials(deepcopy=False)[trial.number].system_attrs.get("fixed_params", {})
        for name, distribution in space.distributions.items():
            if ablation is None or name in fixed:
                _suggest_one(trial, name, distribution)
        derived = dict(extender(self.config, trial) or {}) if extender is not None else {}
        # a remedy may set a key the space does not sample (e.g. one the custom search space derives)
        derived.update({key: value for key, value in fixed.items() if key not in trial.params})
        overrides = list(space.fixed)
        overrides += [render_override(name, value) for name, value in trial.params.items()]
        overrides += [render_override(name, value) for name, value in derived.items()]
        trial.set_user_attr(attrs.OVERRIDES, overrides)
        return overrides

    def _job_overrides(self, trial: Trial, overrides: list[str], repeat: int, device: str | None) -> list[str]:
        job = list(overrides)
        run_name = f"trial-{trial.number}"
        if self.repeats > 1:
            seed = int(OmegaConf.select(self.config, self.seed_key)) + repeat
            job.append(render_override(self.seed_key, seed))
            run_name += f"-seed{seed}"
        if "trial" in self.config and len(self.directions) == 1:  # Optuna prunes single-objective studies only
            prunable = self.prune_ablations or attrs.ABLATION not in trial.user_attrs
            reporter = {
                "_target_": REPORTER_TARGET,
                "study_name": self.study_name,
                "trial_id": trial._trial_id,
                "pruner": OmegaConf.to_container(self.pruner_conf, resolve=True) if prunable else None,
                "report_values": repeat == 0,
            }
            job.append(render_override(f"hydra.job.env_set.{TRIAL_ENV}", render_value(reporter)))
        logger = self.config.get("logger")
        if logger is not None and "group" in logger and "run_name" in logger:
            job += [render_override("logger.group", self.study_name), render_override("logger.run_name", run_name)]
        if device is not None:
            job.append(render_override("cuda_visible_devices", device))
        # run dirs named after trials: readable, and distinct when two processes share a sweep dir
        job.append(render_override("hydra.sweep.subdir", run_name))
        return job

    def _launch(
        self, study: optuna.Study, space: SearchSpace, batch: list[tuple[Trial, list[str]]], devices: list[str] | None
    ) -> None:
        """Runs one batch and tells Optuna each trial's end; a trial whose overrides already ran takes
        that run's result instead of training again."""
        batch = [(trial, overrides) for trial, overrides in batch if not self._settled_by_twin(study, space, trial, overrides)]
        if not batch:
            return
        jobs = []
        for trial, overrides in batch:
            for repeat in range(self.repeats):
                device = devices[len(jobs)] if devices else None
                jobs.append(self._job_overrides(trial, overrides, repeat, device))
        # where the jobs will write, recorded first: a later sweep process adopts what they finish
        # while no process waits for them (sweeper.recovery.adopt_finished_runs)
        sweep_dir = str(self.config.hydra.sweep.dir)
        for index, (trial, _) in enumerate(batch):
            numbered = range(index * self.repeats, (index + 1) * self.repeats)
            trial.set_user_attr(attrs.RUN_DIRS, [planned_run_dir(sweep_dir, jobs[n], self.job_idx + n) for n in numbered])
        with LeaseKeeper(study, [trial._trial_id for trial, _ in batch], self.lease_grace_s):
            returns = self.launcher.launch(jobs, initial_job_idx=self.job_idx)
        self.job_idx += len(jobs)
        for index, (trial, overrides) in enumerate(batch):
            returned = returns[index * self.repeats : (index + 1) * self.repeats]
            outcome = trial_outcome([job_outcome(job, len(self.directions)) for job in returned])
            record_outcome(study, trial._trial_id, outcome)
            tell(study, trial, outcome.state, outcome.values)
            self._print_progress(study, space, trial, overrides)

    def _end_own_trials(self, study: optuna.Study, error: BaseException) -> None:
        """No trial of this process stays RUNNING when the sweep stops on an error: each ends FAIL with
        the reason and is queued again. Except after Ctrl-C under a launcher whose jobs outlive this
        process (submitit): those jobs go on, their trials stay RUNNING, and the same command adopts
        each one whose jobs finished by then (sweeper.recovery) and runs the others again."""
        own = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
               if t.user_attrs.get(attrs.PROCESS) == self.process]
        if not own:
            return
        numbers = ", ".join(str(t.number) for t in own)
        if isinstance(error, KeyboardInterrupt) and getattr(self.launcher, "jobs_outlive_the_sweep", False):
            log.warning(
                f"Interrupted: the jobs of trial(s) {numbers} go on running. The same command adopts each trial "
                f"whose jobs have finished by then and runs the others again; cancel the jobs (scancel) to stop them now"
            )
            return
        if isinstance(error, KeyboardInterrupt):  # Ctrl-C, or SIGTERM as the recipe raises it (a worker's scancel)
            reason = str(error) or "interrupted (Ctrl-C)"
        else:
            first_line = str(error).splitlines()[0] if str(error) else ""
            reason = f"the sweep stopped on {type(error).__name__}: {first_line}"
        for trial in own:
            abandon(study, trial, f"{reason}; its parameters were queued again")
        log.warning(f"Trial(s) {numbers}: {reason}: FAIL, and queued again for the next sweep command")

    def _settled_by_twin(self, study: optuna.Study, space: SearchSpace, trial: Trial, overrides: list[str]) -> bool:
        twin = finished_twin(study, overrides, trial.number)
        if twin is None:
            return False
        trial.set_user_attr(attrs.COPY_OF, twin.number)
        trial.set_user_attr(attrs.RUN_DIRS, twin.user_attrs.get(attrs.RUN_DIRS, []))
        trial.set_user_attr(attrs.REASON, f"same overrides as trial {twin.number}: its result, not trained again")
        tell(study, trial, twin.state, twin.values if twin.state == TrialState.COMPLETE else None)
        self._print_progress(study, space, trial, overrides)
        return True

    def _print_progress(self, study: optuna.Study, space: SearchSpace, trial: Trial, overrides: list[str]) -> None:
        finished = sum(1 for t in budget_trials(study) if t.state.is_finished())
        best = best_trials(study) if len(self.directions) == 1 else []
        frozen = study.get_trials(deepcopy=False)[trial.number]
        print_progress(frozen, overrides[len(space.fixed) :], finished, self.n_trials, best[0] if best else None)

    def _check_failure_rate(self, study: optuna.Study) -> None:
        failed = [t for t in budget_trials(study) if t.state == TrialState.FAIL]
        if len(failed) > self.max_failure_rate * self.n_trials:
            reasons = "; ".join(f"trial {t.number}: {t.user_attrs.get(attrs.REASON)}" for t in failed[-3:])
            raise SweepStopped(
                f"{len(failed)} of n_trials={self.n_trials} trials failed, more than "
                f"max_failure_rate={self.max_failure_rate} allows; the sweep stopped. Last reasons: {reasons}. "
                f"Fix the cause (see each run dir's result.json), or raise hydra.sweeper.max_failure_rate"
            )


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna's info lines off (they go to stderr, where a refusal must stand alone)."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def _suggest_one(trial: Trial, name: str, distribution: BaseDistribution) -> None:
    if isinstance(distribution, CategoricalDistribution):
        trial.suggest_categorical(name, distribution.choices)
    elif isinstance(distribution, IntDistribution):
        trial.suggest_int(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)
    else:
        trial.suggest_float(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)


def _grid_exhausted(study: optuna.Study) -> bool:
    """True once every point of a grid sampler's grid has finished and no trial is queued (a re-run of
    a failed point is): nothing is left to ask."""
    exhausted = (
        isinstance(study.sampler, GridSampler)
        and study.sampler.is_exhausted(study)
        and not study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    )
    if exhausted:
        log.info("The sampler has no new points to try (every grid point was run): the sweep ends")
    return exhausted
