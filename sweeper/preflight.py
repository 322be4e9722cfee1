"""Checks a sweep makes before it touches the study, so a mistake fails once, in seconds, with the fix,
instead of in every trial: the search space is not empty, composes with the config and stays inside the
training schema (runs.schema) at every choice and both ends of every interval, the ablation's values do
too, the seed key exists for repeats, the custom search space imports, the sampler's extra package is
installed, and every probed trial reports its loss often enough for the pruner to act before its budget
ends (runs.budget: the arithmetic training plans its reports by)."""
from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hydra.errors import HydraException
from hydra.types import HydraContext
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import Trial

from runs.budget import ReportPlan, report_plan as trainer_report_plan
from runs.errors import ConfigError
from runs.schema import TrainConfig, check_config, explain
from sweeper.errors import SweepError
from sweeper.overrides import override_key, render_override
from sweeper.search_space import SearchSpace, SearchSpaceError, flatten_params

SAMPLER_PACKAGES = {"CmaEsSampler": "cmaes", "GPSampler": "scipy"}  # imported by Optuna only when sampling

SpaceExtender = Callable[[DictConfig, Trial], Mapping[str, Any] | None]


def load_custom_search_space(path: str | None) -> SpaceExtender | None:
    """The `hydra.sweeper.custom_search_space` function, or None when none is configured."""
    if not path:
        return None
    try:
        return get_method(path)
    except Exception as error:
        raise SearchSpaceError(
            f"hydra.sweeper.custom_search_space={path!r} cannot be imported ({error}); "
            f"give a function as module.name, e.g. sweeper.notes.notes_space"
        ) from None


def check_not_empty(space: SearchSpace, extender: SpaceExtender | None) -> None:
    if not space.distributions and extender is None:
        raise SearchSpaceError(
            "nothing to search: hydra.sweeper.params has no distribution and no sweep override was given. "
            "Add one on the command line, e.g. 'optimizer.lr=tag(log, interval(1e-5, 1e-4))', or in "
            "hydra.sweeper.params, or choose a ready search space: sweep=notes"
        )


def check_seed_key(config: DictConfig, space: SearchSpace, repeats: int, seed_key: str) -> None:
    """Repeats vary `seed_key`: it must exist in the config and must not be searched as well."""
    if repeats == 1:
        return
    if OmegaConf.select(config, seed_key) is None:
        raise SweepError(
            f"hydra.sweeper.repeats={repeats} varies {seed_key}, which the config does not have; "
            f"set hydra.sweeper.seed_key to the config's seed key"
        )
    if seed_key in space.distributions or any(override_key(f) == seed_key for f in space.fixed):
        raise SweepError(f"hydra.sweeper.repeats={repeats} sets {seed_key} itself; drop it from the search space")


def check_sampler_package(sampler_target: str) -> None:
    sampler_class = sampler_target.rsplit(".", 1)[-1]
    package = SAMPLER_PACKAGES.get(sampler_class)
    if package is not None and importlib.util.find_spec(package) is None:
        raise SweepError(
            f"{sampler_class} needs the `{package}` package, which is not installed: pip install {package} "
            f"(or pip install -e '.[samplers]'), or choose another hydra/sweeper/lorasweep_sampler"
        )


def check_space_composes(hydra_context: HydraContext, config: DictConfig, space: SearchSpace) -> list[DictConfig]:
    """Composes the config with the fixed overrides and each parameter at its bounds (every choice of
    a categorical, one at a time), and checks each against the training schema, so a wrong key, a group
    option, a value of the wrong type or out of range fails now, before the study is touched, rather than
    in every trial. Returns each probe's composed config."""
    base = {name: _probe_values(distribution)[0] for name, distribution in space.distributions.items()}
    probes = [base] + [
        {**base, name: value}
        for name, distribution in space.distributions.items()
        for value in _probe_values(distribution)[1:]
    ]
    return [
        compose_trial(hydra_context, config, space.fixed + [render_override(name, value) for name, value in probe.items()],
                      "the search space (hydra.sweeper.params and the sweep's overrides)")
        for probe in probes
    ]


