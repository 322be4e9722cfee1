"""Chat templates as data, and LLaMA-Factory's supervised encoding rules (docs/parity.md).

A template is a few string slots per role. Each slot is encoded on its own, as LLaMA-Factory's
`Template._convert_elements_to_ids` does, so no BPE merge crosses a prompt/answer boundary and our
token ids, labels and so loss values match what LLaMA-Factory users see for the same data.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sft.errors import ConfigError

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


def build_supervised_example(
    turn_ids: Sequence[Sequence[int]], cutoff_len: int
) -> tuple[list[int], list[int], bool]:
    """input_ids, labels and whether anything was cut, from the token ids of each message.

    Pairs (prompt, answer) are taken oldest first with the remaining budget; each part keeps its
    start; prompts are labelled IGNORE_INDEX; every answer is trained (history included).
    """
    input_ids: list[int] = []
    labels: list[int] = []
    truncated = False
    total_length = 0
    for pair_start in range(0, len(turn_ids), 2):
        source_ids, target_ids = turn_ids[pair_start], turn_ids[pair_start + 1]
        if total_length >= cutoff_len:
            truncated = True
            break
        source_len, target_len = infer_seqlen(len(source_ids), len(target_ids), cutoff_len - total_length)
        truncated = truncated or source_len < len(source_ids) or target_len < len(target_ids)
        total_length += source_len + target_len
        input_ids += list(source_ids[:source_len]) + list(target_ids[:target_len])
        labels += [IGNORE_INDEX] * source_len + list(target_ids[:target_len])
    return input_ids, labels, truncated
