"""Checkpoints that cannot poison a resume.

The HF Trainer writes checkpoint-N/ file by file in place: a full disk or a kill during the save leaves a
half-written checkpoint that a resume picks as the newest and then crashes on (a truncated adapter or
optimizer.pt). Here each checkpoint is written into a hidden staging dir beside the checkpoints, fsynced,
and renamed into place only once complete; before a resume every file of a checkpoint is loaded, and a bad
one is skipped with a warning for the newest good one. `save_total_limit` rotation runs after the rename and
deletes only checkpoints older than the one just saved, so the last good checkpoint always stays.

A save that fails for lack of space raises `CheckpointDiskFull` (an OSError: the run ends `failed` with its
message in result.json) naming the disk, its free space and the checkpoint a resume would continue from.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")
# hidden, and unlike checkpoint-N, so neither get_last_checkpoint nor the Trainer's rotation ever sees it
STAGING_DIR = ".checkpoint-staging"
# below this much free space after a failed save, the disk is taken as full: torch.save and safetensors
# report a full disk as "file write failed" / "StorageFull", not always as an OSError carrying ENOSPC
FULL_DISK_FREE_BYTES = 1 << 20
# the files the Trainer needs to resume (TrainingArguments.save_only_model=False): weights, optimizer,
# scheduler and state; the RNG and grad-scaler states are loaded too where the checkpoint has them
WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors")
REQUIRED_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt")
OPTIONAL_TORCH_FILES = ("scaler.pt",)


class CheckpointDiskFull(OSError):
    """No space left on the run dir's disk while a checkpoint was being saved."""


class AtomicCheckpoints:
    """A mixin for the HF Trainer: `_save_checkpoint` runs as the Trainer wrote it, but into the staging
    dir (the Trainer takes its checkpoint's parent from `_get_output_dir`), then the checkpoint is fsynced,
    renamed into place and the older ones rotated."""

    staging_dir: Path | None = None

    def _get_output_dir(self, trial: Any) -> str:
        if self.staging_dir is not None:
            return str(self.staging_dir)
        return super()._get_output_dir(trial)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        run_dir = Path(super()._get_output_dir(trial))
        step = self.state.global_step
        with staged_checkpoint(run_dir, step) as staging:
            self.staging_dir = staging
            try:
                super()._save_checkpoint(model, trial)
            finally:
                self.staging_dir = None
        rotate_checkpoints(run_dir, self.args.save_total_limit, step)


@contextmanager
def staged_checkpoint(run_dir: Path, step: int) -> Iterator[Path]:
    """Yields the staging dir to write checkpoint-`step` into; once the body returns, fsyncs it and renames
    it to run_dir/checkpoint-`step` (replacing one an earlier session left there). When the body fails,
    the staging dir is removed, leaving the checkpoints as they were; a full disk becomes CheckpointDiskFull."""
    staging = run_dir / STAGING_DIR
    name = f"checkpoint-{step}"
    shutil.rmtree(staging, ignore_errors=True)  # what a save killed midway left
    try:
        staging.mkdir(parents=True)
        yield staging
        _fsync_tree(staging / name)
    except Exception as error:
        free = shutil.disk_usage(run_dir)
        shutil.rmtree(staging, ignore_errors=True)
        if _disk_full(error, free.free):
            raise CheckpointDiskFull(
                f"no space left on {disk_of(run_dir)} while saving {name} into {run_dir} ({_mib(free.free)} free of "
                f"{_mib(free.total)}); {_resume_point(run_dir)} Free some space there (or lower trainer.save_total_limit, or "
                "move hydra.run.dir to a larger disk), then run the same command with trainer.resume=true"
            ) from error
        raise
    target = run_dir / name
    if target.exists():
        os.rename(target, staging / f"replaced-{name}")
    os.rename(staging / name, target)
    _fsync_dir(run_dir)
    shutil.rmtree(staging)