def check_ablations(
    hydra_context: HydraContext, config: DictConfig, space: SearchSpace, extender: SpaceExtender | None, ablations: Mapping[str, Any] | None
) -> None:
    """Each remedy of the ablation sets parameters of the space, gives each a value its distribution holds
    (one of a choice(), a number for an interval), and on top of the base config composes and stays inside
    the schema, before the study is touched: a bad remedy would otherwise fail after the trials before it."""
    for name, remedy in (ablations or {}).items():
        settings = flatten_params(remedy)
        check_remedy(name, settings, space, extender)
        for key, value in settings.items():
            distribution = space.distributions.get(key)
            if isinstance(distribution, (FloatDistribution, IntDistribution)) and not _is_number(value, distribution):
                kind = "an integer" if isinstance(distribution, IntDistribution) else "a number"
                raise SearchSpaceError(
                    f"hydra.sweeper.ablations.{name} sets {key}={value!r}, but {key} is searched as {kind} "
                    f"in [{distribution.low}, {distribution.high}]: give {kind}"
                )
        compose_trial(hydra_context, config, space.fixed + [render_override(key, value) for key, value in settings.items()],
                      f"hydra.sweeper.ablations.{name}")


def check_remedy(name: str, remedy: Mapping[str, Any], space: SearchSpace, extender: SpaceExtender | None) -> None:
    """A remedy sets parameters of the space (or ones the custom search space may set), each choice one of its choice()."""
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


def compose_trial(hydra_context: HydraContext, config: DictConfig, overrides: list[str], source: str) -> DictConfig:
    """A trial's config as its job will compose it, checked against the training schema when the app is
    train.py (its root is runs.schema.TrainConfig); refused in one line that names where the overrides
    came from."""
    try:
        trial_config = hydra_context.config_loader.load_sweep_config(master_config=config, sweep_overrides=overrides)
    except (HydraException, OmegaConfBaseException) as error:
        raise SearchSpaceError(
            f"the overrides of {source} do not compose with the config: {explain(error)}. Overrides: {' '.join(overrides)}. "
            "Check the keys (group choices are written `scheduler: choice(...)`, values `optimizer.lr: ...`) and the values"
        ) from None
    if _is_training_config(trial_config):
        try:
            check_config(trial_config)
        except ConfigError as error:
            raise SearchSpaceError(f"{source} reaches a setting the schema refuses: {error}. Overrides: {' '.join(overrides)}") from None
    return trial_config


def _is_training_config(config: DictConfig) -> bool:
    return OmegaConf.get_type(config) is TrainConfig


def _is_number(value: Any, distribution: BaseDistribution) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or not isinstance(distribution, IntDistribution)


def _probe_values(distribution: BaseDistribution) -> list[Any]:
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    return [distribution.low, distribution.high]


@dataclass(frozen=True)
class PrunerNeeds:
    """When a pruner can first stop a trial: at a report at `first` samples seen or later, once the trial
    has made `reports` reports; `setting` is the key that sets `first`, `reports_setting` the one that
    sets `reports` (None: one report is enough)."""

    name: str
    first: int
    reports: int
    setting: str
    reports_setting: str | None = None


def check_report_points(config: DictConfig, probes: list[DictConfig]) -> None:
    """Refuses a pruner that could never stop a trial: each probed trial (the space's bounds, every
    categorical choice) must report, within its budget, as many times as the pruner needs and at least
    once at or after the pruner's first step (n_warmup_steps, min_resource; in samples seen)."""
    pruner = OmegaConf.select(config, "hydra.sweeper.pruner")
    needs = pruner_needs(OmegaConf.to_container(pruner, resolve=True)) if pruner is not None else None
    if needs is None:
        return
    short = [(probe, plan) for probe in probes if (plan := report_plan(probe)) is not None and not _enough(needs, plan)]
    if short:
        fewest = min((plan for _, plan in short), key=lambda plan: len(plan.points))
        raise SweepError(f"{_refusal(needs, fewest)}; {_fix(needs, [probe for probe, _ in short])}")


