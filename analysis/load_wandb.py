"""W&B runs: offline run dirs through wandb's own reader, online runs through the public API.

wandb 0.31 has no Python reader for the binary `.wandb` file of an offline run; its CLI does:
`wandb leet inspect --json PATH` prints one JSON record per line (type "run" with run_group, type
"history" with history.item = the logged row) and `--summary --json` prints one object with config,
state and summary. We call the CLI that belongs to the current interpreter's environment.

Key names: HF Trainer's WandbCallback logs "train/loss", "train/global_step", "eval/loss",
"train/num_input_tokens_seen"; our train.py may log "train/samples". Samples seen come from the
logged samples when present, else from steps x per-device batch x gradient accumulation in the config.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from analysis.records import (
    LoadResult,
    RunRecord,
    Series,
    flatten,
    is_number,
    last_numbers,
    samples_from_steps,
    without_plumbing,
)

LOSS_KEYS = ("train/loss", "loss")
STEP_KEYS = ("train/global_step", "global_step", "step")
SAMPLES_KEYS = ("train/samples", "samples")
TOKENS_KEYS = ("train/num_input_tokens_seen", "train/tokens", "tokens", "num_input_tokens_seen")
EVAL_KEYS = ("eval/loss", "eval_loss")
BATCH_KEYS = ("per_device_train_batch_size", "trainer.per_device_batch_size")
ACCUMULATION_KEYS = ("gradient_accumulation_steps", "trainer.gradient_accumulation_steps")
WANDB_STATES = {"finished": "completed", "failed": "failed", "crashed": "failed", "killed": "failed", "running": "running"}
INSPECT_TIMEOUT_S = 120


def first_present(row: dict, keys: tuple[str, ...]) -> Any:
    for key in keys:
        if row.get(key) is not None:
            return row[key]
    return None


def wandb_cli() -> list[str]:
    """The wandb CLI installed beside this interpreter (the same version as the wandb it imports)."""
    found = shutil.which("wandb", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "wandb"]


def is_wandb_run_dir(path: Path) -> bool:
    return any(path.glob("run-*.wandb"))


def record_from_history(
    name: str, source: str, path: str, rows: list[dict], config: dict, summary: dict, state: str | None
) -> RunRecord:
    """A record from W&B history rows, config and summary; shared by the offline and online readers."""
    flat_config = flatten(config)
    train = [row for row in rows if is_number(first_present(row, LOSS_KEYS))]
    steps = [float(first_present(row, STEP_KEYS) or 0) for row in train]
    samples = [float(value) for value in (first_present(row, SAMPLES_KEYS) for row in train) if is_number(value)]
    if len(samples) != len(train):
        batch = first_present(flat_config, BATCH_KEYS)
        accumulation = first_present(flat_config, ACCUMULATION_KEYS) or 1
        samples = samples_from_steps(steps, int(batch) * int(accumulation) if is_number(batch) else None)
    tokens = [float(value) for value in (first_present(row, TOKENS_KEYS) for row in train) if is_number(value)]
    evals = [first_present(row, EVAL_KEYS) for row in rows if is_number(first_present(row, EVAL_KEYS))]
    numbers = last_numbers(rows)
    numbers.update({key: float(value) for key, value in summary.items() if is_number(value)})
    eval_loss = evals[-1] if evals else first_present(summary, EVAL_KEYS)
    return RunRecord(
        name=name,
        source=source,
        path=path,
        status=WANDB_STATES.get(str(state), "unknown"),
        params=without_plumbing(flat_config),
        series=Series(samples=samples, tokens=tokens, steps=steps, loss=[float(first_present(r, LOSS_KEYS)) for r in train]),
        eval_loss=float(eval_loss) if is_number(eval_loss) else None,
        summary={key: value for key, value in numbers.items() if not key.startswith("_")},
    )


def inspect(run_dir: Path, *arguments: str) -> str:
    completed = subprocess.run(
        [*wandb_cli(), "leet", "inspect", *arguments, "--json", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=INSPECT_TIMEOUT_S,
        env={**os.environ, "WANDB_SILENT": "true"},
    )
    if completed.returncode != 0:
        message = (completed.stderr or completed.stdout).strip().splitlines()
        raise ValueError(message[-1] if message else f"exit code {completed.returncode}")
    return completed.stdout


def load_offline_run(run_dir: Path, name: str) -> LoadResult:
    """One offline run dir (offline-run-DATE-ID/ holding run-ID.wandb)."""
    try:
        records_text = inspect(run_dir)
        overview = json.loads(inspect(run_dir, "--summary"))
    except (ValueError, OSError, subprocess.TimeoutExpired) as error:
        return LoadResult(problems=[f"{run_dir}: wandb leet inspect could not read it ({error}); is the run file complete?"])
    rows: list[dict] = []
    group = None
    for line in records_text.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("type") == "history":
            rows.append(entry["history"].get("item", {}))
        elif entry.get("type") == "run":
            group = entry["run"].get("run_group") or group
    record = record_from_history(
        name, "wandb-offline", str(run_dir), rows, overview.get("config") or {}, overview.get("summary") or {},
        overview.get("state"),
    )
    record.group = group
    record.attrs = {"project": overview.get("project"), "run_id": overview.get("run_id")}
    return LoadResult(runs=[record])


def load_online_runs(target: str, api: Any = None) -> LoadResult:
    """Runs of `entity/project/group` (or `entity/project`) through wandb.Api; needs WANDB_API_KEY.

    Tested at the API boundary only, with an object of the public API's shape (Api.runs(path, filters)
    yielding runs with name, id, state, config, summary, group, scan_history()): no W&B server can run
    where the tests run.
    """
    parts = target.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        return LoadResult(problems=[f"wandb:{target}: expected wandb:ENTITY/PROJECT or wandb:ENTITY/PROJECT/GROUP"])
    from wandb.errors import Error as WandbError

    if api is None and not os.environ.get("WANDB_API_KEY"):
        return LoadResult(problems=[f"wandb:{target}: WANDB_API_KEY is not set; `wandb login` or export it"])
    entity, project = parts[0], parts[1]
    filters = {"group": parts[2]} if len(parts) == 3 else None
    result = LoadResult()
    try:
        if api is None:
            import wandb

            api = wandb.Api()
        for run in api.runs(f"{entity}/{project}", filters=filters):
            rows = [dict(row) for row in run.scan_history()]
            record = record_from_history(
                run.name, "wandb", f"wandb:{entity}/{project}/{run.id}", rows, dict(run.config), dict(run.summary),
                run.state,
            )
            record.group = getattr(run, "group", None)
            record.attrs = {"project": project, "entity": entity, "run_id": run.id}
            result.runs.append(record)
    except (WandbError, OSError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        result.problems.append(f"wandb:{target}: the W&B API refused or could not be reached ({message})")
        return result
    if not result.runs:
        result.problems.append(f"wandb:{target}: no runs found; check entity, project and group")
    return result
