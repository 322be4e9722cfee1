"""train.py end to end on the tiny model and the demo data, through its command line."""
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, compose_train, run_train, signal_while_importing
from omegaconf import OmegaConf

from runs.schema import check_config
from runs.smoothing import objective_from_metrics
from sft.lifecycle.errors import ConfigError

TINY = ["model=tiny", "task=demo", "task.max_samples=120", "task.cutoff_len=128", "optimizer.lr=2e-3",
        "trainer.per_device_batch_size=4", "trainer.logging_steps=2", "trainer.save_steps=10"]


reads_finished_run = pytest.mark.xdist_group("finished_run")


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


FINISHED = [*TINY, "trainer.max_steps=20", "task.val_size=16", "trainer.eval_steps=10"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, cache_dir):
    """One short run with an eval split, shared by the tests that only read its run dir or compare another
    run to it (marked `reads_finished_run`, so that under pytest-xdist one worker trains it for them all).
    resume=true on a run dir without a checkpoint yet trains from step 0 (a new trial of a sweep)."""
    root = tmp_path_factory.mktemp("project")
    run_dir = root / "run"
    run_train(finished_run_command(run_dir), root, cache_dir)
    return run_dir


def finished_run_command(run_dir: Path) -> list[str]:
    return [*FINISHED, "trainer.resume=true", f"hydra.run.dir={run_dir}"]


@pytest.mark.slow
@reads_finished_run
def test_run_dir_holds_every_file_of_the_contract(finished_run):
    for name in ("metrics.jsonl", "trainer_log.jsonl", "training_loss.png", "adapter_config.json",
                 "adapter_model.safetensors", "result.json", ".hydra/config.yaml", ".hydra/overrides.yaml", "checkpoint-10"):
        assert (finished_run / name).exists(), name
    metrics = read_jsonl(finished_run / "metrics.jsonl")
    train_lines = [m for m in metrics if "loss" in m]
    assert [m["step"] for m in train_lines] == list(range(2, 21, 2))
    assert [m["samples"] for m in train_lines] == [8 * i for i in range(1, 11)]
    assert all(set(m) >= {"tokens", "lr", "grad_norm", "epoch", "elapsed", "samples_per_s", "tokens_per_s"} for m in train_lines)
    assert [m["step"] for m in metrics if "eval_loss" in m] == [10, 20]
    trainer_log = read_jsonl(finished_run / "trainer_log.jsonl")
    assert set(trainer_log[0]) >= {"current_steps", "total_steps", "loss", "lr", "epoch", "percentage", "elapsed_time", "remaining_time"}
    assert trainer_log[-1]["total_steps"] == 20


@pytest.mark.slow
@reads_finished_run
def test_loss_falls_and_result_holds_the_shared_objective(finished_run):
    metrics = read_jsonl(finished_run / "metrics.jsonl")
    result = json.loads((finished_run / "result.json").read_text())
    losses = [m["loss"] for m in metrics if "loss" in m]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    assert result["status"] == "completed" and result["reason"] is None
    expected = objective_from_metrics(metrics, "smoothed_loss", "samples", result["smoothing"]["time_constant"])
    assert result["objective"] == pytest.approx(expected)
    assert result["seen"] == {"samples": 80, "tokens": metrics[-1]["tokens"], "steps": 20}
    assert result["counts"]["train_rows"] == 104 and result["counts"]["eval_rows"] == 16


