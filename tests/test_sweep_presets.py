"""The sweep presets as the sweeper runs them: every trial of `sweep=notes_quickstart experiment=quickstart`
(each point of its search space, and each ablation) warms up for a fraction of its run, never all of it."""
import functools
import itertools

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, IntDistribution

from runs.project import register_project_dir
from sft.recipe.batching import MicroBatches
from runs.budget import plan_budget
from sft.recipe.train import training_arguments
from sweeper.notes import ACCUMULATION_KEY, BATCH_KEY, SCHEDULER_KEY, accumulation_for, effective_batch
from sweeper.search_space import build_search_space
from tests.conftest import ROOT, compose_train

PRESET = ["experiment=quickstart", "sweep=notes_quickstart"]


def trial_warmup(cfg, tmp_path) -> tuple[int, int]:
    """(warmup steps, optimizer steps) of a trial's config, as its Trainer schedules them."""
    steps = plan_budget(cfg.trainer, None)["steps"]
    passes = MicroBatches(int(cfg.trainer.per_device_batch_size), int(cfg.trainer.gradient_accumulation_steps))
    return training_arguments(cfg, tmp_path, "fp32", steps, passes, has_eval=False).get_warmup_steps(steps), steps


def values_of(distribution) -> list:
    """Every value a finite distribution can take."""
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    assert isinstance(distribution, IntDistribution) and not distribution.log, f"{distribution}: not finite"
    return list(range(distribution.low, distribution.high + 1, distribution.step))


def test_notes_quickstart_never_warms_up_for_a_whole_trial(tmp_path):
    register_project_dir()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        sweeper = compose(config_name="train", overrides=PRESET, return_hydra_config=True).hydra.sweeper
    space = build_search_space(OmegaConf.to_container(sweeper.params, resolve=True), [])

    @functools.cache
    def composed(scheduler: str | None):
        """A trial's config before its other values: the scheduler is a config group, so it is composed."""
        return compose_train([*PRESET, *space.fixed, *([f"{SCHEDULER_KEY}={scheduler}"] if scheduler else [])])

    def trial_config(values: dict):
        cfg = composed(values.get(SCHEDULER_KEY)).copy()
        for name, value in values.items():
            if name != SCHEDULER_KEY:
                OmegaConf.update(cfg, name, value)
        return cfg

    # the values that set a trial's optimizer steps or its warmup (the learning rate, shuffling, weight
    # decay and clipping change neither), every combination of them
    finite = {name: values_of(distribution) for name, distribution in space.distributions.items()
              if name == BATCH_KEY or name.startswith(SCHEDULER_KEY)}
    assert {BATCH_KEY, SCHEDULER_KEY} <= set(finite)
    checked = []
    for values in (dict(zip(finite, point)) for point in itertools.product(*finite.values())):
        # the accumulation notes_space derives, keeping the preset's effective batch
        values[ACCUMULATION_KEY] = accumulation_for(effective_batch(composed(None)), values[BATCH_KEY])
        checked.append((values, *trial_warmup(trial_config(values), tmp_path)))
    ablations = OmegaConf.to_container(sweeper.ablations, resolve=True)
    for name, remedy in {"baseline": {}, **ablations}.items():
        checked.append(({"ablation": name}, *trial_warmup(trial_config(remedy), tmp_path)))
    assert len(checked) == len(list(itertools.product(*finite.values()))) + 1 + len(ablations)
    whole_run = [(point, warmup, steps) for point, warmup, steps in checked if warmup >= steps]
    assert not whole_run, f"{len(whole_run)} trials warm up for their whole run: {whole_run[:3]}"
    # at most warmup_ratio 0.3 of a run, rounded up to a whole step
    assert max(warmup / steps for _, warmup, steps in checked) <= 0.3 + 1 / min(steps for *_, steps in checked)
