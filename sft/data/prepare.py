"""Load a task's datasets, tokenize them once with the chat template, cache the result, split off eval.

The tokenized set is cached on disk under a key made of everything that changes it (file contents,
tokenizer, template, system prompt, cutoff, max_samples), so every trial of a sweep after the first
loads it in a moment instead of tokenizing again. Rows that cannot be used are counted by reason.
"""
from __future__ import annotations

import gc
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sft.data.build_once import build_once
from sft.data.formats import FILE_TYPES, DatasetAttr, convert_row, data_files, dataset_attrs, required_columns
from sft.data.slot_encoder import SlotEncoder
from sft.data.stream import SAMPLE_ID_COLUMN
from sft.data.template import Template, build_supervised_examples, get_template, turn_elements
from sft.lifecycle.errors import ConfigError, DataError

log = logging.getLogger(__name__)

PREPROCESS_VERSION = 2  # bump when the encoding rules or the cache layout change, so old caches are not reused
SPECIAL_MARKERS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
NO_LABELS = "no trainable label after cutoff"
PROBE_ROWS = 200  # each data set's first rows, on which tiktoken must give the HF tokenizer's ids
LARGE_DATASET_ROWS = 10_000  # from here tokenizing takes seconds: use every core and show a progress bar


@dataclass
class PreparedData:
    train: datasets.Dataset
    eval: datasets.Dataset | None
    counts: dict[str, Any] = field(default_factory=dict)


def prepare_datasets(task: Any, tokenizer: Any, cache_dir: str | Path, seed: int, num_proc: int | None = None) -> PreparedData:
    """Tokenized train (and eval, when task.val_size > 0) sets for a task config node. `seed` is the
    data seed (task.data_seed): it alone fixes the held-out split. Every row gets its index in the
    filtered set as SAMPLE_ID_COLUMN, the id the training stream and the fingerprints use."""
    template = get_template(task.template)
    check_cutoff(tokenizer, template, int(task.cutoff_len))
    attrs = dataset_attrs(task)
    raw_sets = [load_raw(attr, task.dataset_dir, task.max_samples, task.encoding) for attr in attrs]
    tokenizer_json = tokenizer.backend_tokenizer.to_str()  # serialized once: a 150k vocabulary takes ~0.3 s
    key = cache_key(attrs, raw_sets, tokenizer_json, template, task)
    tokenized = cached_tokenize(raw_sets, attrs, tokenizer, tokenizer_json, template, task, Path(cache_dir) / "tokenized" / key, num_proc)
    tokenized, counts = count_and_filter(tokenized, int(task.cutoff_len), bool(task.keep_rows_without_labels))
    tokenized = tokenized.add_column(SAMPLE_ID_COLUMN, list(range(len(tokenized))))
    train, evaluation = split_eval(tokenized, task.val_size, seed)
    counts = {**counts, "train_rows": len(train), "eval_rows": len(evaluation) if evaluation is not None else 0}
    return PreparedData(train=train, eval=evaluation, counts=counts)


def check_cutoff(tokenizer: Any, template: Template, cutoff_len: int) -> None:
    """Refuse a cutoff that cannot hold the default system prompt and an empty question's header."""
    header = sum(len(tokenizer.encode(part, add_special_tokens=False)) for part in turn_elements(template, [{"role": "user", "content": ""}], None)[0])
    if cutoff_len <= header:
        raise ConfigError(
            f"task.cutoff_len={cutoff_len} is too small: the {template.name} template's system prompt and "
            f"question header alone take {header} tokens, so no answer token could be trained; use at least {header + 32}"
        )


