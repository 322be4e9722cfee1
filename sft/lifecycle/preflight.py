"""Everything a run can check without a model, before torch or transformers is imported: the config
against its schema (runs.schema), the LoRA rank against the model's width where the model's config.json
is at hand, then the data (dataset_info.json, the dataset names, the files). A mistake is refused in
seconds, and a user without the model still learns first that the data is missing."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runs.schema import check_config, check_lora_rank
from sft.data.formats import data_files, dataset_attrs


def check_before_loading(cfg: Any) -> None:
    """Raises ConfigError / DataError naming the key or file and the fix."""
    check_config(cfg)
    hidden_size = known_hidden_size(cfg.model.name_or_path, cfg.model.revision)
    if hidden_size is not None:
        check_lora_rank(cfg.lora.rank, hidden_size, cfg.model.name_or_path)
    for attr in dataset_attrs(cfg.task):
        if attr.source == "file":
            data_files(attr, cfg.task.dataset_dir)


def known_hidden_size(name_or_path: str, revision: str | None) -> int | None:
    """The model's width from its config.json, without loading it: the tiny model's, a local dir's, or a hub
    model's already in the local Hugging Face cache; None when it is not at hand (training checks it once
    the model is loaded)."""
    if name_or_path == "builtin:tiny-qwen2":
        from sft.model.tiny_model import HIDDEN_SIZE

        return HIDDEN_SIZE
    if Path(name_or_path, "config.json").is_file():
        config_file: Any = Path(name_or_path, "config.json")
    elif name_or_path.startswith("builtin:") or Path(name_or_path).exists():
        return None
    else:
        from huggingface_hub import try_to_load_from_cache

        try:
            config_file = try_to_load_from_cache(name_or_path, "config.json", revision=revision)
        except ValueError:  # not a hub id either: loading the model says what it is
            return None
    if not isinstance(config_file, (str, Path)):
        return None
    try:
        hidden_size = json.loads(Path(config_file).read_text(encoding="utf-8")).get("hidden_size")
    except (OSError, ValueError):
        return None
    return hidden_size if isinstance(hidden_size, int) else None
