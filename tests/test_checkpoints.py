"""Checkpoints that cannot poison a resume (sft/recipe/checkpoints.py): each is written whole or not at all, a
resume skips one whose files do not load for the last good one, and a full disk during a save ends the
run failed, naming the disk, with the last good checkpoint left as the resume point."""
from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import compose_train

from runs.jsonl import read_jsonl
from sft.recipe.checkpoints import CheckpointDiskFull, checkpoint_problem, rotate_checkpoints, staged_checkpoint

# the tests that copy the one trained run: one pytest-xdist worker trains it for them all
reads_finished_run = pytest.mark.xdist_group("checkpoints_finished_run")

# checkpoints at steps 2, 4 and 6, a training loss logged at each
RUN = ["model=tiny", "task=demo", "task.max_samples=120", "task.cutoff_len=128", "trainer.per_device_batch_size=4",
       "trainer.logging_steps=2", "trainer.save_steps=2", "trainer.max_steps=6"]


def write_checkpoint(staging: Path, step: int, payload: bytes = b"weights") -> None:
    checkpoint = staging / f"checkpoint-{step}"
    checkpoint.mkdir()
    (checkpoint / "adapter_model.safetensors").write_bytes(payload)


def test_a_save_that_fails_leaves_the_checkpoints_as_they_were(tmp_path):
    with staged_checkpoint(tmp_path, 2) as staging:
        write_checkpoint(staging, 2, b"good")
    with pytest.raises(CheckpointDiskFull) as failed, staged_checkpoint(tmp_path, 4) as staging:
        write_checkpoint(staging, 4)
        raise OSError(errno.ENOSPC, "No space left on device")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint-2"]
    assert (tmp_path / "checkpoint-2" / "adapter_model.safetensors").read_bytes() == b"good"
    message = str(failed.value)
    assert message.startswith("no space left on /") and "while saving checkpoint-4" in message and "MiB free of" in message
    assert "trainer.resume=true" in message


def test_another_error_during_a_save_is_raised_as_it_is_and_a_new_save_replaces_an_old_one(tmp_path):
    with staged_checkpoint(tmp_path, 2) as staging:
        write_checkpoint(staging, 2, b"earlier session")
    with pytest.raises(KeyError), staged_checkpoint(tmp_path, 2) as staging:
        write_checkpoint(staging, 2)
        raise KeyError("not a disk problem")
    with staged_checkpoint(tmp_path, 2) as staging:
        write_checkpoint(staging, 2, b"this session")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint-2"]
    assert (tmp_path / "checkpoint-2" / "adapter_model.safetensors").read_bytes() == b"this session"


def test_rotation_keeps_the_checkpoint_just_saved_and_leaves_later_steps(tmp_path):
    for step in (2, 4, 6, 8):
        (tmp_path / f"checkpoint-{step}").mkdir()
    rotate_checkpoints(tmp_path, 2, saved_step=6)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint-4", "checkpoint-6", "checkpoint-8"]
    rotate_checkpoints(tmp_path, 1, saved_step=6)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint-6", "checkpoint-8"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, cache_dir):
    """One run of RUN (checkpoints 2, 4, 6), trained once for the tests that copy and damage it."""
    from sft.recipe.train import run_training

    root = tmp_path_factory.mktemp("project")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LORASWEEP_CACHE", str(cache_dir))
        patch.setenv("PROJECT_ROOT", str(root))
        run_training(compose_train(RUN), root / "run")
    return root / "run"


