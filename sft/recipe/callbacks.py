"""HF Trainer callbacks that write the run-dir logs, stop on a non-finite loss, report to a sweeper's
trial, and draw a rich progress bar.

Steps are optimizer steps, but runs with different batch sizes are only comparable over samples (or
tokens) seen, so every log line carries exact counts that `SeenCounter` keeps, checkpoints and restores.
"""
from __future__ import annotations

import datetime
import json
import math
import time
from pathlib import Path
from typing import Any, Protocol

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from runs.files import METRICS_FILE, SAMPLES_FILE, TRAINER_LOG_FILE
from runs.jsonl import append_jsonl, read_jsonl, write_jsonl
from runs.smoothing import objective_from_metrics
from sft.data.stream import fingerprint


class Reporter(Protocol):
    """What a sweeper hands to training: intermediate values in, a prune decision out. `interval` is the
    training loss on the samples since the previous report, for pruners that pair trials on the shared
    sample stream: (first sample, end sample, mean logged loss, fingerprint of the ids trained so far)."""

    def report(self, value: float, step: int, interval: tuple[int, int, float, str] | None = None) -> None: ...

    def should_prune(self) -> bool: ...


class SeenCounter(TrainerCallback, ExportableState):
    """Samples and tokens consumed, and training seconds, saved in checkpoints (stateful callback)."""

    def __init__(self) -> None:
        self.samples = 0
        self.tokens = 0
        self.elapsed_before = 0.0
        self.step_ids: list[int] = []  # the samples of the optimizer step being built; not checkpointed

    def state(self) -> dict:
        return {"args": {}, "attributes": {"samples": self.samples, "tokens": self.tokens, "elapsed_before": self.elapsed_before}}

    def restore(self, checkpoint: str) -> None:
        """Take the counts saved in a checkpoint's trainer_state.json. Done here rather than by the
        Trainer's restore_callback_states_from_checkpoint, which swaps in a new instance that the
        trainer and the log callback would not see."""
        saved = json.loads((Path(checkpoint) / "trainer_state.json").read_text())["stateful_callbacks"].get(type(self).__name__)
        if saved is None:
            raise ValueError(f"{checkpoint} holds no {type(self).__name__} state: it was not written by this project's train.py")
        for name, value in saved["attributes"].items():
            setattr(self, name, value)


class Outcome:
    """How training ended, set by callbacks and read by the recipe once trainer.train() returns."""

    def __init__(self) -> None:
        self.status = "completed"
        self.reason: str | None = None

    def end(self, status: str, reason: str) -> None:
        if self.status == "completed":
            self.status, self.reason = status, reason


