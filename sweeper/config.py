"""The sweeper's config schema and its sampler/pruner groups, registered in Hydra's ConfigStore.

Registered in code (not YAML under conf/) so that `hydra/sweeper=lorasweep` works for any Hydra app
that can import this package, the tests' small app included. Samplers and pruners are Optuna's own
classes, instantiated from `_target_` and passed through unchanged: a field here is a keyword argument
of that class, with Optuna's default unless a comment says why it differs. This module must stay cheap
to import (no optuna import): Hydra imports it on every start, also for runs that do not sweep.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

SWEEPER_NAME = "lorasweep"
BUDGET_FRACTION_RESOLVER = "budget_fraction"


def budget_fraction(budget: Any, fraction: Any) -> int | str:
    """`${budget_fraction:BUDGET,FRACTION}`: that fraction of a budget in samples (at least 1), for a pruner
    setting derived from the budget (sweep=notes: successive halving's first rung at 5%). A budget of 0
    means the run's budget is not in samples (epochs or max_steps): then Optuna's own "auto"."""
    samples = int(budget)
    return max(1, round(samples * float(fraction))) if samples > 0 else "auto"


@dataclass
class SeededSamplerConf:
    """What every sampler takes: hydra.sweeper.seed, so one setting seeds whichever sampler is chosen."""

    seed: Optional[int] = "${hydra.sweeper.seed}"  # type: ignore[assignment]


@dataclass
class TPESamplerConf(SeededSamplerConf):
    """Default. Good with few trials and mixed (categorical + numeric) spaces."""

    _target_: str = "optuna.samplers.TPESampler"
    n_startup_trials: int = 10  # random trials before TPE models the space (enqueued ones count)
    multivariate: Optional[bool] = None
    group: bool = False
    constant_liar: bool = True  # keeps parallel trials (n_jobs > 1) from sampling the same point


@dataclass
class RandomSamplerConf(SeededSamplerConf):
    """A baseline for the other samplers, and what bench/sweep_cost.py compares against."""

    _target_: str = "optuna.samplers.RandomSampler"


@dataclass
class CmaEsSamplerConf(SeededSamplerConf):
    """Continuous spaces with many trials (needs the `cmaes` package); categoricals fall back to random."""

    _target_: str = "optuna.samplers.CmaEsSampler"
    n_startup_trials: int = 1
    sigma0: Optional[float] = None
    consider_pruned_trials: bool = False
    with_margin: bool = False  # set true for int-valued parameters
    use_separable_cma: bool = False


@dataclass
class GPSamplerConf(SeededSamplerConf):
    """Gaussian-process Bayesian optimisation: the most sample-efficient for small budgets (needs scipy)."""

    _target_: str = "optuna.samplers.GPSampler"
    n_startup_trials: int = 10
    deterministic_objective: bool = False


@dataclass
class NSGAIISamplerConf(SeededSamplerConf):
    """Multi-objective studies (a list in hydra.sweeper.direction)."""

    _target_: str = "optuna.samplers.NSGAIISampler"
    population_size: int = 50
    mutation_prob: Optional[float] = None
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5


@dataclass
class GridSamplerConf(SeededSamplerConf):
    """Every combination once. search_space null = built from hydra.sweeper.params (choice/range only)."""

    _target_: str = "optuna.samplers.GridSampler"
    search_space: Optional[Dict[str, Any]] = None


@dataclass
class MedianPrunerConf:
    """Default. Prunes a trial whose best intermediate value is worse than the median of earlier trials
    at the same step. Steps are samples (or tokens) seen, so n_warmup_steps is in samples too."""

    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 5  # finished trials before any pruning
    n_warmup_steps: int = 0  # samples seen before a trial can be pruned
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class SuccessiveHalvingPrunerConf:
    """Asynchronous successive halving: keeps the best 1/reduction_factor at each rung."""

    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    min_resource: Any = "auto"  # samples seen at the first rung; auto = from the first finished trial
    reduction_factor: int = 4
    min_early_stopping_rate: int = 0
    bootstrap_count: int = 0


@dataclass
class HyperbandPrunerConf:
    """Several successive-halving brackets at once: less sensitive to the choice of min_resource."""

    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1  # in samples seen
    max_resource: Any = "auto"
    reduction_factor: int = 3
    bootstrap_count: int = 0


@dataclass
class PatientPrunerConf:
    """Waits `patience` reports without improvement before asking the wrapped pruner."""

    _target_: str = "optuna.pruners.PatientPruner"
    wrapped_pruner: Any = field(default_factory=lambda: {"_target_": "optuna.pruners.MedianPruner"})
    patience: int = 3
    min_delta: float = 0.0


@dataclass
class RacingPrunerConf:
    """Default of sweep=notes. Stops a trial once its training loss on the same samples is worse than the
    leader's (an ablation remedy: the baseline's) by more than margin + a confidence bound; trials on
    another sample stream race only among themselves (sweeper/racing.py). Defaults measured with
    bench/sweep_cost.py."""

    _target_: str = "sweeper.racing.RacingPruner"
    margin: float = 0.02  # the smallest gap that stops a trial, as a fraction of the leader's loss
    confidence: float = 0.95  # one-sided, of the bound on the mean paired difference
    min_pairs: int = 2  # paired loss intervals (between reports both trials made) before a trial can stop
    min_samples: int = 0  # samples seen before a trial can stop
    recent: float = 0.5  # the latest fraction of the samples seen that is compared


@dataclass
class NopPrunerConf:
    """No pruning: every trial trains to its full budget."""

    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class LorasweepSweeperConf:
    """`hydra/sweeper=lorasweep`. See sweeper/study_loop.py for what each setting does in the loop."""

    _target_: str = "hydra_plugins.lorasweep.lorasweep_sweeper.LorasweepSweeper"
    # the sweeper builds the sampler and pruner itself: the grid sampler needs the parsed space, and
    # jobs need the pruner's config to build the same pruner on their side
    _recursive_: bool = False
    # groups named lorasweep_* (placed at hydra.sweeper.sampler / .pruner): hydra-optuna-sweeper registers
    # hydra/sweeper/sampler and hydra/sweeper/pruner, and with both installed its configs would win silently
    defaults: List[Any] = field(
        default_factory=lambda: ["_self_", {"lorasweep_sampler": "tpe"}, {"lorasweep_pruner": "median"}]
    )
    sampler: Any = None
    pruner: Any = None
    # the study's name in the storage; also the W&B group and the default storage file's name
    study_name: str = "lorasweep"
    # an Optuna storage URL (sqlite:///..., postgresql://..., journal:path/to/file.log);
    # null = sqlite:///<storage_dir>/<study_name>.db, which outlives the process and the sweep dir.
    # A URL with a password belongs in the environment (LORASWEEP_STORAGE), not on the command line:
    # Hydra writes command-line overrides into every run dir.
    storage: Optional[str] = "${oc.env:LORASWEEP_STORAGE,null}"
    storage_dir: str = "${oc.select:paths.root_dir,.}/sweeps"
    direction: Any = "minimize"  # or a list for a multi-objective study
    n_trials: int = 20  # a total for the study: a resumed study stops at n_trials, not n_trials more
    n_jobs: int = 1  # trials launched at once (the launcher decides whether they run in parallel)
    # a RUNNING trial whose sweep process has not renewed its lease for this long (any host) is marked
    # FAIL and its parameters run again; the owner renews every quarter of it
    lease_grace_s: float = 300.0
    max_failure_rate: float = 0.25  # stop once failed trials exceed this fraction of n_trials
    seed: Optional[int] = None  # the sampler's seed
    repeats: int = 1  # jobs per parameter set, with trainer seeds seed_key + 0..repeats-1
    seed_key: str = "trainer.seed"
    # parameter -> override syntax: choice(...), range(...), interval(...), tag(log, interval(...)), or a
    # fixed value; keys are config keys ("optimizer.lr") or group names ("scheduler")
    params: Dict[str, Any] = field(default_factory=dict)
    # "module.function(cfg, trial)" that suggests more parameters (conditional spaces) and may return a
    # dict of derived overrides (values computed from the suggested ones)
    custom_search_space: Optional[str] = None
    # name -> {param: value}: run first, each on top of the base config, after a "baseline" trial that
    # changes nothing; a one-change-at-a-time ablation recorded in the user attr "ablation"
    # (hydra.sweeper.ablations=null: none)
    ablations: Optional[Dict[str, Any]] = field(default_factory=dict)
    # the ablation is the measurement: its trials report their curves (the pruner learns from them) but
    # run to the end unless this is true
    prune_ablations: bool = False
    # GPU ids for concurrent trials under a multi-process launcher (joblib), one GPU per trial;
    # null = CUDA_VISIBLE_DEVICES or the GPUs nvidia-smi lists
    gpus: Optional[List[int]] = None
    # trial processes that share each GPU (joblib, submitit_local; SLURM: worker mode with
    # LORASWEEP_TRIALS_PER_GPU): a small model's trial leaves most of a GPU idle and waits on the host.
    # Refused when a finished trial's measured peak memory x k does not fit the GPU
    trials_per_gpu: int = 1


def register_configs() -> None:
    """Put the sweeper and its sampler/pruner groups where `hydra/sweeper=lorasweep` looks for them, and
    the resolver that derives pruner settings from a budget."""
    OmegaConf.register_new_resolver(BUDGET_FRACTION_RESOLVER, budget_fraction, replace=True)
    store = ConfigStore.instance()
    store.store(group="hydra/sweeper", name=SWEEPER_NAME, node=LorasweepSweeperConf, provider=SWEEPER_NAME)
    samplers = {
        "tpe": TPESamplerConf,
        "random": RandomSamplerConf,
        "cmaes": CmaEsSamplerConf,
        "gp": GPSamplerConf,
        "nsgaii": NSGAIISamplerConf,
        "grid": GridSamplerConf,
    }
    pruners = {
        "median": MedianPrunerConf,
        "successive_halving": SuccessiveHalvingPrunerConf,
        "hyperband": HyperbandPrunerConf,
        "patient": PatientPrunerConf,
        "racing": RacingPrunerConf,
        "none": NopPrunerConf,
    }
    for name, node in samplers.items():
        store.store(group="hydra/sweeper/lorasweep_sampler", name=name, node=node, package="hydra.sweeper.sampler",
                    provider=SWEEPER_NAME)
    for name, node in pruners.items():
        store.store(group="hydra/sweeper/lorasweep_pruner", name=name, node=node, package="hydra.sweeper.pruner",
                    provider=SWEEPER_NAME)
