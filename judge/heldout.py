"""The rows a study is judged on: the run's own held-out split, and prompts for the side-by-side table.

The split is the one training held out, obtained by the very call the recipe makes (sft/recipe/train.py),
so every adapter of a study is judged on rows it never trained on. A generation prompt is the exact
token ids training used for the prompt part of the last turn (system, history, question and the
assistant header); the reference is that turn's answer.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from judge.errors import JudgeInputError
from sft.data.template import IGNORE_INDEX, get_template, turn_elements


@dataclass
class HeldOut:
    """Held-out rows as training tokenized them, plus the generation prompt and reference of each."""

    input_ids: list[list[int]]
    labels: list[list[int]]
    prompts: list[list[int]]
    references: list[str]
    fingerprint: str
    # how many training rows give each answer (counted for a label task only): the task's label set
    training_answers: Counter[str] = field(default_factory=Counter)


@dataclass
class Prompt:
    """One question for the side-by-side table: its text, its token ids, and a reference when known."""

    text: str
    ids: list[int]
    reference: str | None = None


def run_splits(cfg: DictConfig, tokenizer: Any) -> Any:
    """The run's training and held-out rows (sft.data.prepare.PreparedData; eval is None when the run held none
    out). The same prepare_datasets call as sft/recipe/train.py, so the rows are the ones training left out:
    the split follows task.data_seed (runs trained before it existed split by trainer.seed)."""
    from sft.data.prepare import prepare_datasets

    data_seed = cfg.task.get("data_seed")
    seed = int(cfg.trainer.seed if data_seed is None else data_seed)
    return prepare_datasets(cfg.task, tokenizer, cfg.paths.cache_dir, seed=seed, num_proc=os.cpu_count())


def last_answer_span(labels: list[int]) -> tuple[int, int]:
    """[start, end) of the last trained answer: the final run of labels that are not IGNORE_INDEX."""
    end = len(labels)
    while end > 0 and labels[end - 1] == IGNORE_INDEX:
        end -= 1
    start = end
    while start > 0 and labels[start - 1] != IGNORE_INDEX:
        start -= 1
    return start, end


def held_out(cfg: DictConfig, tokenizer: Any, run_dir: Path, limit: int | None, count_training_answers: bool = False) -> HeldOut:
    """The run's held-out rows (the first `limit` of them) split into prompt ids and reference text; with
    `count_training_answers`, also how often each answer ends a training row."""
    splits = run_splits(cfg, tokenizer)
    split = splits.eval
    if split is None or len(split) == 0:
        raise JudgeInputError(
            f"{run_dir / '.hydra' / 'config.yaml'}: task.val_size={cfg.task.val_size} held no rows out, so there is "
            "nothing unseen to judge on; train with task.val_size=N (a row count or a fraction)"
        )
    if limit:
        split = split.select(range(min(limit, len(split))))
    suffix = get_template(cfg.task.template).format_assistant("")
    input_ids, labels = list(split["input_ids"]), list(split["labels"])
    prompts, references = [], []
    for ids, row_labels in zip(input_ids, labels):
        start, end = last_answer_span(row_labels)
        prompts.append(list(ids[:start]))
        references.append(answer_text(tokenizer, ids[start:end], suffix))
    digest = hashlib.sha256(json.dumps(input_ids).encode()).hexdigest()[:16]
    training = answer_counts(splits.train, tokenizer, suffix) if count_training_answers else Counter()
    return HeldOut(input_ids=input_ids, labels=labels, prompts=prompts, references=references, fingerprint=digest,
                   training_answers=training)


def answer_text(tokenizer: Any, answer_ids: list[int], suffix: str) -> str:
    """An answer's text as a reference: its tokens decoded, without the template's end of turn."""
    return tokenizer.decode(answer_ids, skip_special_tokens=False).removesuffix(suffix)


def answer_counts(split: Any, tokenizer: Any, suffix: str) -> Counter[str]:
    """How many rows of a split end with each answer; each distinct answer is decoded once."""
    spans: Counter[tuple[int, ...]] = Counter()
    for ids, row_labels in zip(split["input_ids"], split["labels"]):
        start, end = last_answer_span(row_labels)
        spans[tuple(ids[start:end])] += 1
    counts: Counter[str] = Counter()
    for answer_ids, count in spans.items():
        counts[answer_text(tokenizer, list(answer_ids), suffix)] += count
    return counts


def encode_prompt(tokenizer: Any, template_name: str, question: str, system: str | None) -> list[int]:
    """A user's question encoded as training encodes a prompt part: each template slot on its own."""
    from sft.data.slot_encoder import SlotEncoder

    slots = turn_elements(get_template(template_name), [{"role": "user", "content": question}], system)[0]
    return [token for ids in SlotEncoder(tokenizer).encode(slots) for token in ids]


def read_prompts(path: Path, tokenizer: Any, cfg: DictConfig) -> list[Prompt]:
    """A jsonl file of {"prompt": ..., "system": optional, "reference": optional}, one object a line."""
    if not path.is_file():
        raise JudgeInputError(f"{path}: no such prompts file; give a jsonl file with one {{\"prompt\": ...}} object a line")
    prompts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise JudgeInputError(f"{path}: line {number} is not valid JSON ({error.msg}); fix or remove that line") from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise JudgeInputError(f"{path}: line {number} needs a \"prompt\" string (optional \"system\", \"reference\"); fix that line")
        system = row.get("system") or cfg.task.system
        ids = encode_prompt(tokenizer, cfg.task.template, row["prompt"], system)
        prompts.append(Prompt(text=row["prompt"], ids=ids, reference=row.get("reference")))
    if not prompts:
        raise JudgeInputError(f"{path}: no prompts in the file; add one {{\"prompt\": ...}} object a line")
    return prompts


def side_by_side_prompts(data: HeldOut, tokenizer: Any, template_name: str, count: int) -> list[Prompt]:
    """The first `count` held-out rows as side-by-side prompts (their last question shown as text)."""
    return [
        Prompt(text=question_text(tokenizer, template_name, ids), ids=ids, reference=reference)
        for ids, reference in zip(data.prompts[:count], data.references[:count])
    ]


def question_text(tokenizer: Any, template_name: str, prompt_ids: list[int]) -> str:
    """The last user message of a prompt, for display: the text inside the template's last user slot."""
    before, after = get_template(template_name).user_slot.split("{{content}}", 1)
    decoded = tokenizer.decode(prompt_ids, skip_special_tokens=False)
    return decoded.rsplit(before, 1)[-1].removesuffix(after)
