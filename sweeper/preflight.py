"""Checks a sweep makes before it touches the study, so a mistake fails once, in seconds, with the fix,
instead of in every trial: the search space is not empty and composes with the config, the seed key
exists for repeats, the custom search space imports, the sampler's extra package is installed."""
from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from typing import Any

from hydra.errors import HydraException
from hydra.types import HydraContext
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import Trial

from sweeper.overrides import override_key, render_override
from sweeper.search_space import SearchSpace, SearchSpaceError

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
        raise ValueError(
            f"hydra.sweeper.repeats={repeats} varies {seed_key}, which the config does not have; "
            f"set hydra.sweeper.seed_key to the config's seed key"
        )
    if seed_key in space.distributions or any(override_key(f) == seed_key for f in space.fixed):
        raise ValueError(f"hydra.sweeper.repeats={repeats} sets {seed_key} itself; drop it from the search space")


def check_sampler_package(sampler_target: str) -> None:
    sampler_class = sampler_target.rsplit(".", 1)[-1]
    package = SAMPLER_PACKAGES.get(sampler_class)
    if package is not None and importlib.util.find_spec(package) is None:
        raise ValueError(
            f"{sampler_class} needs the `{package}` package, which is not installed: pip install {package} "
            f"(or pip install -e '.[samplers]'), or choose another hydra/sweeper/sampler"
        )


def check_space_composes(hydra_context: HydraContext, config: DictConfig, space: SearchSpace) -> None:
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
            hydra_context.config_loader.load_sweep_config(master_config=config, sweep_overrides=overrides)
        except HydraException as error:
            raise SearchSpaceError(
                f"the search space's overrides do not compose with the config: {error}\n  overrides: {overrides}\n"
                f"Check the keys in hydra.sweeper.params (group choices are written `scheduler: choice(...)`, "
                f"values `optimizer.lr: ...`)"
            ) from None


def _probe_values(distribution: BaseDistribution) -> list[Any]:
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    return [distribution.low, distribution.high]
