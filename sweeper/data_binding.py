"""A study is bound to the data its trials train on. The first sweep of a study records the data it
composes: the `task` node's settings, the tokenizer (the cutoff drops rows by token count), and for each
dataset a hash of its dataset_info.json entry and of its local files' contents. A later sweep on the same
study whose composed data differs is refused before any trial runs: it would take the old study's trials
as done and rank its own against trials that trained on other samples.

Computed from the config and the files alone, so the sweep process imports no tokenizer and no torch.
result.json's data_fingerprint and split_fingerprint cannot bind a study: they hash row indices (the
samples trained on, the held-out rows), which two data sets of the same size share, and data_fingerprint
differs between trials of one study by design (budget, shuffle).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from runs import attrs
from runs.storage import mask_password
from sweeper.errors import SweepError

# task keys that change no sample: a label, the judge's metric, and the data dir (its files are hashed)
NOT_DATA = ("name", "metric", "dataset_dir")
CHUNK_BYTES = 1 << 20


def composed_data(config: DictConfig) -> dict[str, Any] | None:
    """The data a sweep's base config trains on, as recorded in the study; None for an app whose config
    has no `task` node (no data to bind to)."""
    task = OmegaConf.select(config, "task")
    if task is None:
        return None
    settings = OmegaConf.to_container(task, resolve=True)
    tokenizer = OmegaConf.select(config, "model.tokenizer") or OmegaConf.select(config, "model.name_or_path")
    return {
        "task": {key: value for key, value in sorted(settings.items()) if key not in NOT_DATA},
        "tokenizer": None if tokenizer is None else str(tokenizer),
        "contents": dataset_contents(settings.get("dataset"), Path(str(settings.get("dataset_dir") or "."))),
    }


def dataset_contents(datasets: Any, dataset_dir: Path) -> dict[str, str]:
    """Dataset name -> a hash of its dataset_info.json entry and its local file(s), read in order (a
    file, or a dir's files as training reads them). A hub dataset is known by its entry alone."""
    names = [n.strip() for n in datasets.split(",")] if isinstance(datasets, str) else [str(n) for n in datasets or []]
    try:
        info = json.loads((dataset_dir / "dataset_info.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = {}  # training refuses it with the reason; here it is data like any other
    contents = {}
    for name in names:
        entry = info.get(name) if isinstance(info, dict) else None
        digest = hashlib.sha256(json.dumps(entry, sort_keys=True).encode())
        location = dataset_dir / entry["file_name"] if isinstance(entry, dict) and "file_name" in entry else None
        files = sorted(p for p in location.iterdir() if p.is_file()) if location and location.is_dir() else [location]
        for file in files:
            if file is not None and file.is_file():
                digest.update(file.name.encode())
                with open(file, "rb") as handle:
                    while chunk := handle.read(CHUNK_BYTES):
                        digest.update(chunk)
        contents[name] = digest.hexdigest()[:16]
    return contents


def data_key(data: dict[str, Any]) -> str:
    """A short name for composed data, for a study name that cannot meet another data set's."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:8]


def bind_to_data(study: optuna.Study, data: dict[str, Any] | None, url: str) -> None:
    """Records `data` in a study that has none (a new one, or one made before studies were bound);
    refuses in one line a study recorded with other data, naming what differs and the fix."""
    if data is None:
        return
    recorded = study.user_attrs.get(attrs.DATA)
    if recorded is None:
        study.set_user_attr(attrs.DATA, data)
        return
    changes = differences(recorded, data)
    if changes:
        raise SweepError(
            f"study {study.study_name!r} in {mask_password(url)} was made for other data than this sweep composes: "
            f"{'; '.join(changes)}. Start a study for this data (hydra.sweeper.study_name="
            f"{study.study_name}-{data_key(data)}), or compose the study's data again"
        )


def differences(recorded: dict[str, Any], composed: dict[str, Any]) -> list[str]:
    """What differs, in words: each task setting and the tokenizer by value, each data set's contents."""
    changes = []
    for key in sorted(set(recorded["task"]) | set(composed["task"])):
        before, now = recorded["task"].get(key), composed["task"].get(key)
        if before != now:
            changes.append(f"task.{key} is {before!r} in the study, {now!r} now")
    if recorded["tokenizer"] != composed["tokenizer"]:
        changes.append(f"the tokenizer is {recorded['tokenizer']!r} in the study, {composed['tokenizer']!r} now")
    for name in sorted(set(recorded["contents"]) & set(composed["contents"])):
        if recorded["contents"][name] != composed["contents"][name]:
            changes.append(f"dataset {name!r} changed (its dataset_info.json entry or files: "
                           f"{recorded['contents'][name]} in the study, {composed['contents'][name]} now)")
    return changes
