"""LLaMA-Factory 0.9.5's own data preparation, timed: run with the python of its venv (bench.prep does,
with bench.vs_llamafactory's venv), never imported by the project.

    LF_PYTHON bench/llamafactory_prep.py CONFIG.json RESULT.json

CONFIG.json holds LLaMA-Factory training arguments (dataset, dataset_dir, template, cutoff_len,
preprocessing_num_workers, model_name_or_path = a tokenizer dir, ...). The time runs from the start of
`get_dataset` (reading the JSON file, converting and tokenizing the rows, as `llamafactory-cli train`
does before training) to its end; parsing the arguments and loading the tokenizer come before it.
RESULT.json gets the seconds and, per training row in order, a short hash of its input_ids
(ids_digest), so that bench.prep can tell whether both sides gave the same ids.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time


def ids_digest(ids: list[int]) -> str:
    """A short hash of one row's ids; bench.prep hashes its own rows with this same function."""
    return hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:16]


def main(config_path: str, result_path: str) -> None:
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    model_args, data_args, training_args, _, _ = get_train_args(config)
    tokenizer_module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
    started = time.perf_counter()
    dataset_module = get_dataset(template, model_args, data_args, training_args, stage="sft", **tokenizer_module)
    seconds = time.perf_counter() - started
    digests = [ids_digest(ids) for ids in dataset_module["train_dataset"]["input_ids"]]
    with open(result_path, "w", encoding="utf-8") as handle:
        json.dump({"seconds": seconds, "digests": digests}, handle)


if __name__ == "__main__":
    main(*sys.argv[1:3])