def load_raw(attr: DatasetAttr, dataset_dir: str | Path, max_samples: int | None, encoding: str | None) -> datasets.Dataset:
    """One dataset as LLaMA-Factory loads it: local file(s), Hugging Face hub, or ModelScope."""
    if attr.source == "file":
        dataset = _load_file(attr, Path(dataset_dir), encoding or attr.encoding)
    elif attr.source == "ms_hub":
        try:
            from modelscope import MsDataset
        except ImportError as error:
            raise DataError(f"dataset {attr.name!r} is on ModelScope (USE_MODELSCOPE_HUB=1): pip install -e \".[modelscope]\"") from error
        dataset = MsDataset.load(attr.location, subset_name=attr.subset, split=attr.split).to_hf_dataset()
    else:
        dataset = datasets.load_dataset(attr.location, name=attr.subset, split=attr.split)
    missing = [column for column in required_columns(attr) if column not in dataset.column_names]
    if missing:
        raise DataError(
            f"dataset {attr.name!r} has no column(s) {missing} (it has {dataset.column_names}); "
            f"rename them in the data or map them with \"columns\" in its dataset_info.json entry"
        )
    if max_samples:
        dataset = dataset.select(range(min(int(max_samples), len(dataset))))
    return dataset


def _load_file(attr: DatasetAttr, dataset_dir: Path, encoding: str | None) -> datasets.Dataset:
    files = data_files(attr, dataset_dir)
    path = dataset_dir / attr.location
    builder = FILE_TYPES[files[0].suffix.lower()]
    kwargs: dict[str, Any] = {}
    if encoding and builder in ("csv", "json"):
        kwargs["encoding"] = encoding
    try:
        return datasets.load_dataset(builder, data_files=[str(p) for p in files], split="train", **kwargs)
    except Exception as error:  # datasets raises many types for a malformed file
        raise DataError(
            f"could not read {path} as {builder} ({type(error).__name__}: {error}); check the file "
            "(and task.encoding, e.g. gb18030 for the public Chinese medical CSVs)"
        ) from error


def cache_key(attrs: list[DatasetAttr], raw_sets: list[datasets.Dataset], tokenizer_json: str, template: Template, task: Any) -> str:
    digest = hashlib.sha256()
    for attr, dataset in zip(attrs, raw_sets):
        digest.update(json.dumps(attr.__dict__, sort_keys=True, default=str).encode())
        digest.update(dataset._fingerprint.encode())
    digest.update(hashlib.sha256(tokenizer_json.encode()).digest())
    settings = [PREPROCESS_VERSION, template, task.system, int(task.cutoff_len), task.max_samples]
    digest.update(json.dumps(settings, default=str).encode())
    return digest.hexdigest()[:24]


def cached_tokenize(
    raw_sets: list[datasets.Dataset],
    attrs: list[DatasetAttr],
    tokenizer: Any,
    tokenizer_json: str,
    template: Template,
    task: Any,
    cache_path: Path,
    num_proc: int | None,
) -> datasets.Dataset:
    """The tokenized set from `cache_path`, tokenized and saved there first if absent. Parallel trials of a
    sweep asking for the same set wait for one of them to tokenize it rather than all tokenizing at once."""
    def tokenize_into(staging: Path) -> None:
        names = ", ".join(f"{attr.name} ({len(raw)} rows)" for attr, raw in zip(attrs, raw_sets))
        log.info("tokenizing %s once, into %s; later runs load it from there", names, cache_path)
        with old_objects_frozen():
            tokenize_sets(raw_sets, attrs, tokenizer, tokenizer_json, template, task, staging, cache_path.name, num_proc)

    if cache_path.is_dir():
        log.info("tokenized data from cache %s", cache_path)
    build_once(cache_path, tokenize_into)
    shards = [datasets.Dataset.from_file(str(path)) for path in sorted(cache_path.glob("part*.arrow"))]
    return datasets.concatenate_datasets(shards) if len(shards) > 1 else shards[0]