def pruner_needs(pruner: Mapping[str, Any]) -> PrunerNeeds | None:
    """What Optuna's pruner needs before it can stop a trial; None for no pruning or an unknown pruner,
    or a first step decided at run time (SuccessiveHalvingPruner's min_resource=auto)."""
    name = str(pruner.get("_target_", "")).rsplit(".", 1)[-1]
    if name in ("MedianPruner", "PercentilePruner"):
        return PrunerNeeds(name, int(pruner.get("n_warmup_steps", 0)), 1, "hydra.sweeper.pruner.n_warmup_steps")
    if name == "SuccessiveHalvingPruner":
        if pruner.get("min_resource", "auto") == "auto":
            return None
        first = int(pruner["min_resource"]) * int(pruner.get("reduction_factor", 4)) ** int(
            pruner.get("min_early_stopping_rate", 0)
        )
        return PrunerNeeds(name, first, 1, "hydra.sweeper.pruner.min_resource")
    if name == "RacingPruner":
        return PrunerNeeds(name, int(pruner.get("min_samples", 0)), int(pruner.get("min_pairs", 2)), "hydra.sweeper.pruner.min_samples")
    if name == "HyperbandPruner":
        return PrunerNeeds(name, int(pruner.get("min_resource", 1)), 1, "hydra.sweeper.pruner.min_resource")
    if name == "PatientPruner":
        wrapped = pruner.get("wrapped_pruner")
        inner = pruner_needs(wrapped) if wrapped else None
        reports = int(pruner.get("patience", 0)) + 2  # Optuna's PatientPruner acts only with more than patience + 1
        patience = "hydra.sweeper.pruner.patience"
        if inner is None:
            return PrunerNeeds(name, 0, reports, patience, patience)
        setting = "hydra.sweeper.pruner.wrapped_pruner." + inner.setting.rsplit(".", 1)[-1]
        return PrunerNeeds(name, inner.first, max(reports, inner.reports), setting, patience)
    return None


def report_plan(config: DictConfig) -> ReportPlan | None:
    """The trial's reports in samples seen, as training makes them: every trainer.report_every log steps,
    a log step every trainer.logging_steps optimizer steps of per_device_batch_size x
    gradient_accumulation_steps samples, the last step taking what is left of the budget. None when the
    budget is not known before the data is read (epochs, packing) or the pruner counts tokens."""
    trainer = OmegaConf.select(config, "trainer")
    if trainer is None or OmegaConf.select(config, "smoothing.unit", default="samples") != "samples":
        return None
    return trainer_report_plan(trainer)


def _enough(needs: PrunerNeeds, plan: ReportPlan) -> bool:
    return len(plan.points) >= needs.reports and plan.points[-1] >= needs.first


def _refusal(needs: PrunerNeeds, plan: ReportPlan) -> str:
    shown = ", ".join(str(point) for point in plan.points[:12]) + (", ..." if len(plan.points) > 12 else "")
    count = f" once the trial has made {needs.reports} reports ({needs.reports_setting} + 2)" if needs.reports_setting else ""
    return (
        f"the pruner ({needs.name}) could never stop some trials: it acts at a report at or after {needs.first} "
        f"samples seen ({needs.setting}){count}, but a trial reports its loss "
        f"({plan.interval}) only at [{shown}] samples of its {plan.budget}-sample budget ({len(plan.points)} reports)"
    )


def _fix(needs: PrunerNeeds, configs: list[DictConfig]) -> str:
    """The largest trainer.logging_steps that gives the pruner enough reports in every one of `configs`,
    else the other ways out."""
    for lower in range(max(config.trainer.logging_steps for config in configs) - 1, 0, -1):
        plans = [trainer_report_plan(OmegaConf.merge(config.trainer, {"logging_steps": lower})) for config in configs]
        if all(plan is not None and _enough(needs, plan) for plan in plans):
            return (
                f"set trainer.logging_steps={lower} or less, lower {_lower(needs)}, raise trainer.max_samples_seen, "
                f"or turn pruning off (hydra/sweeper/lorasweep_pruner=none)"
            )
    return f"lower {_lower(needs)}, raise trainer.max_samples_seen, or turn pruning off (hydra/sweeper/lorasweep_pruner=none)"


def _lower(needs: PrunerNeeds) -> str:
    return f"{needs.setting} or {needs.reports_setting}" if needs.reports_setting else needs.setting
