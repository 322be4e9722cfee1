"""The sweeper's loop with real Hydra launchers and real Optuna storages, on the small app in
tests/sweeper_app (train.py's side of the contract in milliseconds). End-to-end runs with train.py
and the tiny model are in test_sweeper_train.py."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.utils import instantiate
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from runs.result import read_status
from runs.storage import mask_password, open_storage
from runs import attrs
from runs.trial import TrialEnded
from sweeper.devices import plan_devices
from sweeper.racing import RacingPruner
from sweeper.recovery import abandon, budget_trials, requeue_trials_ended_by_scheduler
from sweeper.search_space import SearchSpaceError, build_search_space
from sweeper.submitit_jobs import timeout_rule_warnings

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # Optuna's retry helpers

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "tests" / "sweeper_app" / "app.py"
SAMPLERS = ["tpe", "random", "cmaes", "gp", "nsgaii", "grid"]
PRUNERS = ["median", "successive_halving", "hyperband", "patient", "racing", "none"]


def sweep_command(tmp_path: Path, *overrides: str, storage: str | None = None,
                  extra_env: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of `app.py -m hydra/sweeper=lorasweep ...`, its study under tmp_path."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SWEEP_TEST_OUT": str(tmp_path / "out"), **(extra_env or {})}
    args = [sys.executable, str(APP), "-m", "hydra/sweeper=lorasweep", f"hydra.sweeper.storage_dir={tmp_path}/sweeps"]
    if storage:
        args.append(f"hydra.sweeper.storage={storage}")
    return args + list(overrides), env


def sweep(tmp_path: Path, *overrides: str, storage: str | None = None, wait: bool = True, check: bool = True,
          extra_env: dict[str, str] | None = None):
    """The sweep in a subprocess, its output piped."""
    command, env = sweep_command(tmp_path, *overrides, storage=storage, extra_env=extra_env)
    if not wait:
        return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"sweep failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def load(tmp_path: Path, name: str = "lorasweep", storage: str | None = None) -> optuna.Study:
    """The study, opened as sweep processes open it: under the storage lock, so reading a study that a
    running sweep is creating never races it to create the schema (alembic_version UNIQUE error)."""
    return optuna.load_study(study_name=name, storage=open_storage(storage or f"sqlite:///{tmp_path}/sweeps/{name}.db"))


def counted(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials that count towards n_trials: all but those replaced by a re-run, at any depth."""
    trials = study.get_trials()
    replaced = {number for t in trials for number in RetryHeartbeatStaleTrialCallback.retry_history(t)}
    return [t for t in trials if t.number not in replaced]


X = "x=interval(0.0, 1.0)"  # a search space that composes


def sweep_dir(tmp_path: Path) -> Path:
    (directory,) = (tmp_path / "out").iterdir()
    return directory


# --- the search space ------------------------------------------------------------------------------


def test_params_in_the_official_syntax_become_optuna_distributions():
    space = build_search_space(
        {
            "optimizer.lr": "tag(log, interval(1e-5, 1e-4))",
            "scheduler": "choice(linear, cosine)",
            "scheduler.warmup_steps": "range(5, 50, 5)",
            "trainer.epochs": "int(interval(1, 3))",
            "lora.alpha": "interval(8, 32)",
            "trainer": {"shuffle": "choice(true, false)"},
            "lora.rank": "choice(8)",
            "lora": {"rank": "choice(16, 32)"},  # `+hydra.sweeper.params.lora.rank=...` beats the file's key
            "trainer.max_samples_seen": 320,
            "task.name": "demo",
        },
        ["optimizer.weight_decay=0.0,0.01", "task.name=cate", "experiment=quickstart"],
    )
    assert space.distributions == {
        "optimizer.lr": FloatDistribution(1e-5, 1e-4, log=True),
        "scheduler": CategoricalDistribution(["linear", "cosine"]),
        "scheduler.warmup_steps": IntDistribution(5, 45, step=5),  # stop excluded, as Hydra's range()
        "trainer.epochs": IntDistribution(1, 3),
        "lora.alpha": FloatDistribution(8.0, 32.0),
        "trainer.shuffle": CategoricalDistribution([True, False]),
        "lora.rank": CategoricalDistribution([16, 32]),
        "optimizer.weight_decay": CategoricalDistribution([0.0, 0.01]),
    }
    assert space.fixed == ["trainer.max_samples_seen=320", "task.name=cate", "experiment=quickstart"]