def tokenize_sets(
    raw_sets: list[datasets.Dataset],
    attrs: list[DatasetAttr],
    tokenizer: Any,
    tokenizer_json: str,
    template: Template,
    task: Any,
    out_dir: Path,
    fingerprint: str,
    num_proc: int | None,
) -> None:
    """Tokenize each data set into `out_dir` as Arrow files (part000.arrow, or part000_00000_of_00002.arrow
    and so on from several workers), whose names sort in row order. datasets' map writes them there
    directly: by default it writes them beside the raw data's Arrow cache, where they would stay, and
    saving the result would copy them here."""
    probe_rows = [raw[:PROBE_ROWS] for raw in raw_sets]
    probe_texts = [text for attr, rows in zip(attrs, probe_rows) for text in batch_slots(rows, attr, template, task.system)[2]]
    encoder = SlotEncoder(tokenizer, probe_texts, tokenizer_json)
    for index, (attr, raw) in enumerate(zip(attrs, raw_sets)):
        large = len(raw) >= LARGE_DATASET_ROWS
        with progress_bars(large):
            raw.map(
                tokenize_batch,
                batched=True,
                batch_size=1000,
                num_proc=num_proc if num_proc and num_proc > 1 and large else None,
                remove_columns=raw.column_names,
                fn_kwargs={"attr": attr, "encoder": encoder, "template": template, "system": task.system, "cutoff_len": int(task.cutoff_len)},
                cache_file_name=str(out_dir / f"part{index:03d}.arrow"),
                desc=f"tokenizing {attr.name}",
                new_fingerprint=f"{fingerprint}-{attr.name}",
            )