def rotate_checkpoints(run_dir: Path, limit: int | None, saved_step: int) -> None:
    """trainer.save_total_limit: keeps checkpoint-`saved_step` (just saved, complete) and the newest
    limit - 1 before it; checkpoints of a later step (an earlier session's, beyond a resume point) are left
    for the saves to come to replace."""
    if not limit:
        return
    older = sorted(step for step in checkpoint_steps(run_dir) if step < saved_step)
    for step in older[: max(0, len(older) - (limit - 1))]:
        log.info("deleting checkpoint-%d (trainer.save_total_limit=%d)", step, limit)
        shutil.rmtree(run_dir / f"checkpoint-{step}")


def checkpoint_steps(run_dir: Path) -> list[int]:
    """The steps of run_dir's checkpoint-N dirs, newest first."""
    matches = (CHECKPOINT_NAME.match(path.name) for path in run_dir.iterdir() if path.is_dir())
    return sorted((int(match.group(1)) for match in matches if match), reverse=True)


def last_good_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint of run_dir whose files all load, None when it has none. Each newer one that
    does not load is skipped with a warning that names it, what is wrong and the checkpoint used instead."""
    skipped: list[str] = []
    for step in checkpoint_steps(run_dir):
        checkpoint = run_dir / f"checkpoint-{step}"
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            for line in skipped:
                log.warning("%s; resuming from %s, the last good checkpoint", line, checkpoint)
            return checkpoint
        skipped.append(f"skipping {checkpoint}: {problem}")
    for line in skipped:
        log.warning("%s; no good checkpoint is left in %s", line, run_dir)
    return None


def checkpoint_problem(checkpoint: Path) -> str | None:
    """Why the Trainer could not resume from this checkpoint (a missing file, or one that does not load, as
    a save cut short leaves them), None when every file it reads on a resume loads."""
    import torch
    from safetensors.torch import load_file

    weights = next((checkpoint / name for name in WEIGHT_FILES if (checkpoint / name).is_file()), None)
    if weights is None:
        return f"it holds no {' or '.join(WEIGHT_FILES)}"
    missing = [name for name in REQUIRED_FILES if not (checkpoint / name).is_file()]
    if missing:
        return f"it holds no {', '.join(missing)}"
    try:
        current = "trainer_state.json"
        json.loads((checkpoint / current).read_text())["global_step"]
        current = weights.name
        load_file(weights, device="cpu")
        for current in ("optimizer.pt", "scheduler.pt", *OPTIONAL_TORCH_FILES):
            if (checkpoint / current).is_file():
                torch.load(checkpoint / current, map_location="cpu", weights_only=True)
        # the RNG states hold numpy objects that torch.load takes only with the Trainer's allowlist, whose
        # place differs between transformers releases; their zip members' checksums show a save cut short
        for current in sorted(path.name for path in checkpoint.glob("rng_state*.pth")):
            damaged = zipfile.ZipFile(checkpoint / current).testzip()
            if damaged:
                raise ValueError(f"member {damaged} fails its checksum")
    except Exception as error:  # each loader has its own (SafetensorError, RuntimeError, BadZipFile, JSONDecodeError, KeyError)
        return f"{current} does not load ({type(error).__name__}: {error})"
    return None


def disk_of(path: Path) -> str:
    """The disk holding path, as its mount point, device and file system type (from /proc/self/mounts)."""
    mount = path.resolve()
    while not os.path.ismount(mount):
        mount = mount.parent
    device = fstype = None
    try:
        for line in Path("/proc/self/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[1] == str(mount):
                device, fstype = fields[0], fields[2]  # the last mount at a point is the one in use
    except OSError:
        pass
    return f"{mount} ({device}, {fstype})" if device else str(mount)


def _disk_full(error: BaseException, free_bytes: int) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(seen) or "StorageFull" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return free_bytes < FULL_DISK_FREE_BYTES


def _resume_point(run_dir: Path) -> str:
    good = next((step for step in checkpoint_steps(run_dir) if checkpoint_problem(run_dir / f"checkpoint-{step}") is None), None)
    if good is None:
        return "the run has no good checkpoint yet, so a resume starts from step 0."
    return f"checkpoint-{good} is the last good checkpoint and the resume point."


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def _fsync_tree(directory: Path) -> None:
    for root, _, files in os.walk(directory):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(root))


def _fsync_dir(directory: Path) -> None:
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