def test_range_excludes_its_stop_as_hydra_does_and_the_notes_warmup_still_reaches_50():
    space = build_search_space({"a": "range(0.1, 0.5, 0.1)", "b": "range(1, 4)", "c": "range(0, 10, 3)"}, [])
    assert space.distributions["a"] == FloatDistribution(0.1, 0.4, step=0.1)
    assert space.distributions["b"] == IntDistribution(1, 3)
    assert space.distributions["c"] == IntDistribution(0, 9, step=3)
    notes = yaml.safe_load((ROOT / "conf" / "sweep" / "notes.yaml").read_text())
    warmup = build_search_space({"w": notes["hydra"]["sweeper"]["params"]["scheduler.warmup_steps"]}, [])
    assert warmup.distributions["w"].high == 50


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"optimizer.lr": "interval(1e-3, 1e-5)"}, "inverted (low > high); write interval(1e-05, 0.001)"),
        ({"optimizer.lr": "tag(log, interval(0, 1))"}, "a log range needs low > 0"),
        ({"optimizer.lr": "glob(*)"}, "is not a distribution the sweeper knows"),
        ({"optimizer.lr": "logint(1, 10)"}, "hydra.sweeper.params.optimizer.lr"),
        ({"scheduler.warmup_steps": "range(50, 5)"}, "range(50, 5) is inverted"),
    ],
)
def test_bad_params_name_the_parameter_and_the_fix(params, message):
    with pytest.raises(SearchSpaceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_search_space(params, [])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ((), "nothing to search"),
        (("x=interval(1.0, 0.0)",), "x: interval(1.0, 0.0) is inverted"),
        (('+hydra.sweeper.params.x="glob(*)"',), "is not a distribution the sweeper knows"),
        (("z=interval(0.0, 1.0)",), "do not compose"),
        ((X, "hydra.sweeper.direction=sideways"), "hydra.sweeper.direction=sideways: each direction must be one of minimize, maximize"),
        ((X, "hydra.sweeper.n_trials=0"), "hydra.sweeper.n_trials=0: it must be 1 or more"),
        ((X, "hydra.sweeper.storage_dir=/proc/lorasweep/sweeps"), "hydra.sweeper.storage_dir: cannot create the directory /proc/lorasweep/sweeps"),
        ((X, "hydra.sweeper.storage=journal:{tmp}/a-file/study.log"), "hydra.sweeper.storage: cannot create the directory {tmp}/a-file"),
        ((X, "hydra.sweeper.storage=study.txt"), "hydra.sweeper.storage: study.txt: not a storage Optuna can open"),
    ],
)
def test_a_refusal_is_one_line_on_stderr_exit_2_before_any_trial_or_storage(tmp_path, overrides, message):
    (tmp_path / "a-file").write_text("")
    result = sweep(tmp_path, *(o.format(tmp=tmp_path) for o in overrides), check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message.format(tmp=tmp_path) in result.stderr
    assert not list(tmp_path.rglob("result.json"))
    assert not [path for path in tmp_path.rglob("*") if path.suffix in (".db", ".log", ".sweep-lock")]


@pytest.mark.slow
def test_grid_sampler_takes_the_space_from_params_and_stops_when_exhausted(tmp_path):
    sweep(tmp_path, "x=choice(0.1, 0.5)", "shape=bowl,ridge", "hydra/sweeper/lorasweep_sampler=grid", "hydra.sweeper.n_trials=10")
    trials = load(tmp_path).get_trials()
    assert sorted((t.params["x"], t.params["shape"]) for t in trials) == [
        (0.1, "bowl"), (0.1, "ridge"), (0.5, "bowl"), (0.5, "ridge")]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_config_instantiates_optunas_own_class(sampler):
    with initialize_config_dir(config_dir=str(ROOT / "tests" / "sweeper_app" / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/sweeper=lorasweep", f"hydra/sweeper/lorasweep_sampler={sampler}",
                                           "hydra.sweeper.seed=3"], return_hydra_config=True)
    node = OmegaConf.to_container(cfg.hydra.sweeper.sampler, resolve=True)
    if sampler == "grid":
        node["search_space"] = {"x": [0.1, 0.2]}
    assert isinstance(instantiate(node), optuna.samplers.BaseSampler)


def test_the_official_plugins_sampler_configs_cannot_shadow_ours():
    """hydra-optuna-sweeper registers hydra/sweeper/sampler/tpe (seed null); ours live elsewhere."""
    store = ConfigStore.instance()
    store.store(group="hydra/sweeper/sampler", name="tpe", node={"_target_": "optuna.samplers.TPESampler", "seed": None},
                provider="optuna_sweeper")
    with initialize_config_dir(config_dir=str(ROOT / "tests" / "sweeper_app" / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/sweeper=lorasweep", "hydra.sweeper.seed=7"], return_hydra_config=True)
    assert OmegaConf.to_container(cfg.hydra.sweeper.sampler, resolve=True)["seed"] == 7


@pytest.mark.parametrize("pruner", PRUNERS)
def test_every_pruner_config_instantiates_optunas_own_class(pruner):
    with initialize_config_dir(config_dir=str(ROOT / "tests" / "sweeper_app" / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/sweeper=lorasweep", f"hydra/sweeper/lorasweep_pruner={pruner}"],
                      return_hydra_config=True)
    assert isinstance(instantiate(OmegaConf.to_container(cfg.hydra.sweeper.pruner, resolve=True)),
                      optuna.pruners.BasePruner)


@pytest.mark.parametrize("sweep_config", ["notes", "notes_quickstart"])
@pytest.mark.parametrize("pruner", PRUNERS)
def test_the_notes_search_spaces_compose_with_every_pruner_and_parse(sweep_config, pruner):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"sweep={sweep_config}", f"hydra/sweeper/lorasweep_pruner={pruner}"],
                      return_hydra_config=True)
    assert cfg.hydra.mode.name == "MULTIRUN"
    space = build_search_space(OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True), [])
    assert {"trainer.per_device_batch_size", "optimizer.lr", "scheduler"} <= set(space.distributions)


@pytest.mark.parametrize("sweep_config", ["notes", "notes_quickstart"])
def test_the_notes_default_pruner_races_the_ablation_too(sweep_config):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"sweep={sweep_config}", "experiment=quickstart"], return_hydra_config=True)
    assert isinstance(instantiate(OmegaConf.to_container(cfg.hydra.sweeper.pruner, resolve=True)), RacingPruner)
    assert cfg.hydra.sweeper.prune_ablations is True


