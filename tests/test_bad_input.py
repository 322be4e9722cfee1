"""Bad input, as a new user types it: each case exits non-zero with one message that names the key or
file, and no traceback on the console. Most cases stop before torch is imported (config values, data
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


def bad_data_dir(tmp_path: Path) -> Path:
    """A LLaMA-Factory data dir with an empty file, a missing one and a row whose output is a number."""
    directory = tmp_path / "data"
    directory.mkdir()
    (directory / "empty.jsonl").write_text("")
    (directory / "numbers.jsonl").write_text(json.dumps({"instruction": "q", "input": "", "output": 3}) + "\n")
    entries = {"empty": {"file_name": "empty.jsonl"}, "gone": {"file_name": "gone.jsonl"},
               "numbers": {"file_name": "numbers.jsonl"}}
    (directory / "dataset_info.json").write_text(json.dumps(entries))
    return directory


# (arguments to train.py, what the message must name); {data} is bad_data_dir, {tmp} the test's tmp dir
CASES = [
    (["optimizer.lr=abc"], "optimizer.lr"),
    (["optimizer.lr=-1e-5"], "optimizer.lr"),
    (["optimizer.lr=0"], "optimizer.lr"),
    (["optimizer.weight_decay=-0.1"], "optimizer.weight_decay"),
    (["optimizer.betas=[0.9]"], "optimizer.betas"),
    (["optimizer.eps=0"], "optimizer.eps"),
    (["optimizer.max_grad_norm=-1"], "optimizer.max_grad_norm"),
    (["scheduler.name=exponential"], "scheduler"),
    (["scheduler.warmup_steps=-5"], "scheduler.warmup_steps"),
    (["trainer.per_device_batch_size=0"], "trainer.per_device_batch_size"),
    (["trainer.gradient_accumulation_steps=0"], "trainer.gradient_accumulation_steps"),
    (["trainer.epochs=0", "trainer.max_steps=0", "trainer.max_samples_seen=0"], "trainer.epochs"),
    (["trainer.epochs=abc"], "trainer.epochs"),
    (["trainer.logging_steps=0"], "trainer.logging_steps"),
    (["trainer.save_steps=0"], "trainer.save_steps"),
    (["trainer.merge_micro_batches=always"], "trainer.merge_micro_batches"),
    (["task.cutoff_len=0"], "task.cutoff_len"),
    (["task.max_samples=0"], "task.max_samples"),
    (["task.val_size=1.5"], "task.val_size"),
    (["model.cpu_threads=0"], "model.cpu_threads"),
    (["task.val_size=-0.1"], "task.val_size"),
    (["objective=best_loss"], "objective"),
    (["objective=eval_loss"], "task.val_size"),
    (["smoothing.unit=steps"], "smoothing.unit"),
    (["smoothing.time_constant=0"], "smoothing.time_constant"),
    (["lora.rank=0"], "lora.rank"),
    (["lora.dropout=1.0"], "lora.dropout"),
    (["task.dataset=[]"], "task.dataset"),
    (["task.dataset=[nope]"], "dataset_info.json"),
    (["task=yiliao"], "LLAMAFACTORY_DATA_DIR"),
    (["task.dataset_dir={tmp}/nowhere"], "task.dataset_dir"),
    (["task.dataset_dir={data}", "task.dataset=[empty]"], "empty.jsonl"),
    (["task.dataset_dir={data}", "task.dataset=[gone]"], "gone.jsonl"),
    (["scheduler=exponential"], "scheduler"),
    (["hydra.run.dir=/proc/lorasweep-run"], "hydra.run.dir"),
    (["hydra.run.dir={data}/empty.jsonl/run"], "hydra.run.dir"),
    (["-m", "task=yiliao", "optimizer.lr=1e-5,5e-5"], "LLAMAFACTORY_DATA_DIR"),
    ([*SWEEP, "optimizer.lr=interval(1e-4, 1e-5)"], "optimizer.lr"),
    ([*SWEEP], "hydra.sweeper.params"),
    ([*SWEEP, "optimizer.lr=interval(1e-5, 1e-4)", "hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials"),
    ([*SWEEP, "optimizer.lr=interval(1e-5, 1e-4)", "hydra.sweeper.repeats=2", "hydra.sweeper.seed_key=run.seed"],
     "hydra.sweeper.seed_key"),
    ([*SWEEP, "optimizer.lr=interval(1e-5, 1e-4)", "+hydra.sweeper.ablations.x={optimizer.eps:1e-6}"],
     "hydra.sweeper.ablations.x"),
    ([*SWEEP, "nope.lr=interval(1e-5, 1e-4)"], "hydra.sweeper.params"),
    ([*SWEEP, "optimizer.lr=interval(1e-5, 1e-4)", "hydra.sweeper.storage=foo://bar"], "hydra.sweeper.storage"),
]


# a config value, a data file and a sweep's refusal: the table's cases that also run as a real process
IN_A_PROCESS = [(args, named) for args, named in CASES
                if args in (["optimizer.lr=abc"], ["task.dataset_dir={data}", "task.dataset=[empty]"], SWEEP)]


def user_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a user's shell: outputs under tmp_path, none of the variables that change the
    console or the data and storage found."""
    env = {**os.environ, "PROJECT_ROOT": str(tmp_path), "LORASWEEP_CACHE": str(tmp_path / "cache"), "WANDB_MODE": "offline"}
    for name in ("HYDRA_FULL_ERROR", "LLAMAFACTORY_DATA_DIR", "LORASWEEP_STORAGE"):
        env.pop(name, None)
    return env


def run(args: list[str], tmp_path: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=tmp_path, env=user_env(tmp_path),
                          capture_output=True, text=True, timeout=timeout)


def run_here(args: list[str], tmp_path: Path, capfd: pytest.CaptureFixture) -> tuple[int, str]:
    """`python train.py ARGS` in this process (train.py as __main__, its console captured at the file
    descriptors): its exit code and console. An exception that escapes train.py escapes here too and
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
    return code, out + err + exit_message


def with_paths(args: list[str], tmp_path: Path) -> list[str]:
    data = bad_data_dir(tmp_path)
    return [arg.replace("{data}", str(data)).replace("{tmp}", str(tmp_path)) for arg in args]


@pytest.mark.parametrize(("args", "named"), CASES, ids=[" ".join(args) for args, _ in CASES])
def test_bad_input_is_refused_in_one_clear_line(tmp_path, capfd, args, named):
    code, console = run_here(with_paths(args, tmp_path), tmp_path, capfd)
    assert code != 0, console
    assert "Traceback" not in console, console
    assert named in console, console


@pytest.mark.parametrize(("args", "named"), IN_A_PROCESS, ids=[" ".join(args) for args, _ in IN_A_PROCESS])
def test_bad_input_is_refused_in_one_clear_line_by_a_real_process(tmp_path, args, named):
    result = run(with_paths(args, tmp_path), tmp_path)
    console = result.stdout + result.stderr
    assert result.returncode != 0, console
    assert "Traceback" not in console, console
    assert named in console, console


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
