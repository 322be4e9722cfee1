"""LLaMA-Factory's `dataset_info.json` entries and its two data formats, alpaca and sharegpt.

Users keep their data dirs as LLaMA-Factory wants them; this module reads the same entries with the
same defaults, and turns each row into (messages, system) or a named reason for dropping it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sft.errors import DataError

FORMATS = ("alpaca", "sharegpt")
ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "system": None, "history": None}
SHAREGPT_COLUMNS = {"messages": "conversations", "system": None}
SHAREGPT_TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}


@dataclass
class DatasetAttr:
    """One dataset_info.json entry, with LLaMA-Factory's defaults filled in."""

    name: str
    source: str  # file | hf_hub | ms_hub
    location: str  # file name (relative to dataset_dir) or hub id
    formatting: str = "alpaca"
    columns: dict[str, str | None] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    subset: str | None = None
    split: str = "train"
    encoding: str | None = None


def load_dataset_info(dataset_dir: str | Path) -> dict[str, Any]:
    path = Path(dataset_dir) / "dataset_info.json"
    if not path.is_file():
        raise DataError(
            f"no dataset_info.json in {dataset_dir}: point task.dataset_dir at a LLaMA-Factory data dir "
            "(one with dataset_info.json), or add one (see data/dataset_info.json for the format)"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path} is not valid JSON ({error}); fix the file") from error


def dataset_attr(name: str, info: dict[str, Any], use_modelscope: bool, formatting: str | None) -> DatasetAttr:
    """Resolve an entry as LLaMA-Factory's `get_dataset_list` does (ModelScope first when asked)."""
    if name not in info:
        known = ", ".join(sorted(info)) or "none"
        raise DataError(
            f"unknown dataset {name!r}: dataset_info.json defines {known}; add an entry for it or fix task.dataset"
        )
    entry = info[name]
    if use_modelscope and "ms_hub_url" in entry:
        source, location = "ms_hub", entry["ms_hub_url"]
    elif "hf_hub_url" in entry:
        source, location = "hf_hub", entry["hf_hub_url"]
    elif "file_name" in entry:
        source, location = "file", entry["file_name"]
    else:
        raise DataError(f"dataset_info.json entry {name!r} has no file_name, hf_hub_url or ms_hub_url")
    chosen_format = formatting or entry.get("formatting", "alpaca")
    if chosen_format not in FORMATS:
        raise DataError(f"dataset {name!r}: formatting {chosen_format!r} is not one of {', '.join(FORMATS)}")
    defaults = ALPACA_COLUMNS if chosen_format == "alpaca" else SHAREGPT_COLUMNS
    columns = {**defaults, **entry.get("columns", {})}
    tags = {**SHAREGPT_TAGS, **entry.get("tags", {})}
    return DatasetAttr(
        name=name,
        source=source,
        location=location,
        formatting=chosen_format,
        columns=columns,
        tags=tags,
        subset=entry.get("subset"),
        split=entry.get("split", "train"),
        encoding=entry.get("encoding"),
    )


def required_columns(attr: DatasetAttr) -> list[str]:
    keys = ("prompt", "response") if attr.formatting == "alpaca" else ("messages",)
    return [attr.columns[key] for key in keys]


Converted = tuple[list[dict[str, str]], str | None]


def convert_row(row: dict[str, Any], attr: DatasetAttr) -> Converted | str:
    """(messages, system) for one row, or the reason it is dropped (LLaMA-Factory drops it too)."""
    if attr.formatting == "alpaca":
        return _convert_alpaca(row, attr.columns)
    return _convert_sharegpt(row, attr.columns, attr.tags)


def _convert_alpaca(row: dict[str, Any], columns: dict[str, str | None]) -> Converted | str:
    messages: list[dict[str, str]] = []
    history_column = columns.get("history")
    history = row.get(history_column) if history_column else None
    if isinstance(history, list):
        for turn in history:
            if not (isinstance(turn, (list, tuple)) and len(turn) == 2 and all(isinstance(t, str) for t in turn)):
                return "history is not a list of [question, answer] string pairs"
            messages += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
    query = [row[c] for c in (columns["prompt"], columns.get("query")) if c and row.get(c)]
    if not all(isinstance(part, str) for part in query):
        return "instruction/input is not text"
    response = row.get(columns["response"])
    if not isinstance(response, str):
        return "missing output"
    messages += [{"role": "user", "content": "\n".join(query)}, {"role": "assistant", "content": response}]
    system_column = columns.get("system")
    return messages, (row.get(system_column) if system_column else None)


def _convert_sharegpt(row: dict[str, Any], columns: dict[str, str | None], tags: dict[str, str]) -> Converted | str:
    raw = row.get(columns["messages"])
    if not isinstance(raw, list):
        return "conversations is not a list"
    role_tag, content_tag = tags["role_tag"], tags["content_tag"]
    system_column = columns.get("system")
    system = row.get(system_column) if system_column else None
    if raw and isinstance(raw[0], dict) and raw[0].get(role_tag) == tags["system_tag"]:
        system, raw = raw[0].get(content_tag), raw[1:]
    expected = (tags["user_tag"], tags["assistant_tag"])
    tool_roles = (tags["observation_tag"], tags["function_tag"])
    messages: list[dict[str, str]] = []
    for index, message in enumerate(raw):
        if isinstance(message, dict) and message.get(role_tag) in tool_roles:
            return "tool-call roles (function_call/observation) are not supported by this project"
        if not isinstance(message, dict) or message.get(role_tag) != expected[index % 2]:
            return "roles out of order (expected user, assistant, user, ...)"
        if not isinstance(message.get(content_tag), str):
            return "a message has no text"
        role = "user" if index % 2 == 0 else "assistant"
        messages.append({"role": role, "content": message[content_tag]})
    if len(messages) == 0 or len(messages) % 2 != 0:
        return "odd number of messages (a conversation must end with an answer)"
    return messages, system