@pytest.mark.slow
@reads_finished_run
def test_saved_adapter_loads_with_peft_and_generates(finished_run, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(finished_run)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), finished_run)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "我头痛三天了，怎么办？"}], tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(prompt, return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert output.shape[1] > inputs["input_ids"].shape[1]


def curve(run_dir: Path) -> list[tuple]:
    """(step, samples, loss, eval_loss) of each metrics line; None where a line has no such field."""
    return [(m["step"], m.get("samples"), m.get("loss"), m.get("eval_loss")) for m in read_jsonl(run_dir / "metrics.jsonl")]


@pytest.mark.slow
@reads_finished_run
def test_same_seed_same_curve_and_resume_continues_with_the_same_data(finished_run, tmp_path, cache_dir):
    second = tmp_path / "second"
    run_train([*FINISHED, f"hydra.run.dir={second}"], tmp_path, cache_dir)
    assert curve(finished_run) and curve(second) == curve(finished_run)
    # stop "second" after its step-10 checkpoint, then resume it
    shutil.rmtree(second / "checkpoint-20")
    (second / "result.json").unlink()
    with (second / "metrics.jsonl").open("a") as metrics:
        metrics.write('{"step": 21, "samp')  # a line cut off when the process was killed
    run_train([*FINISHED, f"hydra.run.dir={second}", "trainer.resume=true"], tmp_path, cache_dir)
    resumed, uninterrupted = curve(second), curve(finished_run)
    assert [line[:2] for line in resumed] == [line[:2] for line in uninterrupted]
    for column in (2, 3):  # the training loss, then the eval loss
        assert [line[column] for line in resumed if line[column] is not None] == pytest.approx(
            [line[column] for line in uninterrupted if line[column] is not None], rel=1e-5)
    assert json.loads((second / "result.json").read_text())["seen"]["steps"] == 20


@pytest.mark.slow
@reads_finished_run
def test_a_requeued_job_of_a_finished_run_returns_its_result_without_training(finished_run, tmp_path, cache_dir):
    """A stop signal can land after result.json is written, and submitit requeues the job all the same:
    the requeued job (SLURM_RESTART_COUNT=1) runs the same command into the same run dir and returns the
    recorded result (test_a_plain_rerun_of_a_finished_run_trains_again: without that variable it does not)."""
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)  # keeps the files' mtimes
    recorded = json.loads((run_dir / "result.json").read_text())
    files = ("result.json", "metrics.jsonl", "samples.jsonl", "adapter_model.safetensors")
    before = {name: ((run_dir / name).read_bytes(), (run_dir / name).stat().st_mtime_ns) for name in files}
    requeued = run_train(finished_run_command(run_dir), tmp_path, cache_dir, extra_env={"SLURM_RESTART_COUNT": "1"})
    output = requeued.stdout + requeued.stderr
    assert "the run had already finished before its job was requeued: completed, smoothed_loss = " in output, output[-3000:]
    assert f"completed: smoothed_loss = {recorded['objective']} (run dir {run_dir})" in output
    assert {name: ((run_dir / name).read_bytes(), (run_dir / name).stat().st_mtime_ns) for name in files} == before


@pytest.mark.slow
def test_a_stop_signal_after_the_last_step_leaves_the_run_completed(tmp_path, cache_dir):
    """SLURM's warning signal can land after the last step, while the adapter and result.json are being
    saved: it is only noted then, so the run is recorded as completed instead of dying mid-write (USR2's
    default action ends the process, as submitit's handler would after requeueing the job)."""
    run_dir = tmp_path / "run"
    probe = ("import os, runpy, signal, sys\n"
             "import sft.recipe.train\n"
             "plot = sft.recipe.train.plot_llamafactory_loss\n"
             "def plot_then_signal(*args, **kwargs):\n"
             "    os.kill(os.getpid(), signal.SIGUSR2)\n"
             "    return plot(*args, **kwargs)\n"
             "sft.recipe.train.plot_llamafactory_loss = plot_then_signal\n"
             "sys.argv = ['train.py', 'experiment=quickstart', 'trainer.max_steps=4', 'trainer.logging_steps=2', "
             f"'task.val_size=0', 'hydra.run.dir={run_dir}']\n"
             "runpy.run_path('train.py', run_name='__main__')\n")
    env = {**os.environ, "PROJECT_ROOT": str(tmp_path), "LORASWEEP_CACHE": str(cache_dir), "WANDB_MODE": "offline"}
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    recorded = json.loads((run_dir / "result.json").read_text())
    assert recorded["status"] == "completed" and recorded["seen"]["steps"] == 4, recorded
    assert (run_dir / "adapter_model.safetensors").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("sent, exit_code", [("SIGUSR2", 130), ("SIGTERM", 130)])