def truncate(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def assert_same_curve(run_dir: Path, reference: Path) -> None:
    """The training losses logged at the same steps as in the reference run, to float noise."""
    (records, _), (expected, _) = read_jsonl(run_dir / "metrics.jsonl"), read_jsonl(reference / "metrics.jsonl")
    assert [r["step"] for r in records if "loss" in r] == [r["step"] for r in expected if "loss" in r] == [2, 4, 6]
    assert [r["loss"] for r in records if "loss" in r] == pytest.approx([r["loss"] for r in expected if "loss" in r], rel=1e-5)


@pytest.mark.slow
@reads_finished_run
@pytest.mark.parametrize("damaged", ["trainer_state.json", "adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth"])
def test_each_file_a_resume_reads_is_checked(finished, tmp_path, damaged):
    checkpoint = tmp_path / "checkpoint-6"
    shutil.copytree(finished / "checkpoint-6", checkpoint)
    assert checkpoint_problem(checkpoint) is None
    truncate(checkpoint / damaged)
    assert checkpoint_problem(checkpoint).startswith(f"{damaged} does not load")
    (checkpoint / damaged).unlink()
    missing = {"adapter_model.safetensors": "it holds no adapter_model.safetensors or model.safetensors",
               "rng_state.pth": None}  # the Trainer resumes without RNG states (less reproducibly), as it says
    assert checkpoint_problem(checkpoint) == missing.get(damaged, f"it holds no {damaged}")


@pytest.mark.slow
@reads_finished_run
@pytest.mark.parametrize("damaged", ["adapter_model.safetensors", "optimizer.pt"])
def test_a_resume_skips_a_truncated_checkpoint_and_continues_from_the_last_good_one(finished, tmp_path, recipe_env, caplog, damaged):
    from sft.recipe.train import run_training

    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    truncate(run_dir / "checkpoint-6" / damaged)
    caplog.set_level(logging.INFO)
    result = run_training(compose_train([*RUN, "trainer.resume=true"]), run_dir)
    assert f"skipping {run_dir / 'checkpoint-6'}: {damaged} does not load" in caplog.text
    assert f"resuming from {run_dir / 'checkpoint-4'}, the last good checkpoint" in caplog.text
    assert result["status"] == "completed" and result["seen"]["steps"] == 6
    assert_same_curve(run_dir, finished)  # steps 5 and 6 trained again, as before
    assert checkpoint_problem(run_dir / "checkpoint-6") is None  # replaced by a good one


@pytest.fixture
def small_disk(tmp_path):
    """A directory on its own tmpfs (as root, where mount works), else None; unmounted afterwards."""
    directory = tmp_path / f"disk-{uuid.uuid4().hex[:8]}"
    directory.mkdir()
    mounted = os.geteuid() == 0 and shutil.which("mount") is not None and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(directory)],
                                                   capture_output=True).returncode == 0
    yield directory if mounted else None
    if mounted:
        subprocess.run(["umount", str(directory)], check=True)


def resize(disk: Path, size_bytes: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size_bytes}", str(disk)], check=True)


@pytest.mark.slow
@reads_finished_run
def test_a_full_disk_during_a_save_fails_the_run_and_a_resume_continues_from_the_last_good_checkpoint(
        finished, tmp_path, recipe_env, caplog, small_disk):
    """On a tmpfs with room for the run's logs and one checkpoint and a half; where no tmpfs can be mounted,
    the second save's optimizer.pt fails with ENOSPC half written."""
    from sft.recipe.train import run_training
    from sft.recipe.trainer import SFTTrainer

    checkpoint_bytes = sum(path.stat().st_size for path in (finished / "checkpoint-2").iterdir())
    run_dir = (small_disk or tmp_path) / "run"
    with pytest.MonkeyPatch.context() as patch:
        if small_disk is not None:
            resize(small_disk, int(checkpoint_bytes * 1.5) + (256 << 10))
        else:
            save = SFTTrainer._save_optimizer_and_scheduler

            def disk_fills_at_step_4(self, output_dir):
                if self.state.global_step == 4:
                    Path(output_dir, "optimizer.pt").write_bytes(b"half")
                    raise OSError(errno.ENOSPC, "No space left on device")
                save(self, output_dir)

            patch.setattr(SFTTrainer, "_save_optimizer_and_scheduler", disk_fills_at_step_4)
        with pytest.raises(CheckpointDiskFull):
            run_training(compose_train(RUN), run_dir)

    failed = json.loads((run_dir / "result.json").read_text())
    assert failed["status"] == "failed"
    disk = f"{small_disk} (tmpfs, tmpfs)" if small_disk is not None else "/"
    assert f"no space left on {disk}" in failed["reason"] and "while saving checkpoint-4" in failed["reason"]
    assert "checkpoint-2 is the last good checkpoint" in failed["reason"]
    assert sorted(path.name for path in run_dir.iterdir() if "checkpoint" in path.name) == ["checkpoint-2"]

    if small_disk is not None:
        resize(small_disk, 64 << 20)
    caplog.set_level(logging.INFO)
    resumed = run_training(compose_train([*RUN, "trainer.resume=true"]), run_dir)
    assert f"resuming from {run_dir / 'checkpoint-2'}" in caplog.text
    assert resumed["status"] == "completed" and resumed["seen"]["steps"] == 6
    assert_same_curve(run_dir, finished)
