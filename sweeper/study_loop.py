"""The sweep: Optuna's ask/tell over whatever Hydra launcher is configured.

One pass of the loop, under a lock shared by all sweep processes on the storage: fail the trials whose
sweep process died (and queue their parameters again), count what the study has started, ask for at
most n_jobs more (queued trials first: the ablation, retries), then launch them as one batch and tell
Optuna how each ended. n_trials is a total for the study, so a second process, or the same command
after a crash, only runs what is missing. Trials whose process died do not count; their re-run does.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import socket
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.errors import HydraException
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.storages import RetryFailedTrialCallback
from optuna.trial import FrozenTrial, Trial, TrialState

from runs import attrs
from runs.storage import mask_password, open_storage, storage_lock
from sweeper.devices import plan_devices, visible_gpus
from sweeper.outcome import job_outcome, trial_outcome
from sweeper.outputs import best_trials, print_progress, write_outputs
from sweeper.overrides import override_key, render_override
from sweeper.search_space import SearchSpace, SearchSpaceError, build_search_space, flatten_params
from sweeper.storage import STORAGE_ENV, resolve_storage_url

log = logging.getLogger(__name__)

REPORTER_TARGET = "sweeper.reporter.TrialReporter"
SAMPLER_PACKAGES = {"CmaEsSampler": "cmaes", "GPSampler": "scipy"}  # imported by Optuna only when sampling
WAIT_FOR_OTHERS_S = 2.0  # poll interval while other processes finish the study's last trials


class SweepStopped(RuntimeError):
    """The sweep stopped on purpose (too many failures); the message says why and what to change."""


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
    ) -> None:
        for name, value in (("n_trials", n_trials), ("n_jobs", n_jobs), ("repeats", repeats)):
            if value < 1:
                raise ValueError(f"hydra.sweeper.{name} must be >= 1, got {value}")
        if not 0.0 <= max_failure_rate <= 1.0:
            raise ValueError(f"hydra.sweeper.max_failure_rate must be in [0, 1], got {max_failure_rate}")
        self.sampler_conf = sampler
        self.pruner_conf = pruner
        self.study_name = study_name
        self.storage = storage
        self.storage_dir = storage_dir
        several = OmegaConf.is_list(direction) or isinstance(direction, (list, tuple))
        self.directions = [str(d) for d in direction] if several else [str(direction)]
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
        extender = self._custom_search_space()
        if not space.distributions and extender is None:
            raise SearchSpaceError(
                "nothing to search: hydra.sweeper.params has no distribution and no sweep override was given. "
                "Add one on the command line, e.g. 'optimizer.lr=tag(log, interval(1e-5, 1e-4))', or in "
                "hydra.sweeper.params, or choose a ready search space: sweep=notes"
            )
        self._check_seed_key(space)
        self._check_space_composes(space)
        devices = plan_devices(
            str(self.config.hydra.launcher._target_), visible_gpus(self.gpus), self.n_jobs * self.repeats
        )
        url = resolve_storage_url(self.storage, self.storage_dir, self.study_name)
        os.environ[STORAGE_ENV] = url  # jobs' reporters (and joblib/submitit workers) inherit it
        study = self._open_study(url, space)
        unit = OmegaConf.select(self.config, "smoothing.unit")
        if unit is not None:
            study.set_user_attr(attrs.UNIT, str(unit))
        with storage_lock(url):
            self._enqueue_ablations(study, space, extender)
        try:
            self._run(study, space, extender, devices, url)
        finally:
            paths = write_outputs(study, str(self.config.hydra.sweep.dir))
            log.info(f"Sweep outputs: {', '.join(str(path) for path in paths.values() if path.exists())}")

    # --- setting up ------------------------------------------------------------------------------------

    def _custom_search_space(self) -> Callable[[DictConfig, Trial], Mapping[str, Any] | None] | None:
        if not self.custom_search_space:
            return None
        try:
            return get_method(self.custom_search_space)
        except Exception as error:
            raise SearchSpaceError(
                f"hydra.sweeper.custom_search_space={self.custom_search_space!r} cannot be imported ({error}); "
                f"give a function as module.name, e.g. sweeper.notes.notes_space"
            ) from None

    def _check_seed_key(self, space: SearchSpace) -> None:
        if self.repeats == 1:
            return
        if OmegaConf.select(self.config, self.seed_key) is None:
            raise ValueError(
                f"hydra.sweeper.repeats={self.repeats} varies {self.seed_key}, which the config does not have; "
                f"set hydra.sweeper.seed_key to the config's seed key"
            )
        if self.seed_key in space.distributions or any(override_key(f) == self.seed_key for f in space.fixed):
            raise ValueError(
                f"hydra.sweeper.repeats={self.repeats} sets {self.seed_key} itself; drop it from the search space"
            )

    def _open_study(self, url: str, space: SearchSpace) -> optuna.Study:
        sampler_conf = OmegaConf.to_container(self.sampler_conf, resolve=True)
        sampler_class = sampler_conf["_target_"].rsplit(".", 1)[-1]
        package = SAMPLER_PACKAGES.get(sampler_class)
        if package is not None and importlib.util.find_spec(package) is None:
            raise ValueError(
                f"{sampler_class} needs the `{package}` package, which is not installed: pip install {package} "
                f"(or pip install -e '.[samplers]'), or choose another hydra/sweeper/sampler"
            )
        if sampler_conf["_target_"].endswith("GridSampler") and not sampler_conf.get("search_space"):
            sampler_conf["search_space"] = space.grid()
        sampler = instantiate(sampler_conf)
        pruner = instantiate(OmegaConf.to_container(self.pruner_conf, resolve=True))
        study = optuna.create_study(
            study_name=self.study_name,
            storage=open_storage(url),
            sampler=sampler,
            pruner=pruner,
            directions=self.directions,
            load_if_exists=True,
        )
        stored = [d.name.lower() for d in study.directions]
        if stored != [d.lower() for d in self.directions]:
            raise ValueError(
                f"study {self.study_name!r} in {mask_password(url)} was created with direction(s) {stored}, "
                f"not {self.directions}; use another hydra.sweeper.study_name or the stored direction"
            )
        finished = sum(1 for t in self._budget_trials(study) if t.state.is_finished())
        log.info(f"Study {self.study_name!r} in {mask_password(url)}: {finished} of {self.n_trials} trials done")
        log.info(f"Sampler: {type(sampler).__name__}, pruner: {type(pruner).__name__}, direction(s): {stored}")
        return study

    def _enqueue_ablations(self, study: optuna.Study, space: SearchSpace, extender: Callable | None) -> None:
        """The baseline (the base config as it is) and each remedy alone on top of it, queued once per study."""
        if not self.ablations or study.user_attrs.get(attrs.ABLATIONS_ENQUEUED):
            return
        entries = [(attrs.BASELINE, {})] + [(name, flatten_params(remedy)) for name, remedy in self.ablations.items()]
        queued = 0
        for name, remedy in entries:
            self._check_remedy(name, remedy, space, extender)
            if name != attrs.BASELINE and all(self._base_value(key) == value for key, value in remedy.items()):
                log.info(f"Ablation {name!r} changes nothing the base config does not already have: not queued")
                continue
            if queued == self.n_trials:
                log.info(f"Ablation {name!r} not queued: n_trials={self.n_trials} is used up by the earlier ones")
                continue
            study.enqueue_trial(params=remedy, user_attrs={attrs.ABLATION: name})
            queued += 1
        study.set_user_attr(attrs.ABLATIONS_ENQUEUED, True)

    @staticmethod
    def _check_remedy(name: str, remedy: Mapping[str, Any], space: SearchSpace, extender: Callable | None) -> None:
        for key, value in remedy.items():
            distribution = space.distributions.get(key)
            if distribution is None and extender is None:
                raise SearchSpaceError(
                    f"hydra.sweeper.ablations.{name} sets {key}, which is not in the search space; "
                    f"add {key} to hydra.sweeper.params or drop it from the ablation"
                )
            if isinstance(distribution, CategoricalDistribution) and value not in distribution.choices:
                raise SearchSpaceError(
                    f"hydra.sweeper.ablations.{name} sets {key}={value!r}, which is not one of its choices "
                    f"{list(distribution.choices)}; add it to the choice() or change the ablation"
                )

    def _base_value(self, key: str) -> Any:
        choices = self.config.hydra.runtime.choices
        return choices[key] if key in choices else OmegaConf.select(self.config, key)

    # --- the loop ----------------------------------------------------------------------------------------

    def _run(
        self, study: optuna.Study, space: SearchSpace, extender: Callable | None, devices: list[str] | None, url: str
    ) -> None:
        sampler_finished = False
        while True:
            with storage_lock(url):
                self._fail_trials_of_dead_processes(study)
                batch = [] if sampler_finished else self._ask_batch(study, space, extender)
            if batch:
                sampler_finished = self._launch(study, space, batch, devices)
                self._check_failure_rate(study)
                continue
            others = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if not others:
                return
            owners = sorted({t.user_attrs.get(attrs.PROCESS, "?") for t in others})
            log.info(f"Waiting for {len(others)} trial(s) running in other sweep processes: {', '.join(owners)}")
            time.sleep(WAIT_FOR_OTHERS_S)

    def _budget_trials(self, study: optuna.Study) -> list[FrozenTrial]:
        """The trials that count towards n_trials: all but those that were queued again after their
        sweep process died (their re-run counts instead)."""
        trials = study.get_trials(deepcopy=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            replaced = {RetryFailedTrialCallback.retried_trial_number(t) for t in trials}
        return [t for t in trials if t.number not in replaced]

    def _fail_trials_of_dead_processes(self, study: optuna.Study) -> None:
        """RUNNING trials of a sweep process on this machine that is gone: FAIL, and their parameters
        queued again. Called under the lock and between batches, so this process runs nothing itself."""
        host = socket.gethostname()
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = trial.user_attrs.get(attrs.PROCESS)
            if owner is None or owner.rsplit(":", 1)[0] != host:
                continue
            if owner == self.process or not _process_alive(int(owner.rsplit(":", 1)[1])):
                log.warning(f"Trial {trial.number} was left running by {owner}, which is gone: FAIL, and re-run")
                self._abandon(study, trial, f"its sweep process {owner} stopped; its parameters were queued again")

    @staticmethod
    def _abandon(study: optuna.Study, trial: FrozenTrial, reason: str) -> None:
        # the trial belongs to another (dead) process: write through the storage, not a Trial object,
        # whose construction would run the sampler's before_trial
        study._storage.set_trial_user_attr(trial._trial_id, attrs.REASON, reason)
        _tell(study, trial.number, TrialState.FAIL, None)
        RetryFailedTrialCallback()(study, study.get_trials(deepcopy=False)[trial.number])

    def _ask_batch(
        self, study: optuna.Study, space: SearchSpace, extender: Callable | None
    ) -> list[tuple[Trial, list[str]]]:
        started = [t for t in self._budget_trials(study) if t.state != TrialState.WAITING]
        room = min(self.n_jobs, self.n_trials - len(started))
        batch = []
        for _ in range(room):
            trial = study.ask()  # queued trials first (ablation, re-runs), then the sampler
            trial.set_user_attr(attrs.PROCESS, self.process)
            batch.append((trial, self._suggest(study, trial, space, extender)))
        return batch

    def _suggest(
        self, study: optuna.Study, trial: Trial, space: SearchSpace, extender: Callable | None
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
            job.append(render_override("trial", reporter))
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
    ) -> bool:
        """Runs one batch and tells Optuna each trial's end; True when the sampler says it is done."""
        jobs = []
        for trial, overrides in batch:
            for repeat in range(self.repeats):
                device = devices[len(jobs)] if devices else None
                jobs.append(self._job_overrides(trial, overrides, repeat, device))
        try:
            returns = self.launcher.launch(jobs, initial_job_idx=self.job_idx)
        except KeyboardInterrupt:
            for trial, _ in batch:
                self._abandon(study, study.get_trials(deepcopy=False)[trial.number], "interrupted (Ctrl-C)")
            raise
        self.job_idx += len(jobs)
        sampler_finished = False
        for index, (trial, overrides) in enumerate(batch):
            returned = returns[index * self.repeats : (index + 1) * self.repeats]
            outcome = trial_outcome([job_outcome(job, len(self.directions)) for job in returned])
            trial.set_user_attr(attrs.RUN_DIRS, outcome.run_dirs)
            trial.set_user_attr(attrs.REASON, outcome.reason)
            if outcome.spread is not None:
                trial.set_user_attr(attrs.VALUES_PER_SEED, outcome.values_per_seed)
                trial.set_user_attr(attrs.SPREAD, outcome.spread)
            sampler_finished |= _tell(study, trial, outcome.state, outcome.values)
            finished = sum(1 for t in self._budget_trials(study) if t.state.is_finished())
            best = best_trials(study) if len(self.directions) == 1 else []
            changes = overrides[len(space.fixed) :]
            frozen = study.get_trials(deepcopy=False)[trial.number]
            print_progress(frozen, changes, finished, self.n_trials, best[0] if best else None)
        return sampler_finished

    def _check_space_composes(self, space: SearchSpace) -> None:
        """Composes the config with the fixed overrides and each parameter at its bounds (every choice of
        a categorical, one at a time), so a wrong key or group option fails now, before the study is
        touched, rather than in every trial."""
        base = {name: _probe_values(distribution)[0] for name, distribution in space.distributions.items()}
        probes = [base] + [
            {**base, name: value}
            for name, distribution in space.distributions.items()
            for value in _probe_values(distribution)[1:]
        ]
        for probe in probes:
            overrides = space.fixed + [render_override(name, value) for name, value in probe.items()]
            try:
                self.hydra_context.config_loader.load_sweep_config(master_config=self.config, sweep_overrides=overrides)
            except HydraException as error:
                raise SearchSpaceError(
                    f"the search space's overrides do not compose with the config: {error}\n  overrides: {overrides}\n"
                    f"Check the keys in hydra.sweeper.params (group choices are written `scheduler: choice(...)`, "
                    f"values `optimizer.lr: ...`)"
                ) from None

    def _check_failure_rate(self, study: optuna.Study) -> None:
        failed = [t for t in self._budget_trials(study) if t.state == TrialState.FAIL]
        if len(failed) > self.max_failure_rate * self.n_trials:
            reasons = "; ".join(f"trial {t.number}: {t.user_attrs.get(attrs.REASON)}" for t in failed[-3:])
            raise SweepStopped(
                f"{len(failed)} of n_trials={self.n_trials} trials failed, more than "
                f"max_failure_rate={self.max_failure_rate} allows; the sweep stopped. Last reasons: {reasons}. "
                f"Fix the cause (see each run dir's result.json), or raise hydra.sweeper.max_failure_rate"
            )


def _suggest_one(trial: Trial, name: str, distribution: BaseDistribution) -> None:
    if isinstance(distribution, CategoricalDistribution):
        trial.suggest_categorical(name, distribution.choices)
    elif isinstance(distribution, IntDistribution):
        trial.suggest_int(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)
    else:
        trial.suggest_float(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)


def _probe_values(distribution: BaseDistribution) -> list[Any]:
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    return [distribution.low, distribution.high]


def _tell(study: optuna.Study, trial: Trial | int, state: TrialState, values: list[float] | None) -> bool:
    """study.tell; True when the sampler asks the study to stop (GridSampler, grid exhausted), which
    Optuna signals by calling Study.stop(), an error outside Study.optimize (the state is saved first)."""
    try:
        study.tell(trial, state=state, values=values)
    except RuntimeError as error:
        if "Study.stop" not in str(error):
            raise
        log.info("The sampler has no new points to try (every grid point was run): the sweep ends")
        return True
    return False


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True