def test_a_stop_signal_while_train_py_imports_ends_the_run_with_that_signal_as_reason(tmp_path, cache_dir, sent, exit_code):
    """SLURM's warning before a time limit (or a preemption's SIGTERM) can land while the job still imports
    torch and transformers: noted, it ends the run before its first step with result.json saying so, and
    the same command then trains the run."""
    run_dir = tmp_path / "run"
    hook = signal_while_importing(tmp_path / "hook", "transformers", sent)
    args = [*TINY, "trainer.max_steps=4", f"hydra.run.dir={run_dir}"]
    stopped = run_train(args, tmp_path, cache_dir, check=False, extra_env={"PYTHONPATH": str(hook)})
    assert stopped.returncode == exit_code and "Traceback" not in stopped.stderr, stopped.stdout[-2000:] + stopped.stderr[-3000:]
    assert (hook / "sent").is_file()
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "interrupted", result
    assert result["reason"].startswith(f"stopped by {sent} before training started"), result
    assert not (run_dir / "metrics.jsonl").exists()
    run_train(args, tmp_path, cache_dir)  # the same command (what a requeued job runs): from step 0
    assert json.loads((run_dir / "result.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_a_stop_signal_checkpoints_and_the_same_command_resumes_the_same_curve(tmp_path, cache_dir):
    """What SLURM does before a time limit (submitit asks for USR2) and what the requeued job does:
    the same command into the same run dir."""
    reference, stopped = tmp_path / "reference", tmp_path / "stopped"
    args = [*TINY, "trainer.max_steps=60", "trainer.save_steps=100"]  # 56 steps after the signal: ~2 s on an idle core
    # resume=true on a run dir without a checkpoint yet trains from step 0 (a new trial of a sweep)
    run_train([*args, f"hydra.run.dir={reference}", "trainer.resume=true"], tmp_path, cache_dir)
    env = {**os.environ, "PROJECT_ROOT": str(tmp_path), "LORASWEEP_CACHE": str(cache_dir), "WANDB_MODE": "offline"}
    job = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args, f"hydra.run.dir={stopped}"], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while not ((stopped / "metrics.jsonl").is_file() and (stopped / "metrics.jsonl").read_text().count("\n") >= 2):
        assert job.poll() is None and time.time() < deadline, "training ended before the signal"
        time.sleep(0.2)
    job.send_signal(signal.SIGUSR2)
    _, stderr = job.communicate(timeout=600)
    assert job.returncode == 130, stderr[-3000:]
    result = json.loads((stopped / "result.json").read_text())
    assert result["status"] == "interrupted" and "SIGUSR2" in result["reason"]
    step = result["seen"]["steps"]
    assert 4 <= step < 60 and (stopped / f"checkpoint-{step}").is_dir()
    run_train([*args, f"hydra.run.dir={stopped}"], tmp_path, cache_dir)  # no resume flag: the run dir says so
    assert f"resuming from {stopped / f'checkpoint-{step}'}" in (stopped / "train.log").read_text()  # not from step 0
    resumed, uninterrupted = read_jsonl(stopped / "metrics.jsonl"), read_jsonl(reference / "metrics.jsonl")
    assert [m["step"] for m in resumed] == [m["step"] for m in uninterrupted] == list(range(2, 61, 2))
    assert [m["loss"] for m in resumed] == pytest.approx([m["loss"] for m in uninterrupted], rel=1e-5)
    assert json.loads((stopped / "result.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_nan_loss_fails_the_run_with_its_reason(tmp_path, cache_dir):
    run_dir = tmp_path / "nan"
    # LoRA's A matrices get an exactly zero gradient on the first step (B starts at zero); with an eps
    # that is 0 in float32, AdamW's update is 0/0. A huge lr does not do it: the final RMSNorm and the
    # frozen tied head keep the logits bounded.
    result = run_train([*TINY, "trainer.max_steps=20", "optimizer.eps=1e-50", f"hydra.run.dir={run_dir}"],
                       tmp_path, cache_dir, check=False)
    assert result.returncode == 2
    saved = json.loads((run_dir / "result.json").read_text())
    assert saved["status"] == "failed" and saved["objective"] is None
    assert "loss became nan" in saved["reason"] or "loss became inf" in saved["reason"]
    assert "lower optimizer.lr" in result.stdout + result.stderr


@pytest.mark.slow
def test_bad_input_stops_before_training_with_a_clear_message(tmp_path, cache_dir):
    run_dir = tmp_path / "bad"
    result = run_train([*TINY, "task.dataset=[nope]", f"hydra.run.dir={run_dir}"], tmp_path, cache_dir, check=False)
    assert result.returncode == 2
    assert "unknown dataset 'nope'" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert json.loads((run_dir / "result.json").read_text())["status"] == "failed"


def test_a_budget_shorter_than_one_logging_interval_is_refused_before_torch_is_imported(tmp_path, cache_dir):
    run_dir = tmp_path / "short"
    env = {**os.environ, "PROJECT_ROOT": str(tmp_path), "LORASWEEP_CACHE": str(cache_dir)}
    result = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / "train.py"), *TINY, "trainer.max_samples_seen=4",
                             f"hydra.run.dir={run_dir}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "set trainer.logging_steps=1 or less" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not [line for line in result.stderr.splitlines() if line.rsplit("|", 1)[-1].strip() == "torch"]
    saved = json.loads((run_dir / "result.json").read_text())
    assert saved["status"] == "failed" and "logging interval" in saved["reason"]


def test_a_requeued_job_of_a_pruned_run_returns_the_pruned_result(tmp_path, monkeypatch):
    from sft.recipe.train import run_training

    pruned = {"status": "pruned", "reason": "pruned at 48 samples seen", "objective": 3.5, "objective_name": "smoothed_loss"}
    (tmp_path / "result.json").write_text(json.dumps(pruned))
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    assert run_training(compose_train(TINY), tmp_path) == pruned
    assert json.loads((tmp_path / "result.json").read_text()) == pruned


def test_a_plain_rerun_of_a_finished_run_trains_again(tmp_path, monkeypatch):
    """Without SLURM's requeue count the same command into the same run dir trains again: here its config is
    refused, and result.json says so instead of keeping the earlier completed result."""
    from sft.recipe.train import run_training

    completed = {"status": "completed", "reason": None, "objective": 3.5, "objective_name": "smoothed_loss"}
    (tmp_path / "result.json").write_text(json.dumps(completed))
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    with pytest.raises(ConfigError, match="optimizer.lr"):
        run_training(compose_train([*TINY, "optimizer.lr=-1e-5"]), tmp_path)
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "failed"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=-1e-5", "optimizer.lr=-1e-05 is not allowed: optimizer.lr takes a number > 0"),
        ("optimizer.weight_decay=-0.01", "weight_decay=-0.01 is not allowed: optimizer.weight_decay takes a number >= 0"),
        ("trainer.per_device_batch_size=0", "per_device_batch_size=0 is not allowed: trainer.per_device_batch_size takes an integer >= 1"),
        ("scheduler.name=exponential", "scheduler.name='exponential' is not allowed: scheduler.name takes one of linear | cosine"),
        ("trainer.epochs=0", "no training budget"),
        ("objective=eval_loss", "needs an eval split"),
        ("trainer.max_samples_seen=16", r"shorter than one logging interval .* set trainer.logging_steps=4 or less"),
        ("task.data_seed=-1", "task.data_seed=-1 is not allowed: task.data_seed takes an integer >= 0 and < 4294967296"),
    ],
)
def test_impossible_settings_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        check_config(compose_train([override]))


