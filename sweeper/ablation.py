"""The ablation: a "baseline" trial (the base config as it is), then each remedy alone on top of it,
queued at the head of the study so they run before the sampler's trials."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from runs import attrs
from sweeper.preflight import SpaceExtender, check_remedy
from sweeper.search_space import SearchSpace, flatten_params

log = logging.getLogger(__name__)


def enqueue_ablations(
    study: optuna.Study,
    ablations: Mapping[str, Any] | None,
    space: SearchSpace,
    extender: SpaceExtender | None,
    config: DictConfig,
    n_trials: int,
) -> None:
    """Queues the baseline and each remedy that the study does not hold yet (the caller holds the storage
    lock). Idempotent: a process killed half-way through leaves some queued, each in one storage write
    with its name, and the next run queues only the rest."""
    if not ablations:
        return
    entries = [(attrs.BASELINE, {})] + [(name, flatten_params(remedy)) for name, remedy in ablations.items()]
    present = {t.user_attrs.get(attrs.ABLATION) for t in study.get_trials(deepcopy=False)} - {None}
    queued = len(present)
    for name, remedy in entries:
        check_remedy(name, remedy, space, extender)
        if name in present:
            continue
        if name != attrs.BASELINE and all(_base_value(config, key) == value for key, value in remedy.items()):
            log.info(f"Ablation {name!r} changes nothing the base config does not already have: not queued")
            continue
        if queued == n_trials:
            log.info(f"Ablation {name!r} not queued: n_trials={n_trials} is used up by the earlier ones")
            continue
        study.enqueue_trial(params=remedy, user_attrs={attrs.ABLATION: name})
        queued += 1


def _base_value(config: DictConfig, key: str) -> Any:
    choices = config.hydra.runtime.choices
    return choices[key] if key in choices else OmegaConf.select(config, key)
