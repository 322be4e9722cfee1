"""No parameter set is trained twice in a study.

Each sweep process that opens a study claims its own sampler stream: with hydra.sweeper.seed set, the
first process of a study samples from `seed` itself (a single-process study is reproducible) and the
k-th from `seed + k`, so a resume or a second concurrent process does not replay the first one's
draws. Whatever a sampler still proposes twice (TPE on a small categorical space does) is not trained
again: the trial takes the finished twin's result and records which trial that was.
"""
from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from runs import attrs

STREAMS_ATTR = "sampler_streams"  # study user attr: sweep processes that have opened the study


def claim_stream(study: optuna.Study) -> int:
    """This process's stream number, 0 for the study's first process (the caller holds the storage lock)."""
    stream = int(study.user_attrs.get(STREAMS_ATTR, 0))
    study.set_user_attr(STREAMS_ATTR, stream + 1)
    return stream


def stream_seed(seed: int | None, stream: int) -> int | None:
    return None if seed is None else seed + stream


def finished_twin(study: optuna.Study, overrides: list[str], number: int) -> FrozenTrial | None:
    """The first COMPLETE or PRUNED trial other than `number` that ran exactly these overrides."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        if trial.number != number and trial.user_attrs.get(attrs.OVERRIDES) == overrides and attrs.COPY_OF not in trial.user_attrs:
            return trial
    return None
