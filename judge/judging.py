"""Judge the base model and each adapter on the same held-out rows, then write each run's eval.json.

Per model: the token-weighted eval loss and its perplexity, greedy answers to every held-out prompt
scored by the task's metric, and greedy answers to the side-by-side prompts.
"""
from __future__ import annotations

import datetime
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from judge.heldout import HeldOut, Prompt
from judge.metrics import PRIMARY, perplexity, score
from judge.models import AdapterSet, eval_loss, generate
from judge.selection import Candidate
from runs.evaluation import ADAPTER_KEY, BASE_KEY, MAJORITY_KEY, PRIMARY_KEY
from runs.files import EVAL_FILE

BASE_NAME = "base"


@dataclass
class Settings:
    metric: str
    batch_size: int
    max_new_tokens: int
    device: str = "cpu"
    dtype: str = "float32"


@dataclass
class ModelResult:
    """One row of the comparison: the base model (candidate None) or one adapter."""

    name: str
    candidate: Candidate | None
    metrics: dict[str, Any] = field(default_factory=dict)
    answers: list[str] = field(default_factory=list)
    side_answers: list[str] = field(default_factory=list)


@contextmanager
def progress_bar(total_models: int) -> Iterator[Any]:
    """A bar over models and one over the current model's rows (on stderr, so stdout stays the table)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as progress:
        progress.models = progress.add_task("models", total=total_models)
        yield progress


def judge_all(adapters: AdapterSet, candidates: list[Candidate], data: HeldOut, side: list[Prompt], tokenizer: Any, settings: Settings) -> list[ModelResult]:
    """The base model first, then every adapter, each on the same rows."""
    results = [ModelResult(BASE_NAME, None)] + [ModelResult(candidate.name, candidate) for candidate in candidates]
    rows = len(data.input_ids)
    with progress_bar(len(results)) as progress:
        for result in results:
            task = progress.add_task(f"{result.name}: loss, answers", total=2 * rows + len(side))

            def advance(count: int, task: int = task) -> None:
                progress.advance(task, count)

            with adapters.active(result.candidate and result.name) as model:
                loss_sum, tokens = eval_loss(model, data.input_ids, data.labels, tokenizer.pad_token_id, settings.batch_size, advance)
                result.answers = generate(model, data.prompts, tokenizer, settings.batch_size, settings.max_new_tokens, advance)
                result.side_answers = generate(model, [p.ids for p in side], tokenizer, settings.batch_size, settings.max_new_tokens, advance)
            loss = loss_sum / tokens
            result.metrics = {"eval_loss": loss, "perplexity": perplexity(loss), "tokens": tokens,
                              **score(settings.metric, result.answers, data.references, list(data.training_answers))}
            progress.remove_task(task)
            progress.advance(progress.models)
    return results


def majority_result(data: HeldOut) -> ModelResult | None:
    """Always answering the commonest training label, scored like a model: the floor an adapter of a
    label task has to beat. None where the training answers were not counted (other tasks)."""
    if not data.training_answers:
        return None
    label = data.training_answers.most_common(1)[0][0]
    answers = [label] * len(data.references)
    metrics = score("label", answers, data.references, list(data.training_answers))
    return ModelResult(f"always {label!r}", None, metrics={"answer": label, **metrics}, answers=answers)


def eval_document(result: ModelResult, base: ModelResult, data: HeldOut, settings: Settings,
                  majority: ModelResult | None = None) -> dict[str, Any]:
    """The eval.json of one adapter (layout in runs/evaluation.py)."""
    name, direction = PRIMARY[settings.metric]
    return {
        "metric": settings.metric,
        PRIMARY_KEY: {"name": name, "direction": direction},
        "split": {"rows": len(data.input_ids), "fingerprint": data.fingerprint},
        ADAPTER_KEY: {"name": result.name, **result.metrics},
        BASE_KEY: {"name": base.name, **base.metrics},
        **({MAJORITY_KEY: {"name": majority.name, **majority.metrics}} if majority else {}),
        "generation": {"greedy": True, "max_new_tokens": settings.max_new_tokens, "batch_size": settings.batch_size,
                       "dtype": settings.dtype, "device": settings.device},
        "evaluated_at": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def write_eval_files(results: list[ModelResult], data: HeldOut, settings: Settings, majority: ModelResult | None) -> list[Path]:
    base = results[0]
    written = []
    for result in results[1:]:
        path = result.candidate.run_dir / EVAL_FILE
        temporary = path.with_suffix(".json.tmp")
        document = eval_document(result, base, data, settings, majority)
        temporary.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str))
        os.replace(temporary, path)
        written.append(path)
    return written


ANSWERS_FILE = "answers.jsonl"


def write_answers(results: list[ModelResult], data: HeldOut, tokenizer: Any, template_name: str, out_dir: Path) -> Path:
    """Every held-out row with its reference and each model's answer, one JSON object a line: the
    generations the metrics were computed from, for reading or re-scoring."""
    from judge.heldout import question_text

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ANSWERS_FILE
    with open(path, "w", encoding="utf-8") as handle:
        for index, (prompt, reference) in enumerate(zip(data.prompts, data.references)):
            row = {"prompt": question_text(tokenizer, template_name, prompt), "reference": reference,
                   **{result.name: result.answers[index] for result in results}}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
