"""Everything a run can check without a model, before torch or transformers is imported: the config's
values, then the data (dataset_info.json, the dataset names, the files). A mistake is refused in
seconds, and a user without the model still learns first that the data is missing."""
from __future__ import annotations

from typing import Any

from sft.checks import check_config
from sft.formats import data_files, dataset_attrs


def check_before_loading(cfg: Any) -> None:
    """Raises ConfigError / DataError naming the key or file and the fix."""
    check_config(cfg)
    for attr in dataset_attrs(cfg.task):
        if attr.source == "file":
            data_files(attr, cfg.task.dataset_dir)
