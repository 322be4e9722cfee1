"""Chat templates as data, and LLaMA-Factory's supervised encoding rules (docs/parity.md).

A template is a few string slots per role. Each slot is encoded on its own, as LLaMA-Factory's
`Template._convert_elements_to_ids` does, so no BPE merge crosses a prompt/answer boundary and our
token ids, labels and so loss values match what LLaMA-Factory users see for the same data.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sft.lifecycle.errors import ConfigError

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Template:
    """Slots per role; `{{content}}` is the message text, `{{idx}}` the turn index (LLaMA-Factory)."""

    name: str
    system_slot: str
    user_slot: str
    assistant_slot: str
    default_system: str
    stop_word: str

    def format_system(self, system: str) -> str:
        return _fill(self.system_slot, content=system)

    def format_user(self, content: str, turn: int) -> str:
        return _fill(self.user_slot, content=content, idx=str(turn))

    def format_assistant(self, content: str) -> str:
        return _fill(self.assistant_slot, content=content)


def _fill(slot: str, **values: str) -> str:
    """LLaMA-Factory's StringFormatter.apply: each placeholder replaced once, in order, so a literal
    `{{idx}}` inside user content becomes the turn index (a quirk kept for parity)."""
    for name, value in values.items():
        slot = slot.replace("{{" + name + "}}", value, 1)
    return slot


TEMPLATES: dict[str, Template] = {
    "qwen": Template(
        name="qwen",
        system_slot="<|im_start|>system\n{{content}}<|im_end|>\n",
        user_slot="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
        assistant_slot="{{content}}<|im_end|>\n",
        default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
        stop_word="<|im_end|>",
    ),
}


def get_template(name: str) -> Template:
    if name not in TEMPLATES:
        raise ConfigError(
            f"unknown template {name!r}: this project knows {', '.join(sorted(TEMPLATES))}; "
            "set task.template to one of them"
        )
    return TEMPLATES[name]


def turn_elements(template: Template, messages: Sequence[dict], system: str | None) -> list[list[str]]:
    """The strings to encode, one list per message (user, assistant alternating).

    A missing, null or empty system gets the template's default (LLaMA-Factory: `system or default`).
    """
    elements: list[list[str]] = []
    for index, message in enumerate(messages):
        parts: list[str] = []
        if index == 0:
            parts.append(template.format_system(system or template.default_system))
        if message["role"] == "user":
            parts.append(template.format_user(message["content"], index // 2))
        else:
            parts.append(template.format_assistant(message["content"]))
        elements.append(parts)
    return elements


def infer_seqlen(source_len: int, target_len: int, cutoff_len: int) -> tuple[int, int]:
    """LLaMA-Factory's split of a length budget between a prompt (source) and its answer (target)."""
    if target_len * 2 < cutoff_len:
        max_target_len = cutoff_len
    elif source_len * 2 < cutoff_len:
        max_target_len = cutoff_len - source_len
    else:
        max_target_len = int(cutoff_len * (target_len / (source_len + target_len)))
    new_target_len = min(max_target_len, target_len)
    max_source_len = max(cutoff_len - new_target_len, 0)
    new_source_len = min(max_source_len, source_len)
    return new_source_len, new_target_len


def supervised_lengths(turn_lengths: Sequence[int], cutoff_len: int) -> tuple[list[int], bool]:
    """How many leading tokens of each message (prompt, answer, prompt, ...) a supervised example keeps, and
    whether anything was cut.

    Pairs (prompt, answer) are taken oldest first with the remaining budget; each part keeps its start;
    once the budget is spent, the later pairs keep nothing.
    """
    kept: list[int] = []
    truncated = False
    total_length = 0
    for pair_start in range(0, len(turn_lengths), 2):
        source_len, target_len = turn_lengths[pair_start], turn_lengths[pair_start + 1]
        if total_length >= cutoff_len:
            kept += [0] * (len(turn_lengths) - pair_start)
            truncated = True
            break
        new_source_len, new_target_len = infer_seqlen(source_len, target_len, cutoff_len - total_length)
        truncated = truncated or new_source_len < source_len or new_target_len < target_len
        total_length += new_source_len + new_target_len
        kept += (new_source_len, new_target_len)
    return kept, truncated


@dataclass
class SupervisedBatch:
    """Supervised examples end to end: row i is input_ids[offsets[i]:offsets[i + 1]], likewise its labels."""

    input_ids: np.ndarray
    labels: np.ndarray
    offsets: np.ndarray
    truncated: list[bool]
    has_labels: list[bool]


def build_supervised_examples(rows: Sequence[Sequence[list[int]]], cutoff_len: int) -> SupervisedBatch:
    """input_ids and labels of each row from the token ids of its messages (no messages: an empty row).

    Prompts are labelled IGNORE_INDEX and every answer is trained (history included). A batch at once: the
    ids are laid end to end in one list and the labels masked with numpy, not built token by token.
    """
    flat: list[int] = []
    segments: list[int] = []  # kept lengths, prompt and answer alternating, every row's in turn
    offsets = [0]
    truncated_rows: list[bool] = []
    has_labels: list[bool] = []
    for turn_ids in rows:
        kept, truncated = supervised_lengths([len(ids) for ids in turn_ids], cutoff_len)
        for ids, length in zip(turn_ids, kept):
            flat += ids if length == len(ids) else ids[:length]
        segments += kept
        offsets.append(len(flat))
        truncated_rows.append(truncated)
        has_labels.append(any(kept[1::2]))
    input_ids = np.array(flat, dtype=np.int32)
    is_prompt = np.repeat(np.resize(np.array([True, False]), len(segments)), segments)
    labels = np.where(is_prompt, np.int32(IGNORE_INDEX), input_ids)
    return SupervisedBatch(input_ids, labels, np.array(offsets, dtype=np.int32), truncated_rows, has_labels)
