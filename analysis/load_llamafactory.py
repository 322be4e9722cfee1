"""LLaMA-Factory output dirs, read as LLaMA-Factory writes them.

- trainer_log.jsonl (its LogCallback): one line per log with current_steps, total_steps, loss, eval_loss,
  lr, epoch, percentage, elapsed_time, remaining_time, and throughput/total_tokens when
  include_num_input_tokens_seen is on. Eval lines carry eval_loss and no loss.
- trainer_state.json (HF Trainer's save_state): log_history (step, loss, eval_loss,
  num_input_tokens_seen, ...) used when the jsonl is missing, and train_batch_size (per-device batch).
  Written at the end of training; checkpoint-N/ holds earlier copies.
- training_args.yaml (written by LLaMA Board, the web UI): the run's arguments, among them
  gradient_accumulation_steps. Samples seen = steps x train_batch_size x gradient accumulation.
- all_results.json / train_results.json: written when training finished. A run copied without them
  still reads as finished when its trainer_state.json says so: global_step reached max_steps, or the
  log history ends with the Trainer's closing summary (train_runtime).
"""
from __future__ import annotations

from pathlib import Path

import yaml

from analysis.records import (
    RunRecord,
    Series,
    flatten,
    last_numbers,
    parse_yaml,
    read_json,
    samples_from_steps,
    without_plumbing,
)
from runs.files import TRAINER_LOG_FILE as TRAINER_LOG  # our run dirs write it in LLaMA-Factory's format
from runs.jsonl import read_jsonl

TRAINER_STATE = "trainer_state.json"
TRAINING_ARGS = "training_args.yaml"
FINISHED_MARKERS = ("all_results.json", "train_results.json")


def is_llamafactory_dir(path: Path) -> bool:
    return (path / TRAINER_LOG).is_file() or (path / TRAINER_STATE).is_file()


def latest_trainer_state(output_dir: Path) -> Path | None:
    """trainer_state.json of the finished run, else of its newest checkpoint (for the batch size)."""
    if (output_dir / TRAINER_STATE).is_file():
        return output_dir / TRAINER_STATE
    checkpoints = sorted(
        (path for path in output_dir.glob("checkpoint-*/" + TRAINER_STATE) if path.parent.name[11:].isdigit()),
        key=lambda path: int(path.parent.name[11:]),
    )
    return checkpoints[-1] if checkpoints else None


def rows_from_log_history(history: list[dict]) -> list[dict]:
    """HF log_history entries in trainer_log.jsonl's field names, so one code path reads both."""
    return [
        {
            "current_steps": entry.get("step"),
            "loss": entry.get("loss"),
            "eval_loss": entry.get("eval_loss"),
            "lr": entry.get("learning_rate"),
            "epoch": entry.get("epoch"),
            "total_tokens": entry.get("num_input_tokens_seen"),
            "grad_norm": entry.get("grad_norm"),
        }
        for entry in history
    ]


def state_says_finished(state: dict | None) -> bool:
    """Whether a trainer_state.json records the end of training (see the module docstring)."""
    if not state:
        return False
    steps, planned = state.get("global_step"), state.get("max_steps")
    if isinstance(steps, int) and isinstance(planned, int) and 0 < planned <= steps:
        return True
    return any(isinstance(entry, dict) and "train_runtime" in entry for entry in state.get("log_history") or [])


def load_llamafactory_dir(output_dir: Path, name: str) -> RunRecord:
    record = RunRecord(name=name, source="llamafactory", path=str(output_dir))
    state: dict | None = None
    state_path = latest_trainer_state(output_dir)
    if state_path is not None:
        state, problem = read_json(state_path)
        if problem:
            record.problems.append(problem)
    if (output_dir / TRAINER_LOG).is_file():
        rows, problems = read_jsonl(output_dir / TRAINER_LOG)
        record.problems.extend(problems)
    elif state is not None and state_path == output_dir / TRAINER_STATE:
        rows = rows_from_log_history(state.get("log_history") or [])
    else:
        rows = []
    if (output_dir / TRAINING_ARGS).is_file():
        try:
            arguments = parse_yaml((output_dir / TRAINING_ARGS).read_text(encoding="utf-8")) or {}
            record.params = without_plumbing(flatten(arguments))
        except yaml.YAMLError as error:
            record.problems.append(f"{output_dir / TRAINING_ARGS}: unreadable YAML ({error}); params left out")
    train = [row for row in rows if row.get("loss") is not None and row.get("current_steps") is not None]
    steps = [float(row["current_steps"]) for row in train]
    batch = (state or {}).get("train_batch_size")
    accumulation = record.params.get("gradient_accumulation_steps", 1)
    if batch and "gradient_accumulation_steps" not in record.params:
        record.notes.append("samples assume gradient accumulation 1 (no training_args.yaml)")
    effective_batch = int(batch) * int(accumulation) if batch else None
    record.series = Series(
        samples=samples_from_steps(steps, effective_batch),
        tokens=[float(row["total_tokens"]) for row in train if row.get("total_tokens") is not None],
        steps=steps,
        loss=[float(row["loss"]) for row in train],
    )
    evals = [row["eval_loss"] for row in rows if row.get("eval_loss") is not None]
    record.eval_loss = float(evals[-1]) if evals else None
    record.summary = last_numbers(rows)
    if "throughput" in record.summary:
        record.throughput = {"tokens_per_s": record.summary["throughput"]}
    finished = any((output_dir / marker).is_file() for marker in FINISHED_MARKERS) or state_says_finished(state)
    record.status = "completed" if finished else ("running" if rows else "unknown")
    return record
