"""result.json: how a run ended, written once at its end (docs/run_dir.md lists every field).

The field names below are the ones more than one part reads; training writes the rest beside them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from runs.files import RESULT_FILE

# status values
COMPLETED = "completed"
PRUNED = "pruned"
FAILED = "failed"

# fields
STATUS = "status"
REASON = "reason"
OBJECTIVE = "objective"
OBJECTIVE_NAME = "objective_name"
SEEN = "seen"
START_TO_FIRST_STEP = "start_to_first_step"
DATA_SEED = "data_seed"  # task.data_seed: fixes the held-out split and the training-sample stream
TRAIN_SEED = "train_seed"  # trainer.seed: LoRA init and dropout only
SAMPLES_TRAINED = "samples_trained"  # samples the optimizer trained on, counted exactly
DATA_FINGERPRINT = "data_fingerprint"  # hash of the ids of the samples trained on, in order
SPLIT_FINGERPRINT = "split_fingerprint"  # hash of the held-out rows' ids
SHUFFLE = "shuffle"  # trainer.shuffle: with the split and data_seed, it fixes which stream a run trained on
PEAK_GPU_MEMORY_MB = "peak_gpu_memory_mb"  # the run's peak GPU memory (MiB); null on a CPU


def write_result(run_dir: Path, result: dict[str, Any]) -> None:
    """Atomically (a reader never sees half a file)."""
    path = Path(run_dir) / RESULT_FILE
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    os.replace(temporary, path)


def read_result(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(result, None); (None, None) when the run wrote none (yet); (None, problem) when it cannot be read
    (a job killed while writing it) or is not a JSON object."""
    path = Path(run_dir) / RESULT_FILE
    if not path.is_file():
        return None, None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        return None, f"{path}: cannot read ({error}); repair or remove the file"
    if not isinstance(value, dict):
        return None, f"{path}: expected a JSON object, found {type(value).__name__}"
    return value, None


def read_status(run_dir: Path) -> str | None:
    """The run's status (completed, pruned, failed, interrupted), or None when it has no readable result."""
    result, _ = read_result(run_dir)
    return result.get(STATUS) if result else None