class RunLogCallback(TrainerCallback):
    """metrics.jsonl and trainer_log.jsonl lines, the NaN guard, and the sweeper report."""

    def __init__(
        self,
        run_dir: Path,
        counter: SeenCounter,
        outcome: Outcome,
        smoothing_unit: str,
        time_constant: float,
        epoch_samples: int,
        reporter: Reporter | None = None,
        report_every: int = 1,
    ) -> None:
        self.metrics_path = run_dir / METRICS_FILE
        self.trainer_log_path = run_dir / TRAINER_LOG_FILE
        self.samples_path = run_dir / SAMPLES_FILE
        self.counter = counter
        self.outcome = outcome
        self.unit = smoothing_unit
        self.time_constant = time_constant
        self.epoch_samples = epoch_samples
        self.reporter = reporter
        self.report_every = max(1, int(report_every))
        self.records: list[dict] = []
        self.session_start = time.time()
        self.train_logs = 0
        self.reported_samples = 0  # samples seen at the previous report (or the resumed checkpoint)
        self.first_step_at: float | None = None

    def load_previous(self, up_to_step: int) -> None:
        """Keep the lines of an earlier session up to the checkpoint being resumed, drop the rest."""
        self.records = [r for r in read_log(self.metrics_path) if r["step"] <= up_to_step]
        self.train_logs = sum(1 for r in self.records if "loss" in r)
        self.reported_samples = max((r["samples"] for r in self.records), default=0)
        trainer_log = [r for r in read_log(self.trainer_log_path) if r["current_steps"] <= up_to_step]
        write_jsonl(self.metrics_path, self.records)
        write_jsonl(self.trainer_log_path, trainer_log)
        write_jsonl(self.samples_path, [r for r in read_log(self.samples_path) if r["step"] <= up_to_step])

    def elapsed(self) -> float:
        return self.counter.elapsed_before + time.time() - self.session_start

    def on_train_begin(self, args, state, control, **kwargs):
        self.session_start = time.time()

    def epoch(self) -> float | None:
        """Passes over the training set so far. The Trainer's own count sees the whole budget as one
        epoch (sft.data.stream), so a 2-epoch run would end at epoch 1.0."""
        return self.counter.samples / self.epoch_samples if self.epoch_samples else None

    def on_step_end(self, args, state, control, **kwargs):
        # before the Trainer logs this step: its logs (and the W&B callback's train/epoch) read state.epoch
        state.epoch = self.epoch()
        if self.first_step_at is None:
            self.first_step_at = time.time()
        append_jsonl(self.samples_path, {"step": state.global_step, "ids": self.counter.step_ids})
        self.counter.step_ids = []

    def trained_ids(self) -> list[int]:
        """The ids of every sample trained on, in order (this session's and the resumed ones')."""
        return [i for line in read_log(self.samples_path) for i in line["ids"]]

    def on_save(self, args, state, control, **kwargs):
        self.counter.elapsed_before = self.elapsed()
        self.session_start = time.time()

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" not in logs and "eval_loss" not in logs:
            return
        elapsed = self.elapsed()
        record: dict[str, Any] = {"step": state.global_step, "samples": self.counter.samples, "tokens": self.counter.tokens}
        epoch = round(self.epoch(), 4) if self.epoch_samples else None
        if "loss" in logs:
            record.update(
                loss=logs["loss"],
                lr=logs.get("learning_rate"),
                grad_norm=logs.get("grad_norm"),
                epoch=epoch,
                elapsed=round(elapsed, 3),
                samples_per_s=round(self.counter.samples / elapsed, 3) if elapsed > 0 else None,
                tokens_per_s=round(self.counter.tokens / elapsed, 3) if elapsed > 0 else None,
            )
        else:
            record.update(eval_loss=logs["eval_loss"], epoch=epoch, elapsed=round(elapsed, 3))
        self.records.append(record)
        append_jsonl(self.metrics_path, record)
        append_jsonl(self.trainer_log_path, llamafactory_line(record, state.max_steps, elapsed))
        value = record.get("loss", record.get("eval_loss"))
        if not math.isfinite(value):
            name = "loss" if "loss" in record else "eval_loss"
            self.outcome.end(
                "failed",
                f"{name} became {value} at step {state.global_step} ({self.counter.samples} samples seen): "
                "lower optimizer.lr, raise scheduler.warmup_steps, or tighten optimizer.max_grad_norm",
            )
            control.should_training_stop = True
            return
        if "loss" in record:
            self.train_logs += 1
            self._report(control)

    def _report(self, control) -> None:
        if self.reporter is None or self.train_logs % self.report_every != 0:
            return
        value = objective_from_metrics(self.records, "smoothed_loss", self.unit, self.time_constant)
        self.reporter.report(value, int(self.records[-1][self.unit]), self._interval())
        if self.reporter.should_prune():
            self.outcome.end("pruned", f"pruned by the sweeper at {self.records[-1][self.unit]} {self.unit} (smoothed loss {value:.4f})")
            control.should_training_stop = True


    def _interval(self) -> tuple[int, int, float, str]:
        """The loss logged since the previous report, weighted by the samples each log step covers."""
        start, end = self.reported_samples, self.counter.samples
        logged = [r for r in self.records if "loss" in r and r["samples"] > start]
        edges = [start] + [r["samples"] for r in logged]
        mean = sum(r["loss"] * (edges[i + 1] - edges[i]) for i, r in enumerate(logged)) / max(1, end - start)
        self.reported_samples = end
        return start, end, mean, fingerprint(self.trained_ids())


def llamafactory_line(record: dict, total_steps: int, elapsed: float) -> dict:
    """The same log step in LLaMA-Factory's LogCallback field names (trainer_log.jsonl)."""
    step = record["step"]
    remaining = elapsed / step * (total_steps - step) if step and total_steps else 0.0
    line = {
        "current_steps": step,
        "total_steps": total_steps,
        "loss": record.get("loss"),
        "eval_loss": record.get("eval_loss"),
        "lr": record.get("lr"),
        "epoch": record.get("epoch"),
        "percentage": round(step / total_steps * 100, 2) if total_steps else 100,
        "elapsed_time": str(datetime.timedelta(seconds=int(elapsed))),
        "remaining_time": str(datetime.timedelta(seconds=int(remaining))),
        "throughput": round(record["tokens"] / elapsed, 2) if elapsed > 0 else None,
        "total_tokens": record["tokens"],
    }
    return {key: value for key, value in line.items() if value is not None}


class RichProgressCallback(TrainerCallback):
    """One rich progress bar for the run, with the last loss; replaces the Trainer's tqdm bar."""

    def __init__(self, description: str) -> None:
        self.description = description
        self.progress = None
        self.task = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(self.description, total=state.max_steps, completed=state.global_step, loss="")

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is not None and logs and "loss" in logs:
            self.progress.update(self.task, loss=f"loss {logs['loss']:.4f}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def read_log(path: Path) -> list[dict]:
    """The lines of an earlier session's log; a line cut off by a killed process is skipped."""
    return read_jsonl(path)[0] if path.is_file() else []
