"""The ablation: a "baseline" trial (the base config as it is), then each remedy alone on top of it,
queued at the head of the study so they run before the sampler's trials."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import CategoricalDistribution

from sweeper.preflight import SpaceExtender
from sweeper.search_space import SearchSpace, SearchSpaceError, flatten_params
from sweeper.trial_attrs import ABLATION_ATTR, ABLATIONS_ENQUEUED_ATTR, BASELINE

log = logging.getLogger(__name__)


def enqueue_ablations(
    study: optuna.Study,
    ablations: Mapping[str, Any] | None,
    space: SearchSpace,
    extender: SpaceExtender | None,
    config: DictConfig,
    n_trials: int,
) -> None:
    """Queues the baseline and each remedy once per study (the caller holds the storage lock)."""
    if not ablations or study.user_attrs.get(ABLATIONS_ENQUEUED_ATTR):
        return
    entries = [(BASELINE, {})] + [(name, flatten_params(remedy)) for name, remedy in ablations.items()]
    queued = 0
    for name, remedy in entries:
        check_remedy(name, remedy, space, extender)
        if name != BASELINE and all(_base_value(config, key) == value for key, value in remedy.items()):
            log.info(f"Ablation {name!r} changes nothing the base config does not already have: not queued")
            continue
        if queued == n_trials:
            log.info(f"Ablation {name!r} not queued: n_trials={n_trials} is used up by the earlier ones")
            continue
        study.enqueue_trial(params=remedy, user_attrs={ABLATION_ATTR: name})
        queued += 1
    study.set_user_attr(ABLATIONS_ENQUEUED_ATTR, True)


def check_remedy(name: str, remedy: Mapping[str, Any], space: SearchSpace, extender: SpaceExtender | None) -> None:
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


def _base_value(config: DictConfig, key: str) -> Any:
    choices = config.hydra.runtime.choices
    return choices[key] if key in choices else OmegaConf.select(config, key)
