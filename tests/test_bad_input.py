"""Bad input, as a new user types it: each case exits with code 2 and one line on stderr that names the
key or file and what it takes, and no traceback. Most cases stop before torch is imported (types and
unknown keys while Hydra composes, ranges and cross-field rules of the schema in runs/schema.py, data
files, the sweep's own refusals); the table runs train.py's main in this process, as `python train.py`
runs it, and a few of its cases again as a real process; the end-to-end ones are marked slow."""
from __future__ import annotations

import json
import logging
import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna  # noqa: F401  imported before any run here: its log handler keeps the stderr it first sees
import pytest
from hydra.core.global_hydra import GlobalHydra

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "tests" / "sweeper_app" / "app.py"
TINY = ["model=tiny", "trainer.max_samples_seen=64", "trainer.logging_steps=1"]
SWEEP = ["-m", "hydra/sweeper=lorasweep"]
QUICK_SWEEP = [*SWEEP, "experiment=quickstart"]
LR_SPACE = "optimizer.lr=interval(1e-4, 1e-3)"


def bad_data_dir(tmp_path: Path) -> Path:
    """A LLaMA-Factory data dir with an empty file, a missing one, a row whose output is a number, and two
    .json files holding one object each (pretty-printed, and on one line) instead of a list of rows."""
    directory = tmp_path / "data"
    directory.mkdir()
    row = {"instruction": "q", "input": "", "output": "a"}
    (directory / "empty.jsonl").write_text("")
    (directory / "numbers.jsonl").write_text(json.dumps({**row, "output": 3}) + "\n")
    (directory / "object.json").write_text(json.dumps(row, indent=2))
    (directory / "one_line.json").write_text(json.dumps(row))
    entries = {"empty": {"file_name": "empty.jsonl"}, "gone": {"file_name": "gone.jsonl"},
               "numbers": {"file_name": "numbers.jsonl"}, "object": {"file_name": "object.json"},
               "one_line": {"file_name": "one_line.json"}}
    (directory / "dataset_info.json").write_text(json.dumps(entries))
    return directory