@contextmanager
def old_objects_frozen() -> Iterator[None]:
    """The cyclic garbage collector leaves the objects that exist now (the tokenizer, the loaded modules) out
    of its full collections while a data set is tokenized, here and in the workers forked from here.
    Reading the tokenizer's vocabulary and tokenizing rows allocate many containers, so full collections
    come often, and each walked all those objects again: a third of the time to set tiktoken up, a fifth
    of the workers' time, and in both workers at once (the rows/s dips every ~50k rows). They rejoin the
    collections afterwards, so garbage among them is only collected late (a process that froze objects
    itself is left as it was)."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextmanager
def progress_bars(show: bool) -> Iterator[None]:
    """datasets' progress bars on for a step long enough to watch, off otherwise (a sweep's small
    trials would print one bar each), then back as they were."""
    was_disabled = datasets.utils.are_progress_bars_disabled()
    (datasets.enable_progress_bars if show else datasets.disable_progress_bars)()
    try:
        yield
    finally:
        (datasets.disable_progress_bars if was_disabled else datasets.enable_progress_bars)()


def batch_slots(batch: dict[str, list], attr: DatasetAttr, template: Template, system: str | None) -> tuple[list[Any], list[list[int]], list[str]]:
    """A batch's rows converted to messages (or a drop reason), how many slots each message has, and the
    slot strings to encode, in order."""
    rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
    converted = [convert_row(row, attr) for row in rows]
    slots: list[str] = []
    layout: list[list[int]] = []
    for item in converted:
        if isinstance(item, str):
            layout.append([])
            continue
        messages, row_system = item
        elements = turn_elements(template, messages, row_system or system)
        layout.append([len(parts) for parts in elements])
        slots += [part for parts in elements for part in parts]
    return converted, layout, slots


def tokenize_batch(batch: dict[str, list], attr: DatasetAttr, encoder: SlotEncoder, template: Template, system: str | None, cutoff_len: int) -> pa.Table:
    """Convert, encode (all slots of the batch in one call) and mask a batch of rows. Returned as an Arrow
    table, which datasets writes as it is: a dict of lists of lists it would convert and type-check value
    by value, at more cost than the masking."""
    converted, layout, slots = batch_slots(batch, attr, template, system)
    encoded = encoder.encode(slots)
    rows: list[list[list[int]]] = []
    cursor = 0
    for counts in layout:
        turn_ids = []
        for count in counts:
            turn_ids.append(encoded[cursor] if count == 1 else list(chain.from_iterable(encoded[cursor : cursor + count])))
            cursor += count
        rows.append(turn_ids)
    examples = build_supervised_examples(rows, cutoff_len)
    return pa.table({
        "input_ids": pa.ListArray.from_arrays(examples.offsets, examples.input_ids),
        "labels": pa.ListArray.from_arrays(examples.offsets, examples.labels),
        "drop_reason": [item if isinstance(item, str) else "" if has_labels else NO_LABELS for item, has_labels in zip(converted, examples.has_labels)],
        "truncated": examples.truncated,
        "special_in_text": [not isinstance(item, str) and any(marker in m["content"] for m in item[0] for marker in SPECIAL_MARKERS) for item in converted],
    })


def count_and_filter(tokenized: datasets.Dataset, cutoff_len: int, keep_rows_without_labels: bool) -> tuple[datasets.Dataset, dict[str, Any]]:
    """Drop unusable rows, and say how many and why (never silently).

    A row whose answer was cut away entirely trains on nothing; LLaMA-Factory keeps it, and a batch
    made only of such rows gives a NaN loss. We drop them unless task.keep_rows_without_labels.
    Counting reads the Arrow columns directly: a cached 436k-row set is counted in well under a second.
    """
    reasons_column = tokenized.data.column("drop_reason")
    all_reasons = Counter({item["values"]: item["counts"] for item in pc.value_counts(reasons_column).to_pylist() if item["values"]})
    rows_without_labels = all_reasons.get(NO_LABELS, 0)
    if keep_rows_without_labels:
        all_reasons.pop(NO_LABELS, None)
    reasons = all_reasons
    counts: dict[str, Any] = {
        "rows_read": len(tokenized),
        "dropped_rows": sum(reasons.values()),
        "dropped": dict(reasons),
        "rows_without_labels": rows_without_labels,
        "truncated_rows": int(pc.sum(tokenized.data.column("truncated")).as_py() or 0),
        "rows_with_special_tokens_in_text": int(pc.sum(tokenized.data.column("special_in_text")).as_py() or 0),
    }
    for reason, number in reasons.items():
        log.warning("dropped %d row(s): %s", number, reason)
    if counts["rows_with_special_tokens_in_text"]:
        log.warning(
            "%d row(s) contain chat-template markers such as <|im_end|> in their text; they are encoded as "
            "special tokens (as LLaMA-Factory does) and can break the turn structure",
            counts["rows_with_special_tokens_in_text"],
        )
    if rows_without_labels and keep_rows_without_labels:
        log.warning("%d row(s) have no trainable label after cutoff and are kept (task.keep_rows_without_labels)", rows_without_labels)
    usable = len(tokenized) - counts["dropped_rows"] - (rows_without_labels if keep_rows_without_labels else 0)
    if usable == 0:
        hint = f"task.cutoff_len={cutoff_len} leaves no answer token in {rows_without_labels} row(s): raise it" if rows_without_labels else "fix the rows"
        raise DataError(f"no usable training rows ({dict(all_reasons) or {NO_LABELS: rows_without_labels}}); {hint}")
    if reasons:
        keep = pc.invert(pc.is_in(reasons_column, value_set=pa.array(list(reasons))))
        tokenized = tokenized.select(np.flatnonzero(keep.to_numpy(zero_copy_only=False)))
    return tokenized.remove_columns(["drop_reason", "truncated", "special_in_text"]), counts


def split_eval(tokenized: datasets.Dataset, val_size: float | int, seed: int) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """Hold out val_size rows (a count >= 1) or a fraction (< 1), as LLaMA-Factory's split_dataset."""
    if not val_size:
        return tokenized, None
    size = int(val_size) if val_size >= 1 else float(val_size)
    if (isinstance(size, int) and size >= len(tokenized)) or (isinstance(size, float) and not 0 < size < 1):
        raise ConfigError(f"task.val_size={val_size} leaves no training rows out of {len(tokenized)}; lower it")
    split = tokenized.train_test_split(test_size=size, seed=seed)
    return split["train"], split["test"]
