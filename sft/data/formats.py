"""LLaMA-Factory's `dataset_info.json` entries and its two data formats, alpaca and sharegpt.

Users keep their data dirs as LLaMA-Factory wants them; this module reads the same entries with the
same defaults, and turns each row into (messages, system) or a named reason for dropping it.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sft.lifecycle.errors import ConfigError, DataError

FORMATS = ("alpaca", "sharegpt")
DATA_DIR_ENV = "LLAMAFACTORY_DATA_DIR"  # conf/task/*.yaml read the data dir from it
FILE_TYPES = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".arrow": "arrow"}  # -> datasets builder
EMPTY_PROBE_BYTES = 4096
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
            f"no dataset_info.json in {dataset_dir}: point task.dataset_dir (or {DATA_DIR_ENV}) at a LLaMA-Factory "
            "data dir (one with dataset_info.json), or add one (see data/dataset_info.json for the format)"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path} is not valid JSON ({error}); fix the file") from error


def dataset_attr(
    name: str, info: dict[str, Any], use_modelscope: bool, formatting: str | None, info_path: str | Path = "dataset_info.json"
) -> DatasetAttr:
    """Resolve an entry as LLaMA-Factory's `get_dataset_list` does (ModelScope first when asked)."""
    if name not in info:
        known = ", ".join(sorted(info)) or "none"
        raise DataError(
            f"unknown dataset {name!r}: {info_path} defines {known}; add an entry for it, fix task.dataset, or "
            f"point task.dataset_dir (or {DATA_DIR_ENV}) at the data dir that has it"
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


def dataset_names(dataset: str | list[str]) -> list[str]:
    names = dataset.split(",") if isinstance(dataset, str) else list(dataset)
    names = [name.strip() for name in names if name and name.strip()]
    if not names:
        raise ConfigError("task.dataset is empty: name at least one dataset from dataset_info.json")
    return names


def dataset_attrs(task: Any) -> list[DatasetAttr]:
    """The task's dataset_info.json entries, refused with that file's path when a name is unknown."""
    info = load_dataset_info(task.dataset_dir)
    use_modelscope = os.environ.get("USE_MODELSCOPE_HUB", "0").lower() in ("1", "true")
    info_path = Path(task.dataset_dir) / "dataset_info.json"
    return [dataset_attr(name, info, use_modelscope, task.formatting, info_path) for name in dataset_names(task.dataset)]


def data_files(attr: DatasetAttr, dataset_dir: str | Path) -> list[Path]:
    """The local files of a file-backed dataset, refused with the file named when one is missing, of a
    type `datasets` cannot read, or empty (datasets would fail with a bare StopIteration)."""
    info_path = Path(dataset_dir) / "dataset_info.json"
    path = Path(dataset_dir) / attr.location
    if not path.exists():
        raise DataError(
            f"data file {path} for dataset {attr.name!r} does not exist: put the file there or fix "
            f"\"file_name\" in {info_path}"
        )
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    types = {FILE_TYPES.get(p.suffix.lower()) for p in files}
    if not files or None in types or len(types) != 1:
        raise DataError(f"dataset {attr.name!r}: {path} must hold files of one type among {', '.join(FILE_TYPES)}")
    for file in files:
        with open(file, "rb") as handle:
            if not handle.read(EMPTY_PROBE_BYTES).strip() and file.stat().st_size <= EMPTY_PROBE_BYTES:
                raise DataError(f"data file {file} for dataset {attr.name!r} is empty: fill it or fix \"file_name\" in {info_path}")
        if file.suffix.lower() == ".json" and _holds_one_object(file):
            raise DataError(
                f"data file {file} for dataset {attr.name!r} holds one JSON object, not a list of rows, so it would "
                "train as one row: write the rows as a JSON list ([{...}, {...}]) or one object per line (.jsonl)"
            )
    return files


def _holds_one_object(file: Path) -> bool:
    """Whether a .json file is a single object (datasets reads it as one row) rather than a list of rows or
    JSON lines. Cheap for the usual files: a list starts with "[", and JSON lines have a whole object on
    their first line; only a file that is neither is parsed whole."""
    with open(file, "rb") as handle:
        first_line = handle.readline().strip()
        if not first_line.startswith(b"{"):
            return False
        rest = handle.read(EMPTY_PROBE_BYTES).strip()
    try:
        json.loads(first_line)
        return not rest  # one line holding one object: a single row, as a .json file it is the mistake
    except ValueError:
        pass
    try:
        return isinstance(json.loads(file.read_bytes()), dict)
    except ValueError:
        return False


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
    if response is None:
        return "missing output"
    if not isinstance(response, str):
        return f"output is a {type(response).__name__}, not text"
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