# (arguments to train.py, what the one line must name); {data} is bad_data_dir, {tmp} the test's tmp dir
WRONG_TYPES = [  # refused by Hydra while it composes, against the schema's types
    (["trainer.per_device_batch_size=2.5"], "trainer.per_device_batch_size=2.5 is not allowed: trainer.per_device_batch_size takes an integer >= 1"),
    (["lora.rank=4.5"], "lora.rank=4.5 is not allowed: lora.rank takes an integer >= 1"),
    (["task.cutoff_len=100.7"], "task.cutoff_len=100.7 is not allowed: task.cutoff_len takes an integer >= 1"),
    (["trainer.gradient_accumulation_steps=1.5"], "trainer.gradient_accumulation_steps takes an integer >= 1"),
    (["trainer.max_steps=10.5"], "trainer.max_steps takes an integer >= -1"),
    (["trainer.max_samples_seen=100.5"], "trainer.max_samples_seen takes an integer >= 0"),
    (["trainer.logging_steps=2.5"], "trainer.logging_steps takes an integer >= 1"),
    (["trainer.save_steps=abc"], "trainer.save_steps='abc' is not allowed"),
    (["trainer.eval_steps=1.5"], "trainer.eval_steps takes an integer >= 1, or null"),
    (["trainer.seed=1.5"], "trainer.seed takes an integer >= 0"),
    (["trainer.report_every=0.5"], "trainer.report_every takes an integer >= 1"),
    (["trainer.save_total_limit=2.5"], "trainer.save_total_limit takes an integer >= 1, or null"),
    (["trainer.epochs=abc"], "trainer.epochs takes a number >= 0"),
    (["trainer.shuffle=maybe"], "trainer.shuffle takes true or false"),
    (["trainer.packing=abc"], "trainer.packing takes true or false"),
    (["task.data_seed=0.5"], "task.data_seed takes an integer >= 0"),
    (["task.data_seed=null"], "task.data_seed=null is not allowed"),
    (["task.max_samples=10.5"], "task.max_samples takes an integer >= 1, or null"),
    (["optimizer.lr=abc"], "optimizer.lr='abc' is not allowed: optimizer.lr takes a number > 0"),
    (["optimizer.lr=[1,2]"], "optimizer.lr=[1, 2] is not allowed: optimizer.lr takes a number > 0"),
    (["optimizer.lr=null"], "optimizer.lr=null is not allowed"),
    (["optimizer.weight_decay=abc"], "optimizer.weight_decay takes a number >= 0"),
    (["optimizer.betas=0.9"], "optimizer.betas=0.9 is not allowed: optimizer.betas takes a list"),
    (["optimizer.betas=[a,b]"], "optimizer.betas"),
    (["optimizer.allow_any_lr=sure"], "optimizer.allow_any_lr takes true or false"),
    (["scheduler.warmup_steps=5.5"], "scheduler.warmup_steps takes an integer >= 0"),
    (["lora.alpha=16.5"], "lora.alpha takes an integer >= 1"),
    (["lora.dropout=abc"], "lora.dropout takes a number >= 0 and < 1"),
    (["lora.use_dora=maybe"], "lora.use_dora takes true or false"),
    (["model.cpu_threads=1.5"], "model.cpu_threads takes an integer >= 1, or null"),
    (["smoothing.time_constant=abc"], "smoothing.time_constant takes a number > 0, or null"),
]
UNKNOWN_KEYS_AND_OPTIONS = [
    (["trainer.nope=1"], "trainer.nope is not a key of trainer"),
    (["optimizer.learning_rate=1e-4"], "optimizer.learning_rate is not a key of optimizer"),
    (["lora.r=8"], "lora.r is not a key of lora"),
    (["+trainer.nope=1"], "trainer.nope is not a key of trainer"),
    (["nope=1"], "nope"),
    (["scheduler.num_cycles=3"], "scheduler.num_cycles is not a key of scheduler"),
    (["scheduler=exponential"], "scheduler=exponential is not an option of scheduler: choose scheduler=constant_with_warmup | cosine"),
    (["model=nope"], "model=nope is not an option of model"),
    (["task=nope"], "task=nope is not an option of task"),
    (["optimizer=sgd"], "optimizer=sgd is not an option of optimizer: choose optimizer=adamw"),
    (["logger=tensorboard"], "logger=tensorboard is not an option of logger"),
    (["experiment=nope"], "experiment=nope is not an option of experiment"),
]
OUT_OF_RANGE = [  # the schema's ranges and cross-field rules, checked before torch is imported
    (["optimizer.lr=-1e-5"], "optimizer.lr=-1e-05 is not allowed: optimizer.lr takes a number > 0"),
    (["optimizer.lr=0"], "optimizer.lr=0.0 is not allowed"),
    (["optimizer.lr=1e6"], "optimizer.lr=1e+06 is outside the usual range for LoRA fine-tuning: optimizer.lr takes a number >= 1e-07 and <= 0.1 (set optimizer.allow_any_lr=true"),
    (["optimizer.lr=0.5"], "optimizer.allow_any_lr=true"),
    (["optimizer.lr=1e-9"], "optimizer.lr=1e-09 is outside the usual range"),
    (["optimizer.weight_decay=-0.1"], "optimizer.weight_decay=-0.1 is not allowed: optimizer.weight_decay takes a number >= 0"),
    (["optimizer.betas=[0.9]"], "optimizer.betas=[0.9] is not allowed: optimizer.betas takes two numbers >= 0 and < 1"),
    (["optimizer.betas=[0.9,1.0]"], "optimizer.betas takes two numbers >= 0 and < 1"),
    (["optimizer.betas=[-0.1,0.999]"], "optimizer.betas takes two numbers >= 0 and < 1"),
    (["optimizer.eps=0"], "optimizer.eps=0.0 is not allowed: optimizer.eps takes a number > 0"),
    (["optimizer.max_grad_norm=-1"], "optimizer.max_grad_norm takes a number >= 0"),
    (["scheduler.name=exponential"], "scheduler.name takes one of linear | cosine | cosine_with_restarts | constant_with_warmup"),
    (["scheduler.name=cosine_with_restarts"], "choose the group (scheduler=cosine_with_restarts)"),
    (["scheduler.warmup_steps=-5"], "scheduler.warmup_steps=-5 is not allowed: scheduler.warmup_steps takes an integer >= 0"),
    (["scheduler.warmup_ratio=1.0"], "scheduler.warmup_ratio takes a number >= 0 and < 1, or null"),
    (["scheduler.warmup_ratio=-0.1"], "scheduler.warmup_ratio=-0.1 is not allowed"),
    (["scheduler=cosine_with_restarts", "scheduler.num_cycles=0"], "scheduler.num_cycles takes an integer >= 1"),
    (["trainer.per_device_batch_size=0"], "trainer.per_device_batch_size=0 is not allowed: trainer.per_device_batch_size takes an integer >= 1"),
    (["trainer.per_device_batch_size=-4"], "trainer.per_device_batch_size=-4 is not allowed"),
    (["trainer.gradient_accumulation_steps=0"], "trainer.gradient_accumulation_steps takes an integer >= 1"),
    (["trainer.epochs=0", "trainer.max_steps=0", "trainer.max_samples_seen=0"], "no training budget: trainer.epochs"),
    (["trainer.epochs=-1"], "trainer.epochs=-1.0 is not allowed: trainer.epochs takes a number >= 0"),
    (["trainer.max_steps=-5"], "trainer.max_steps=-5 is not allowed: trainer.max_steps takes an integer >= -1"),
    (["trainer.max_samples_seen=-10"], "trainer.max_samples_seen=-10 is not allowed: trainer.max_samples_seen takes an integer >= 0"),
    (["trainer.logging_steps=0"], "trainer.logging_steps=0 is not allowed"),
    (["trainer.save_steps=0"], "trainer.save_steps=0 is not allowed"),
    (["trainer.eval_steps=0"], "trainer.eval_steps=0 is not allowed: trainer.eval_steps takes an integer >= 1, or null (= trainer.logging_steps)"),
    (["trainer.eval_batch_size=0"], "trainer.eval_batch_size takes an integer >= 1, or null (= trainer.per_device_batch_size)"),
    (["trainer.save_total_limit=0"], "trainer.save_total_limit=0 is not allowed"),
    (["trainer.seed=-1"], "trainer.seed=-1 is not allowed: trainer.seed takes an integer >= 0 and < 4294967296"),
    (["trainer.report_every=0"], "trainer.report_every=0 is not allowed"),
    (["trainer.dataloader_num_workers=-1"], "trainer.dataloader_num_workers takes an integer >= 0"),
    (["trainer.merge_micro_batches=always"], "trainer.merge_micro_batches takes one of auto | true | false"),
    (["trainer.precision=fp8"], "trainer.precision takes one of auto | bf16 | fp16 | fp32"),
    (["trainer.resume=5"], "trainer.resume=5 is not allowed: trainer.resume takes true, false, or the path"),
    (["task.cutoff_len=0"], "task.cutoff_len=0 is not allowed"),
    (["task.max_samples=0"], "task.max_samples=0 is not allowed"),
    (["task.val_size=1.5"], "task.val_size=1.5 is not allowed: task.val_size takes a fraction in [0, 1) or a whole row count >= 1"),
    (["task.val_size=-0.1"], "task.val_size=-0.1 is not allowed"),
    (["task.data_seed=-1"], "task.data_seed=-1 is not allowed"),
    (["task.formatting=csv"], "task.formatting takes one of alpaca | sharegpt, or null"),
    (["task.metric=bleu"], "task.metric takes one of label | triples | text, or null"),
    (["model.cpu_threads=0"], "model.cpu_threads=0 is not allowed: model.cpu_threads takes an integer >= 1, or null"),
    (["model.dtype=int8"], "model.dtype takes one of auto | bfloat16 | float16 | float32"),
    (["model.attn_implementation=magic"], "model.attn_implementation takes one of auto | sdpa"),
    (["objective=best_loss"], "objective takes one of smoothed_loss | eval_loss | final_loss"),
    (["objective=eval_loss"], "objective=eval_loss needs an eval split: set task.val_size"),
    (["smoothing.unit=steps"], "smoothing.unit takes one of samples | tokens"),
    (["smoothing.time_constant=0"], "smoothing.time_constant=0.0 is not allowed"),
    (["lora.rank=0"], "lora.rank=0 is not allowed: lora.rank takes an integer >= 1"),
    (["lora.rank=-8"], "lora.rank=-8 is not allowed"),
    (["lora.alpha=0"], "lora.alpha=0 is not allowed"),
    (["lora.dropout=1.0"], "lora.dropout=1.0 is not allowed: lora.dropout takes a number >= 0 and < 1"),
    (["lora.dropout=-0.1"], "lora.dropout=-0.1 is not allowed"),
    (["lora.target=[]"], "lora.target=[] is not allowed: lora.target takes all"),
    (["model=tiny", "lora.rank=100000"], "lora.rank=100000 is larger than the hidden size of builtin:tiny-qwen2 (64)"),
    (["model=tiny", "lora.rank=65"], "lora.rank takes an integer >= 1 and <= 64 for this model"),
    (["logger=wandb", "logger.mode=sometimes"], "logger.mode takes one of auto | online | offline | disabled"),
    (["trainer.max_samples_seen=4", "trainer.logging_steps=10"], "shorter than one logging interval"),
]
DATA = [
    (["task.dataset=[]"], "task.dataset"),
    (["task.dataset=[nope]"], "dataset_info.json"),
    (["task=yiliao"], "LLAMAFACTORY_DATA_DIR"),
    (["task.dataset_dir={tmp}/nowhere"], "task.dataset_dir"),
    (["task.dataset_dir={data}", "task.dataset=[empty]"], "empty.jsonl"),
    (["task.dataset_dir={data}", "task.dataset=[gone]"], "gone.jsonl"),
    (["task.dataset_dir={data}", "task.dataset=[object]"], "object.json for dataset 'object' holds one JSON object, not a list of rows"),
    (["task.dataset_dir={data}", "task.dataset=[one_line]"], "one_line.json for dataset 'one_line' holds one JSON object"),
    (["hydra.run.dir=/proc/lorasweep-run"], "hydra.run.dir"),
    (["hydra.run.dir={data}/empty.jsonl/run"], "hydra.run.dir"),
    (["-m", "task=yiliao", "optimizer.lr=1e-5,5e-5"], "LLAMAFACTORY_DATA_DIR"),
]
SWEEPS = [  # refused before the study is touched and before any trial runs
    ([*SWEEP, "optimizer.lr=interval(1e-4, 1e-5)"], "optimizer.lr"),
    ([*SWEEP], "hydra.sweeper.params"),
    ([*SWEEP, LR_SPACE, "hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials"),
    ([*SWEEP, LR_SPACE, "hydra.sweeper.repeats=2", "hydra.sweeper.seed_key=run.seed"], "hydra.sweeper.seed_key"),
    ([*SWEEP, LR_SPACE, "+hydra.sweeper.ablations.x={optimizer.eps:1e-6}"], "hydra.sweeper.ablations.x sets optimizer.eps, which is not in the search space"),
    ([*QUICK_SWEEP, "lora.rank=choice(4, 8)", "+hydra.sweeper.ablations.x={lora.rank:16}"], "hydra.sweeper.ablations.x sets lora.rank=16, which is not one of its choices"),
    ([*SWEEP, "nope.lr=interval(1e-5, 1e-4)"], "nope is not a key of the config"),
    ([*SWEEP, LR_SPACE, "hydra.sweeper.storage=foo://bar"], "hydra.sweeper.storage"),
    ([*SWEEP, "optimizer.lr=tag(exp, interval(1e-4, 1e-3))"], "optimizer.lr: unknown tag exp"),
    ([*QUICK_SWEEP, "trainer.per_device_batch_size=choice(0, 8)"], "trainer.per_device_batch_size=0 is not allowed"),
    ([*QUICK_SWEEP, "trainer.per_device_batch_size=choice(2.5, 4)"], "trainer.per_device_batch_size=2.5 is not allowed"),
    ([*QUICK_SWEEP, "optimizer.lr=[1,2]", "trainer.shuffle=choice(true, false)"], "optimizer.lr=[1, 2] is not allowed"),
    ([*QUICK_SWEEP, LR_SPACE, "+hydra.sweeper.ablations.x={optimizer.lr:abc}"],
     "hydra.sweeper.ablations.x sets optimizer.lr='abc', but optimizer.lr is searched as a number"),
    ([*QUICK_SWEEP, "lora.rank=int(interval(4, 8))", "+hydra.sweeper.ablations.none={lora.rank:0}"],
     "hydra.sweeper.ablations.none reaches a setting the schema refuses: lora.rank=0 is not allowed"),
    ([*QUICK_SWEEP, "optimizer.lr=interval(1e-4, 10.0)"], "optimizer.lr=10.0 is outside the usual range"),
    ([*QUICK_SWEEP, "lora.rank=range(0, 16, 4)"], "lora.rank=0 is not allowed"),
    ([*QUICK_SWEEP, "scheduler=choice(linear, exponential)"], "scheduler=exponential is not an option of scheduler"),
    ([*QUICK_SWEEP, "optimizer.lr=tag(log, interval(0, 1e-3))"], "a log range needs low > 0"),
    ([*QUICK_SWEEP, "trainer.max_samples_seen=choice(-10, 320)"], "trainer.max_samples_seen=-10 is not allowed"),
    ([*QUICK_SWEEP, "trainer.eval_steps=choice(0, 5)"], "trainer.eval_steps=0 is not allowed"),
]
CASES = WRONG_TYPES + UNKNOWN_KEYS_AND_OPTIONS + OUT_OF_RANGE + DATA + SWEEPS
BASIC_SWEEPER_GRIDS = [args for args, _ in DATA if args[0] == "-m"]  # Hydra's own sweeper prints the failed job's overrides first


# a wrong type, a value out of range, a data file and a sweep's refusal: the table's cases that also run as a real process
IN_A_PROCESS = [(args, named) for args, named in CASES
                if args in (["trainer.per_device_batch_size=2.5"], ["optimizer.lr=-1e-5"],
                            ["task.dataset_dir={data}", "task.dataset=[empty]"], SWEEP)]


def user_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a user's shell: outputs under tmp_path, none of the variables that change the
    console or the data and storage found."""
    env = {**os.environ, "PROJECT_ROOT": str(tmp_path), "LORASWEEP_CACHE": str(tmp_path / "cache"), "WANDB_MODE": "offline",
           "HF_HUB_OFFLINE": "1"}  # a case that slipped through fails at once instead of retrying the hub
    for name in ("HYDRA_FULL_ERROR", "LLAMAFACTORY_DATA_DIR", "LORASWEEP_STORAGE"):
        env.pop(name, None)
    return env


def run(args: list[str], tmp_path: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=tmp_path, env=user_env(tmp_path),
                          capture_output=True, text=True, timeout=timeout)


def run_here(args: list[str], tmp_path: Path, capfd: pytest.CaptureFixture) -> tuple[int, str, str]:
    """`python train.py ARGS` in this process (train.py as __main__, its console captured at the file
    descriptors): its exit code, stdout and stderr. An exception that escapes train.py escapes here too and
    fails the test, as it would print a traceback in a shell. The environment, Hydra's global state and
    the logging handlers Hydra sets up are put back afterwards."""
    saved_env, saved_argv, saved_cwd = os.environ.copy(), sys.argv, os.getcwd()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    os.environ.clear()
    os.environ.update(user_env(tmp_path))
    sys.argv = [str(ROOT / "train.py"), *args]
    os.chdir(tmp_path)
    capfd.readouterr()
    try:
        runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
        code, exit_message = 0, ""
    except SystemExit as stop:  # sys.exit(str) prints the string and exits 1, as Python does
        code, exit_message = (stop.code or 0, "") if isinstance(stop.code, int | None) else (1, str(stop.code))
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        GlobalHydra.instance().clear()
    out, err = capfd.readouterr()
    return code, out, err + exit_message


def with_paths(args: list[str], tmp_path: Path) -> list[str]:
    data = bad_data_dir(tmp_path)
    return [arg.replace("{data}", str(data)).replace("{tmp}", str(tmp_path)) for arg in args]


def assert_refused_in_one_line(args: list[str], code: int, out: str, err: str, named: str) -> None:
    """Exit code 2, no traceback, and the refusal as the one line on stderr (Hydra's own grid sweeper
    first names the failed job's overrides)."""
    lines = err.strip().splitlines()
    assert code == 2, out + err
    assert "Traceback" not in out + err, out + err
    assert len(lines) == 1 or (args in BASIC_SWEEPER_GRIDS and len(lines) == 2), err
    assert named in lines[-1], err


def test_the_table_holds_every_kind_of_bad_input():
    assert len(CASES) >= 100 and len({tuple(args) for args, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("args", "named"), CASES, ids=[" ".join(args) for args, _ in CASES])
def test_bad_input_is_refused_in_one_clear_line(tmp_path, capfd, args, named):
    args = with_paths(args, tmp_path)
    code, out, err = run_here(args, tmp_path, capfd)
    assert_refused_in_one_line(args, code, out, err, named.replace("{tmp}", str(tmp_path)))
    assert not list(tmp_path.rglob("*.db")), "a refused sweep left a study behind"


@pytest.mark.parametrize(("args", "named"), IN_A_PROCESS, ids=[" ".join(args) for args, _ in IN_A_PROCESS])
def test_bad_input_is_refused_in_one_clear_line_by_a_real_process(tmp_path, args, named):
    args = with_paths(args, tmp_path)
    result = run(args, tmp_path)
    assert_refused_in_one_line(args, result.returncode, result.stdout, result.stderr, named)


def test_an_unexpected_error_says_which_train_log_holds_its_traceback(tmp_path, capfd, monkeypatch):
    """Not bad input: exit code 1, one line on stderr naming the run's train.log, which holds the traceback,
    and result.json failed with the error."""
    import sft.lifecycle.preflight

    def broken(cfg):
        raise RuntimeError("a bug the user cannot fix")

    monkeypatch.setattr(sft.lifecycle.preflight, "check_before_loading", broken)
    run_dir = tmp_path / "run"
    code, out, err = run_here(["model=tiny", f"hydra.run.dir={run_dir}"], tmp_path, capfd)
    assert code == 1 and "Traceback" not in out + err, out + err
    assert err.strip() == (f"the run stopped on an unexpected error, RuntimeError: a bug the user cannot fix; its traceback "
                           f"is in {run_dir / 'train.log'}"), err
    assert "Traceback" in (run_dir / "train.log").read_text() and "a bug the user cannot fix" in (run_dir / "train.log").read_text()
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "failed" and result["reason"].startswith("unexpected error, RuntimeError: a bug the user cannot fix")


def test_hydra_full_error_keeps_the_traceback_for_whoever_debugs(tmp_path):
    env = {**user_env(tmp_path), "HYDRA_FULL_ERROR": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "trainer.per_device_batch_size=2.5"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" in result.stderr and "could not be converted to Integer" in result.stderr


def test_bad_input_is_refused_before_torch_is_imported(tmp_path):
    """The config and data checks stop the run before the heavy imports (which take a minute under load)."""
    probe = ("import runpy, sys; sys.argv = ['train.py', 'optimizer.lr=-1', 'hydra.run.dir=" + str(tmp_path / "r") + "']\n"
             "try:\n    runpy.run_path('train.py', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "print('IMPORTED', sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "IMPORTED []" in result.stdout, result.stdout + result.stderr
    assert json.loads((tmp_path / "r" / "result.json").read_text())["status"] == "failed"


def test_help_says_what_it_is_and_lists_the_groups_and_examples(tmp_path):
    result = run(["--help"], tmp_path)
    assert result.returncode == 0
    assert "lorasweep: LoRA SFT" in result.stdout and "scheduler: constant_with_warmup" in result.stdout
    assert result.stdout.count("python train.py") >= 3


def test_without_the_cluster_extra_hydra_does_not_warn_about_the_launcher_plugin(tmp_path):
    """Hydra imports every hydra_plugins module at start-up; without hydra-submitit-launcher installed
    (hidden here by an import hook) the console stays free of its "Error importing ..." warning."""
    hook = tmp_path / "hide" / "sitecustomize.py"
    hook.parent.mkdir()
    hook.write_text("import sys\n"
                    "class Hide:\n"
                    "    def find_spec(self, name, path=None, target=None):\n"
                    "        if name.startswith('hydra_plugins.hydra_submitit_launcher'):\n"
                    "            raise ModuleNotFoundError(name)\n"
                    "sys.meta_path.insert(0, Hide())\n")
    env = {**os.environ, "PYTHONPATH": str(hook.parent)}
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "experiment=quickstart", "--cfg", "job"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Error importing" not in result.stderr and "objective:" in result.stdout, result.stderr


@pytest.mark.slow
def test_a_tokenizer_larger_than_the_embeddings_is_refused_before_training(tmp_path):
    run_dir = tmp_path / "run"
    result = run([*TINY, "model.tokenizer=builtin:qwen2.5-tokenizer", f"hydra.run.dir={run_dir}"], tmp_path, timeout=900)
    console = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in console, console
    assert "embeddings have" in console and "model.tokenizer" in console
    assert not (run_dir / "metrics.jsonl").exists()


@pytest.mark.slow
@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_leave_result_json_interrupted(tmp_path, sent):
    run_dir = tmp_path / "run"
    env = {**os.environ, "PROJECT_ROOT": str(tmp_path), "LORASWEEP_CACHE": str(tmp_path / "cache")}
    args = ["model=tiny", "trainer.max_samples_seen=100000", "trainer.logging_steps=1", f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 900
    while not (run_dir / "metrics.jsonl").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
    process.send_signal(sent)
    console, _ = process.communicate(timeout=300)
    assert process.returncode == 130 and "Traceback" not in console, console
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "interrupted" and signal.Signals(sent).name in result["reason"] or "Ctrl-C" in result["reason"]