def test_seed_yiliao_composes_to_the_seed_command_flag_for_flag():
    cfg = compose_train(["experiment=seed_yiliao"])
    assert cfg.model.name_or_path == "Qwen/Qwen2.5-0.5B-Instruct"
    assert (cfg.task.name, list(cfg.task.dataset), cfg.task.template, cfg.task.cutoff_len, cfg.task.max_samples) == ("yiliao", ["yiliao"], "qwen", 2048, 50000)
    assert (cfg.optimizer.lr, cfg.optimizer.max_grad_norm) == (5e-5, 1.0)
    assert (cfg.scheduler.name, cfg.scheduler.warmup_steps) == ("cosine", 1000)
    assert (cfg.lora.rank, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.target) == (16, 16, 0.01, "all")
    trainer = cfg.trainer
    assert (trainer.per_device_batch_size, trainer.gradient_accumulation_steps, trainer.epochs) == (20, 5, 10.0)
    assert (trainer.logging_steps, trainer.save_steps, trainer.precision) == (10, 1000, "bf16")
    cate, spo = compose_train(["experiment=seed_cate"]), compose_train(["experiment=seed_spo"])
    assert (cate.trainer.per_device_batch_size, cate.scheduler.name, cate.scheduler.warmup_steps, cate.trainer.logging_steps, cate.trainer.save_steps) == (5, "linear", 5, 10, 10)
    assert (spo.trainer.per_device_batch_size, spo.scheduler.name, spo.scheduler.warmup_steps, spo.trainer.logging_steps, spo.trainer.save_steps) == (8, "cosine", 5, 1, 30)