# --- a sweep and its outputs ---------------------------------------------------------------------------


@pytest.mark.slow
def test_sweep_prunes_through_the_storage_and_writes_its_outputs(tmp_path):
    result = sweep(tmp_path, "x=interval(0.3, 2.0)", "y=range(0, 3)", "hydra.sweeper.n_trials=8", "hydra.sweeper.seed=1",
          "hydra/sweeper/lorasweep_sampler=random", "hydra.sweeper.pruner.n_startup_trials=1", "steps=6")
    study = load(tmp_path)
    trials = study.get_trials()
    assert len(trials) == 8
    states = {t.state for t in trials}
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert all(t.user_attrs["reason"].startswith("pruned at") for t in pruned)
    assert all(t.intermediate_values and max(t.intermediate_values) < 6 * 4 for t in pruned)  # stopped early

    console = result.stdout + result.stderr
    launches = [line for line in console.splitlines() if re.search(r"#\d+ : ", line)]
    assert len(launches) == 8 and not [line for line in launches if "trial=" in line or "TrialReporter" in line]
    assert "TrialReporter" not in console
    assert re.search(r"\[8/8\] trial \d+ .* best \S+ \(trial \d+\)", console)  # progress: done/n_trials, best

    directory = sweep_dir(tmp_path)
    results = yaml.safe_load((directory / "optimization_results.yaml").read_text())
    assert results["name"] == "optuna"
    assert results["best_value"] == pytest.approx(study.best_value)
    assert results["best_params"] == study.best_params

    ranked = pd.read_csv(directory / "trials.csv")
    assert list(ranked["rank"]) == list(range(1, 9))
    assert ranked["value"].iloc[0] == pytest.approx(study.best_value)
    assert ranked["state"].iloc[0] == "COMPLETE"

    assert [Path(t.user_attrs["run_dirs"][0]).name for t in trials] == [f"trial-{n}" for n in range(8)]
    for run_dir in [Path(d) for t in trials for d in t.user_attrs["run_dirs"]]:
        overrides = (run_dir / ".hydra" / "overrides.yaml").read_text()
        assert "sqlite" not in overrides and "logger.group=lorasweep" in overrides

    best = (directory / "best_overrides.txt").read_text().splitlines()
    rerun = subprocess.run([sys.executable, str(APP), *best], cwd=tmp_path, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"x={study.best_params['x']}" in best


@pytest.mark.slow
def test_a_multi_objective_study_writes_its_pareto_front(tmp_path):
    sweep(tmp_path, "x=interval(0.0, 1.0)", "y=range(0, 3)", "two_objectives=true", "hydra.sweeper.n_trials=4",
          "hydra.sweeper.direction=[minimize,maximize]", "hydra/sweeper/lorasweep_sampler=nsgaii")
    study = load(tmp_path)
    assert all(t.state == TrialState.COMPLETE and len(t.values) == 2 for t in study.get_trials())
    results = yaml.safe_load((sweep_dir(tmp_path) / "optimization_results.yaml").read_text())
    assert sorted(s["values"] for s in results["solutions"]) == sorted(t.values for t in study.best_trials)


@pytest.mark.slow
def test_ablation_trials_run_first_each_on_top_of_the_baseline(tmp_path):
    sweep(tmp_path, "x=interval(0.0, 1.0)", "shape=bowl,ridge", "hydra.sweeper.n_trials=5",
          "++hydra.sweeper.ablations={move_x:{x:0.9},other_shape:{shape:ridge},no_change:{shape:bowl}}",
          "hydra.sweeper.pruner.n_startup_trials=1")
    trials = load(tmp_path).get_trials()
    # worse than the baseline at every step, yet not pruned: the ablation is the measurement
    assert all(t.state == TrialState.COMPLETE and len(t.intermediate_values) == 6 for t in trials[:3])
    assert [t.user_attrs.get("ablation") for t in trials] == ["baseline", "move_x", "other_shape", None, None]
    assert [t.params for t in trials[:3]] == [{}, {"x": 0.9}, {"shape": "ridge"}]
    assert trials[0].value == pytest.approx((0.0 - 0.3) ** 2)  # the base config: x=0, shape=bowl, y=0
    assert set(trials[3].params) == {"x", "shape"}


@pytest.mark.slow
def test_a_kill_while_the_ablation_is_queued_then_a_resume_queues_each_remedy_once(tmp_path):
    ablations = "++hydra.sweeper.ablations={move_x:{x:0.9},other_shape:{shape:ridge},far_x:{x:0.1}}"
    (tmp_path / "sweeps").mkdir()
    study = optuna.create_study(study_name="lorasweep", storage=open_storage(f"sqlite:///{tmp_path}/sweeps/lorasweep.db"))
    # what a process killed after its second enqueue_trial leaves behind
    study.enqueue_trial(params={}, user_attrs={"ablation": "baseline"})
    study.enqueue_trial(params={"x": 0.9}, user_attrs={"ablation": "move_x"})
    sweep(tmp_path, "x=interval(0.0, 1.0)", "shape=bowl,ridge", "hydra.sweeper.n_trials=6", ablations)
    names = [t.user_attrs.get("ablation") for t in load(tmp_path).get_trials()]
    assert names == ["baseline", "move_x", "other_shape", "far_x", None, None]


def trained_overrides(study: optuna.Study) -> list[list[str]]:
    """The overrides of every trial that trained (not a copy of a finished twin)."""
    return [t.user_attrs["overrides"] for t in study.get_trials() if "copy_of" not in t.user_attrs
            and t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


@pytest.mark.slow
def test_a_proposal_equal_to_a_finished_trial_takes_its_result_instead_of_training(tmp_path):
    sweep(tmp_path, "x=choice(0.1, 0.2)", "hydra/sweeper/lorasweep_sampler=random", "hydra.sweeper.seed=1",
          "hydra.sweeper.n_trials=5", "hydra.sweeper.pruner.n_startup_trials=10")
    trials = load(tmp_path).get_trials()
    trained = trained_overrides(load(tmp_path))
    assert len(trials) == 5 and len(trained) == len({tuple(o) for o in trained}) <= 2
    copies = [t for t in trials if "copy_of" in t.user_attrs]
    assert copies and all(t.value == trials[t.user_attrs["copy_of"]].value for t in copies)


@pytest.mark.slow
def test_a_seeded_study_trains_no_parameter_set_twice_over_resumes_and_concurrent_processes(tmp_path):
    common = ["x=interval(0.0, 1.0)", "shape=bowl,ridge", "hydra.sweeper.seed=0", "hydra/sweeper/lorasweep_pruner=none"]
    for n_trials in (2, 4, 6, 8, 10):  # the first run, then 4 resumes, each a new process
        sweep(tmp_path, *common, f"hydra.sweeper.n_trials={n_trials}")
    processes = [sweep(tmp_path, *common, "hydra.sweeper.n_trials=14", "sleep_s=0.05", wait=False) for _ in range(2)]
    for process in processes:
        assert process.wait(timeout=300) == 0, process.stdout.read()
    study = load(tmp_path)
    trained = trained_overrides(study)
    assert len(counted(study)) == 14
    assert len(trained) == len({tuple(o) for o in trained}) == 14  # distinct streams: not even a copy


@pytest.mark.slow
def test_a_nan_trial_fails_with_its_reason_and_the_sweep_goes_on(tmp_path):
    sweep(tmp_path, "x=interval(0.0, 0.5)", "nan_above=0.8", "hydra.sweeper.n_trials=4",
          "++hydra.sweeper.ablations={diverge:{x:0.9}}")
    trials = load(tmp_path).get_trials()
    assert len(trials) == 4
    assert trials[1].state == TrialState.FAIL and "loss is nan" in trials[1].user_attrs["reason"]
    assert all(t.state == TrialState.COMPLETE for t in trials[2:])


@pytest.mark.slow
def test_a_job_that_dies_before_result_json_fails_with_its_exception(tmp_path):
    sweep(tmp_path, "crash=choice(false, true)", "hydra/sweeper/lorasweep_sampler=grid", "hydra.sweeper.n_trials=2",
          "hydra.sweeper.max_failure_rate=0.5")
    by_crash = {t.params["crash"]: t for t in load(tmp_path).get_trials()}
    assert by_crash[False].state == TrialState.COMPLETE
    assert by_crash[True].state == TrialState.FAIL
    assert by_crash[True].user_attrs["reason"] == "RuntimeError: crashed before writing result.json"


@pytest.mark.slow
def test_too_many_failures_stop_the_sweep_with_a_clear_message(tmp_path):
    result = sweep(tmp_path, "x=interval(0.0, 1.0)", "nan_above=-1", "hydra.sweeper.n_trials=8",
                   "hydra.sweeper.max_failure_rate=0.25", check=False)
    assert result.returncode != 0
    assert "3 of n_trials=8 trials failed, more than max_failure_rate=0.25" in result.stderr
    assert len(load(tmp_path).get_trials()) == 3
    assert (sweep_dir(tmp_path) / "trials.csv").is_file()


@pytest.mark.slow
def test_an_error_after_a_trial_started_leaves_it_failed_with_the_reason_not_running(tmp_path):
    (tmp_path / "breaks.py").write_text(
        "def space(cfg, trial):\n"
        "    if trial.number == 1:\n"
        "        raise RuntimeError('the extender broke')\n"
    )
    result = sweep(tmp_path, X, "hydra.sweeper.n_trials=3", "hydra.sweeper.custom_search_space=breaks.space",
                   check=False, extra_env={"PYTHONPATH": f"{ROOT}:{tmp_path}"})
    assert result.returncode == 1 and "the extender broke" in result.stderr
    trials = load(tmp_path).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]
    assert trials[1].user_attrs["reason"] == (
        "the sweep stopped on RuntimeError: the extender broke; its parameters were queued again")


@pytest.mark.slow
def test_a_study_is_bound_to_its_data_and_a_sweep_on_other_data_is_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset_info.json").write_text(json.dumps({"a": {"file_name": "a.json"}, "b": {"file_name": "b.json"}}))
    (data / "a.json").write_text('[{"instruction": "1", "output": "2"}]')
    (data / "b.json").write_text('[{"instruction": "3", "output": "4"}]')
    common = (X, "hydra.sweeper.n_trials=1", f"+task.dataset_dir={data}", "+task.data_seed=0")
    sweep(tmp_path, *common, "+task.dataset=[a]")

    other = sweep(tmp_path, *common, "+task.dataset=[b]", check=False)
    assert other.returncode == 2 and len(other.stderr.strip().splitlines()) == 1, other.stderr
    assert (f"study 'lorasweep' in sqlite:///{tmp_path}/sweeps/lorasweep.db was made for other data than this sweep "
            "composes: task.dataset is ['a'] in the study, ['b'] now. Start a study for this data "
            "(hydra.sweeper.study_name=lorasweep-") in other.stderr
    (data / "a.json").write_text('[{"instruction": "1", "output": "changed"}]')
    edited = sweep(tmp_path, *common, "+task.dataset=[a]", check=False)
    assert edited.returncode == 2 and "dataset 'a' changed (its dataset_info.json entry or files: " in edited.stderr
    assert len(load(tmp_path).get_trials()) == 1  # refused before any trial

    name = re.search(r"study_name=(\S+)\)", other.stderr).group(1)
    sweep(tmp_path, *common, "+task.dataset=[b]", f"hydra.sweeper.study_name={name}")  # the fix it names
    assert [t.state for t in load(tmp_path, name).get_trials()] == [TrialState.COMPLETE]
    assert load(tmp_path, name).user_attrs["data"]["task"]["dataset"] == ["b"]


def test_train_configs_on_other_data_compose_other_data_and_the_same_data_the_same():
    from conftest import compose_train
    from sweeper.data_binding import composed_data, differences

    demo = composed_data(compose_train(["experiment=quickstart"]))
    assert composed_data(compose_train(["experiment=quickstart", "optimizer.lr=1e-3"])) == demo
    cate = composed_data(compose_train(["experiment=quickstart", "task.dataset=[demo_cate]"]))
    assert differences(demo, cate) == ["task.dataset is ['demo_yiliao'] in the study, ['demo_cate'] now"]
    assert set(demo["contents"]) == {"demo_yiliao"} and demo["tokenizer"] == "builtin:tiny-qwen2"


@pytest.mark.slow
def test_repeats_run_each_parameter_set_with_several_seeds(tmp_path):
    sweep(tmp_path, "x=interval(0.0, 1.0)", "hydra.sweeper.n_trials=2", "hydra.sweeper.repeats=2",
          "hydra.sweeper.seed_key=seed")
    for trial in load(tmp_path).get_trials():
        assert len(trial.user_attrs["run_dirs"]) == 2 and len(trial.user_attrs["values_per_seed"]) == 2
        seeds = [yaml.safe_load((Path(d) / ".hydra" / "config.yaml").read_text())["seed"]
                 for d in trial.user_attrs["run_dirs"]]
        assert seeds == [0, 1]
        assert trial.value == pytest.approx(sum(trial.user_attrs["values_per_seed"]) / 2)


# --- resume and cooperation ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "journal"])
def test_an_ownerless_trial_and_one_of_a_dead_process_on_another_host_are_reclaimed(tmp_path, backend):
    storage = f"sqlite:///{tmp_path}/study.db" if backend == "sqlite" else f"journal:{tmp_path}/study.log"
    study = optuna.create_study(study_name="lorasweep", storage=open_storage(storage))
    study.ask({"x": FloatDistribution(0.0, 1.0)})  # killed between ask and recording its owner
    elsewhere = study.ask({"x": FloatDistribution(0.0, 1.0)})
    elsewhere.set_user_attr("process", "another-host:4242")
    study._storage.set_trial_system_attr(elsewhere._trial_id, "lease_renewed_at", time.time() - 60)
    time.sleep(1.5)
    sweep(tmp_path, "x=interval(0.0, 1.0)", "hydra.sweeper.n_trials=3", "hydra.sweeper.lease_grace_s=1", storage=storage)
    trials = load(tmp_path, storage=storage).get_trials()
    assert [t.state for t in trials[:2]] == [TrialState.FAIL, TrialState.FAIL]
    assert "lease (owner none)" in trials[0].user_attrs["reason"]
    assert "another-host:4242" in trials[1].user_attrs["reason"]
    assert sum(t.state == TrialState.COMPLETE for t in counted(load(tmp_path, storage=storage))) == 3


def kill_during_a_trial(tmp_path: Path, process: subprocess.Popen, min_number: int = 0) -> optuna.trial.FrozenTrial:
    """SIGKILLs the sweep `process` once a trial numbered >= min_number has reported; returns that trial."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        time.sleep(0.3)
        if not (tmp_path / "sweeps" / "lorasweep.db").exists():
            continue
        try:
            running = [t for t in load(tmp_path).get_trials() if t.state == TrialState.RUNNING and t.number >= min_number]
        except (KeyError, optuna.exceptions.StorageInternalError):
            continue  # the study is being created
        if running and running[0].intermediate_values:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
            return running[0]
    raise AssertionError(f"the sweep never reached trial {min_number}")


@pytest.mark.slow
def test_sigkill_during_a_trial_then_the_same_command_finishes_the_study(tmp_path):
    command = ("x=interval(0.0, 1.0)", "hydra.sweeper.n_trials=4", "sleep_s=0.25", "hydra/sweeper/lorasweep_pruner=none")
    killed_number = kill_during_a_trial(tmp_path, sweep(tmp_path, *command, wait=False), min_number=1).number

    sweep(tmp_path, *command)
    study = load(tmp_path)
    budget = counted(study)
    assert len(budget) == 4 and all(t.state == TrialState.COMPLETE for t in budget)
    killed = study.trials[killed_number]
    assert killed.state == TrialState.FAIL and "stopped" in killed.user_attrs["reason"]
    rerun = [t for t in budget if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed_number]
    assert len(rerun) == 1 and rerun[0].params == killed.params
    completed_params = [t.params["x"] for t in budget]
    assert len(set(completed_params)) == 4  # nothing completed twice


@pytest.mark.slow
def test_kills_of_first_runs_reruns_and_reruns_of_reruns_still_end_with_exactly_n_trials_finished(tmp_path):
    command = ("x=interval(0.0, 1.0)", "hydra.sweeper.n_trials=3", "sleep_s=0.25", "hydra/sweeper/lorasweep_pruner=none")
    # a first run (0), its re-run (1), the re-run's re-run (2), then a first run of the sampler's (4)
    killed = [kill_during_a_trial(tmp_path, sweep(tmp_path, *command, wait=False), min_number=n).number
              for n in (0, 1, 2, 4)]
    assert killed == [0, 1, 2, 4]
    result = sweep(tmp_path, *command)
    assert "3 of 3 trials done" not in result.stderr  # the resume found 1 done, not a miscount
    trials = load(tmp_path).get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3 and finished == counted(load(tmp_path))
    assert [t.number for t in trials if t.state == TrialState.FAIL] == killed
    assert RetryHeartbeatStaleTrialCallback.retry_history(trials[3]) == [0, 1, 2]
    assert trials[3].params == trials[0].params and trials[3].state == TrialState.COMPLETE


def test_a_chain_of_reruns_counts_once_and_a_scheduler_ended_rerun_is_queued_once():
    study = optuna.create_study()
    study.ask({"x": FloatDistribution(0.0, 1.0)})
    abandon(study, study.get_trials()[0], "its sweep process stopped")
    abandon(study, study.get_trials()[study.ask().number], "its sweep process stopped")
    rerun = study.ask()
    rerun.set_user_attr("ended_by_scheduler", True)
    study.tell(rerun, state=TrialState.FAIL)
    assert [t.number for t in budget_trials(study)] == [2]  # a finished FAIL: it counts until requeued
    for _ in range(2):  # two later sweep commands: one re-run only
        requeue_trials_ended_by_scheduler(study)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * 3 + [TrialState.WAITING]
    assert [RetryHeartbeatStaleTrialCallback.retry_history(t) for t in trials] == [[], [0], [0, 1], [0, 1, 2]]
    assert [t.number for t in budget_trials(study)] == [3]
    assert trials[3].params == trials[0].params


SUBMITIT_LOCAL = ("hydra/launcher=submitit_local",
                  "hydra.launcher._target_=hydra_plugins.lorasweep.submitit_launchers.PerJobLocalLauncher")


def wait_for(condition, what: str, timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (KeyError, ValueError, optuna.exceptions.StorageInternalError):
            pass  # the study is being created
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_ctrl_c_leaves_submitit_jobs_running_and_the_same_command_adopts_the_finished_one(tmp_path):
    """Ctrl-C on the driver: its jobs run on (as SLURM jobs would). The same command adopts the trial
    whose job finished and runs the other again; that one's job, still running, finds its trial ended
    at its next report and records why in result.json."""
    hold = tmp_path / "hold"
    hold.write_text("")
    command = ("x=choice(0.2, 0.8)", "hydra/sweeper/lorasweep_sampler=grid", "hydra.sweeper.n_trials=2",
               "hydra.sweeper.n_jobs=2", "steps=3", "sleep_s=0.2", "hold_above=0.5", f"hold_file={hold}", *SUBMITIT_LOCAL)
    try:  # a failure here must not leave the held job waiting forever
        args, env = sweep_command(tmp_path, *command)
        log = tmp_path / "driver.log"  # not a pipe: the jobs inherit the driver's output and outlive it
        with open(log, "w") as out:
            driver = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: len(trials := load(tmp_path).get_trials()) == 2
                 and all(t.state == TrialState.RUNNING and t.intermediate_values for t in trials), "both trials to report")
        os.kill(driver.pid, signal.SIGINT)  # the driver only: its jobs are not in the terminal's foreground
        assert driver.wait(timeout=120) == 130
        output = log.read_text()
        assert "Interrupted: the jobs of trial(s) 0, 1 go on running" in output, output[-3000:]
        assert all(t.state == TrialState.RUNNING for t in load(tmp_path).get_trials())
        fast, held = sorted(load(tmp_path).get_trials(), key=lambda t: t.params["x"])
        wait_for(lambda: read_status(Path(fast.user_attrs["run_dirs"][0])) == "completed", "the unheld job to finish")

        with open(log, "w") as out:
            again = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: load(tmp_path).trials[held.number].state == TrialState.FAIL, "the held trial to be failed")
        hold.unlink()  # the orphaned job and the re-run go on
        assert again.wait(timeout=300) == 0, log.read_text()[-3000:]
        trials = load(tmp_path).get_trials()
        assert trials[fast.number].state == TrialState.COMPLETE  # adopted from its run dir, not trained again
        assert trials[fast.number].value == pytest.approx((0.2 - 0.3) ** 2)
        (rerun,) = trials[2:]
        assert rerun.state == TrialState.COMPLETE and RetryHeartbeatStaleTrialCallback.retry_history(rerun) == [held.number]
        orphan_dir = Path(held.user_attrs["run_dirs"][0])
        wait_for(lambda: read_status(orphan_dir) == "failed", "the orphaned job to record its end")
        reason = json.loads((orphan_dir / "result.json").read_text())["reason"]
        assert reason.startswith(f"trial {held.number} was ended (FAIL) while this job ran: its sweep process ")
        assert reason.endswith("its parameters were queued again; this run stopped")
    finally:
        hold.unlink(missing_ok=True)


def test_a_run_whose_trial_was_ended_under_it_records_failed_with_the_reason(tmp_path, monkeypatch):
    from sft.lifecycle.ending import ending_recorded
    from sweeper.reporter import TrialReporter

    storage = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(study_name="ended", storage=open_storage(storage))
    trial = study.ask({"x": FloatDistribution(0.0, 1.0)})
    monkeypatch.setenv("LORASWEEP_STORAGE", storage)
    reporters = [TrialReporter("ended", trial._trial_id, report_values=first) for first in (True, False)]
    reporters[0].report(1.0, 4)
    abandon(study, study.get_trials()[0], "its sweep process host:1 stopped; its parameters were queued again")
    for reporter in reporters:  # the seed that reports and a repeat that does not
        with pytest.raises(TrialEnded), ending_recorded(tmp_path, "smoothed_loss"):
            reporter.report(0.9, 8)
        result = json.loads((tmp_path / "result.json").read_text())
        assert result["status"] == "failed"
        assert result["reason"] == ("trial 0 was ended (FAIL) while this job ran: its sweep process host:1 stopped; "
                                    "its parameters were queued again; this run stopped")
        (tmp_path / "result.json").unlink()


def test_a_racing_study_killed_during_a_trial_races_on_within_each_stream(tmp_path):
    """Trials on streams a and b race only within their own stream; after a SIGKILL and the same command,
    each stopped trial was decided once, by itself, against a trial of its own stream."""
    command = ("x=interval(0.0, 1.0)", "stream=choice(a, b)", "hydra.sweeper.n_trials=8", "hydra.sweeper.seed=3",
               "hydra/sweeper/lorasweep_sampler=random", "hydra/sweeper/lorasweep_pruner=racing", "sleep_s=0.1")
    kill_during_a_trial(tmp_path, sweep(tmp_path, *command, wait=False), min_number=3)
    sweep(tmp_path, *command)
    study = load(tmp_path)
    budget = counted(study)
    assert len(budget) == 8 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in budget)
    stopped = [t for t in budget if t.state == TrialState.PRUNED]
    assert stopped, "a clearly worse trial of a stream with a leader is stopped"
    for trial in stopped:
        race = trial.user_attrs[attrs.RACE]
        reference = study.trials[race["reference"]]
        assert race["trial"] == trial.number and reference.params["stream"] == trial.params["stream"]
        assert race["worse_by"] > race["bound"] and max(trial.intermediate_values) == race["stopped_at"] < 6 * 4
    firsts = {stream: min(t.number for t in budget if t.params["stream"] == stream) for stream in ("a", "b")}
    assert all(study.trials[number].state == TrialState.COMPLETE for number in firsts.values())  # no one to race yet


@pytest.mark.slow
def test_a_trial_that_finished_while_its_sweep_process_was_gone_is_adopted_not_retrained(tmp_path):
    """A SLURM job outlives its driver: it writes result.json `completed` after the driver died. The
    same command tells its trial COMPLETE with that value instead of training it again."""
    command = ("x=interval(0.0, 1.0)", "hydra.sweeper.n_trials=3", "sleep_s=0.25", "hydra/sweeper/lorasweep_pruner=none")
    orphan = kill_during_a_trial(tmp_path, sweep(tmp_path, *command, wait=False))
    (run_dir,) = orphan.user_attrs["run_dirs"]
    Path(run_dir, "result.json").write_text('{"status": "completed", "objective": 0.123, "reason": null}')

    sweep(tmp_path, *command)
    study = load(tmp_path)
    adopted = study.trials[orphan.number]
    assert adopted.state == TrialState.COMPLETE and adopted.value == pytest.approx(0.123)
    assert len(study.trials) == 3 and all(t.state == TrialState.COMPLETE for t in study.trials)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "journal", pytest.param("postgresql", marks=pytest.mark.cluster)])
def test_two_sweep_processes_on_one_storage_run_exactly_n_trials(tmp_path, backend, request):
    """The lock that keeps the total exact lives with the storage (a file beside it, or a PostgreSQL
    advisory lock), so it holds for processes on any machine."""
    storages = {"sqlite": f"sqlite:///{tmp_path}/shared.db", "journal": f"journal:{tmp_path}/shared.log"}
    storage = storages.get(backend) or request.getfixturevalue("postgres_url")
    name = f"shared-{uuid.uuid4().hex[:8]}"  # a PostgreSQL database outlives the test
    command = ("x=interval(0.0, 1.0)", "hydra.sweeper.n_trials=7", "sleep_s=0.5", f"hydra.sweeper.study_name={name}",
               "hydra/sweeper/lorasweep_pruner=none")
    processes = []
    for host in ("host-a", "host-b"):  # a temp dir each, as on two machines: no lock may live there
        (tmp_path / host).mkdir()
        processes.append(sweep(tmp_path, *command, storage=storage, wait=False, extra_env={"TMPDIR": str(tmp_path / host)}))
    for process in processes:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output[-3000:]
    trials = load(tmp_path, name, storage).get_trials()
    assert len(trials) == 7
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == list(range(7))
    assert len({t.user_attrs["process"] for t in trials}) == 2  # both processes did some of the work


@pytest.mark.slow
def test_a_terminal_gets_a_sweep_progress_bar_and_a_pipe_plain_lines(tmp_path):
    overrides = ("x=interval(0.0, 1.0)", "hydra.sweeper.n_trials=2", "hydra/sweeper/lorasweep_pruner=none")
    piped = sweep(tmp_path, *overrides)
    assert re.search(r"\[2/2\] trial 1 COMPLETE", piped.stdout) and "━" not in piped.stdout

    command, env = sweep_command(tmp_path, *overrides, "hydra.sweeper.n_trials=3")
    for forcing in ("FORCE_COLOR", "TTY_COMPATIBLE"):  # rich's overrides of its own terminal detection
        env.pop(forcing, None)
    terminal, secondary = os.openpty()
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=secondary,
                               stderr=secondary, start_new_session=True)
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(terminal, 65536)
        except OSError:  # EIO: the sweep closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(terminal)
    assert process.wait(timeout=300) == 0, output.decode(errors="replace")[-3000:]
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode(errors="replace"))
    assert "━" in text and re.search(r"3/3 trials, best [0-9.e+-]+ \(trial \d\)", text)


# --- launchers and devices ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_joblib_trials_run_in_worker_processes_each_on_its_own_gpu(tmp_path):
    sweep(tmp_path, "x=interval(0.3, 2.0)", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2",
          "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.gpus=[0,1]",
          "hydra.sweeper.pruner.n_startup_trials=1")
    trials = load(tmp_path).get_trials()
    assert all(t.intermediate_values for t in trials)  # the workers reached their trials through the storage
    devices = []
    for trial in trials:
        (run_dir,) = trial.user_attrs["run_dirs"]
        devices.append(yaml.safe_load((Path(run_dir) / ".hydra" / "config.yaml").read_text())["cuda_visible_devices"])
    assert sorted(devices) == ["0", "0", "1", "1"]


def test_more_concurrent_trials_than_gpus_is_refused_before_any_trial():
    with pytest.raises(ValueError, match=r"1 trial\(s\) per GPU"):
        plan_devices("hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", ["0", "1"], 3)
    assert plan_devices("hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", ["0", "1"], 2) == ["0", "1"]
    assert plan_devices("hydra._internal.core_plugins.basic_launcher.BasicLauncher", ["0", "1"], 3) is None


@pytest.mark.slow
def test_submitit_local_jobs_are_pruned_through_the_storage(tmp_path):
    """Through our submitit launcher (each job waited for on its own), which warns of submitit's timeout rule."""
    result = sweep(tmp_path, "x=interval(0.0, 1.0)", "hydra.sweeper.n_trials=3", "hydra/launcher=submitit_local",
                   "hydra.launcher._target_=hydra_plugins.lorasweep.submitit_launchers.PerJobLocalLauncher",
                   "hydra.launcher.timeout_min=5", "++hydra.sweeper.ablations={good:{x:0.3},bad:{x:2.0}}",
                   "hydra.sweeper.pruner.n_startup_trials=2", "hydra.sweeper.prune_ablations=true")
    assert "hydra.launcher.timeout_min=5: with timeout_min <= 10 submitit counts every stop signal" in result.stdout + result.stderr
    baseline, good, bad = load(tmp_path).get_trials()
    assert baseline.state == good.state == TrialState.COMPLETE
    assert bad.state == TrialState.PRUNED and bad.user_attrs["reason"] == "pruned at 4 samples"


def test_launcher_settings_that_submitits_timeout_rule_turns_around_are_warned_of():
    """submitit counts a stop signal as the time limit once a job has run min(0.8 x T, T - 10 min) of it."""
    assert timeout_rule_warnings({"timeout_min": 600, "signal_delay_s": 120}) == []  # the slurm preset
    assert timeout_rule_warnings({"timeout_min": 600, "signal_delay_s": 600}) == []
    assert timeout_rule_warnings({"timeout_min": 60, "signal_delay_s": 700}) == []  # within 0.2 x T = 720 s
    (early,) = timeout_rule_warnings({"timeout_min": 60, "signal_delay_s": 900})
    assert early.startswith("hydra.launcher.signal_delay_s=900 with timeout_min=60: ") and "requeued forever" in early
    (short,) = timeout_rule_warnings({"timeout_min": 10, "signal_delay_s": 120})
    assert short.startswith("hydra.launcher.timeout_min=10: ") and "every stop signal" in short
    assert timeout_rule_warnings({"timeout_min": 11, "signal_delay_s": 120}) == []


@pytest.mark.slow
def test_a_storage_password_is_never_shown_or_written(tmp_path, monkeypatch):
    assert mask_password("postgresql://me:s3cret@db.example:5432/optuna") == "postgresql://me:***@db.example:5432/optuna"
    monkeypatch.setenv("LORASWEEP_STORAGE", "postgresql://me:s3cret@127.0.0.1:9/optuna")
    result = sweep(tmp_path, "x=interval(0.0, 1.0)", check=False)
    assert result.returncode != 0
    assert "postgresql://me:***@127.0.0.1:9/optuna" in result.stderr
    assert "s3cret" not in result.stdout + result.stderr
    assert not [path for path in tmp_path.rglob("*") if path.is_file() and "s3cret" in path.read_text(errors="ignore")]


def test_outputs_are_written_while_every_trial_still_runs(tmp_path):
    """A sweep stopped while its jobs run (a crash, scancel of the driver) still writes its files."""
    from sweeper.outputs import write_outputs

    study = optuna.create_study()
    study.ask()
    study.ask()
    paths = write_outputs(study, str(tmp_path))
    trials = pd.read_csv(paths["trials"])
    assert list(trials["state"]) == ["RUNNING", "RUNNING"] and trials["duration"].isna().all()
    assert yaml.safe_load(paths["results"].read_text())["best_value"] is None