@pytest.mark.slow
def test_hydra_grid_runs_each_combination(tmp_path, cache_dir):
    sweep_dir = tmp_path / "grid"
    run_train(["-m", *TINY, "trainer.max_steps=4", "optimizer.lr=1e-3,3e-3", f"hydra.sweep.dir={sweep_dir}"], tmp_path, cache_dir)
    results = [json.loads((sweep_dir / str(job) / "result.json").read_text()) for job in (0, 1)]
    assert all(r["status"] == "completed" and math.isfinite(r["objective"]) for r in results)
    lrs = [OmegaConf.load(sweep_dir / str(job) / ".hydra/config.yaml").optimizer.lr for job in (0, 1)]
    assert lrs == [1e-3, 3e-3]


@pytest.mark.slow
def test_local_model_dir_and_wandb_offline_run_carry_the_config(tmp_path, cache_dir, tiny_model_dir):
    run_dir = tmp_path / "wandb-run"
    run_train([*TINY, f"model.name_or_path={tiny_model_dir}", "trainer.max_steps=4", "logger=wandb",
               "logger.group=my-study", f"logger.dir={tmp_path}", f"hydra.run.dir={run_dir}"], tmp_path, cache_dir)
    offline_runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1
    inspected = subprocess.run([str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--summary", "--json", str(offline_runs[0])],
                               capture_output=True, text=True, check=True)
    summary = json.loads(inspected.stdout)
    text = json.dumps(summary)
    assert "my-study" in text and str(tiny_model_dir) in text and "train/loss" in text


@pytest.mark.slow
def test_a_hub_model_that_cannot_be_reached_gives_a_clear_error(tmp_path, cache_dir):
    result = run_train(["model=qwen2.5-0.5b-instruct", f"hydra.run.dir={tmp_path / 'hub'}"], tmp_path, cache_dir, check=False,
                       extra_env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert result.returncode == 2
    assert "could not load 'Qwen/Qwen2.5-0.5B-Instruct'" in result.stderr + result.stdout
    assert "hf download" in result.stderr + result.stdout and "model.name_or_path=DIR" in result.stderr + result.stdout
