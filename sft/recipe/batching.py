"""How a run's samples become batches: padded (LLaMA-Factory's default), padding-free (the samples of
a batch end to end in one row, no pad token computed, each sample attending only to itself), or packed
(LLaMA-Factory's `packing`: rows of several samples up to cutoff_len, also kept apart).

Padding-free is exact (same loss as padded, every sample's logits as if run alone; tests/test_collate.py)
so it is on by default; it needs an attention that reads the sample boundaries, chosen here. With LoRA
dropout, on a CPU, its batches also carry the padded layout, so that the dropout draws the padded path's
masks (sft.model.lora_dropout): padding-free then trains the padded path's model. Not on a GPU, whose fused
dropout kernel draws otherwise, nor with packing, which is another batch altogether.

On a GPU, padding-free also merges an optimizer step's micro-batches into one forward pass when their
tokens fit what one padded micro-batch may hold (`micro_batches`): short samples leave a forward pass
bound by its fixed cost (kernel launches, per layer and LoRA module, whatever the tokens), and with the
Trainer's loss over the step's label tokens (num_items_in_batch) the step's gradient is the same sum.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import pyarrow.compute as pc

from sft.data.stream import SAMPLE_ID_COLUMN
from sft.lifecycle.errors import ConfigError
from sft.model.attention import PADDING_FREE_CHOICES, padding_free_attention
from sft.recipe.collate import PaddedCollator, PaddingFreeCollator, pack_examples

log = logging.getLogger(__name__)


@dataclass
class Batching:
    collator: Any
    train: datasets.Dataset
    attn_implementation: str  # what the model is loaded with ("auto" = transformers' choice)
    samples_per_row: float  # > 1 with packing
    padded_layout_dropout: bool = False  # the collator adds the padded layout for sft.model.lora_dropout


def batching_for(trainer_cfg: Any, attn_implementation: str, pad_token_id: int, train: datasets.Dataset, cutoff_len: int,
                 lora_dropout: float, on_cuda: bool, compiled: bool = False) -> Batching:
    """compiled: the decoder layers are compiled (trainer.compile). Padding-free then keeps plain LoRA dropout,
    whose masks do not follow the padded layout: the layout changes every batch, and reading it inside a
    compiled layer would recompile the layer every batch."""
    packing = bool(trainer_cfg.packing)
    if not (packing or bool(trainer_cfg.padding_free)):
        return Batching(PaddedCollator(pad_token_id), train, attn_implementation, 1.0)
    if attn_implementation not in PADDING_FREE_CHOICES:
        raise ConfigError(
            f"model.attn_implementation={attn_implementation} cannot keep the samples of a padding-free or "
            f"packed batch apart; use one of {', '.join(PADDING_FREE_CHOICES)} or set trainer.padding_free=false "
            "and trainer.packing=false"
        )
    attention = padding_free_attention(attn_implementation, "cuda" if on_cuda else "cpu", compiled)
    masks = {"dense_mask": attention == "sdpa", "block_mask": attention == "flex_attention"}
    if not packing:
        layout_dropout = lora_dropout > 0 and not on_cuda and not compiled
        if lora_dropout > 0 and not on_cuda and compiled:
            log.info("padding-free with trainer.compile: plain LoRA dropout (the same distribution as the padded path's, other masks)")
        collator = PaddingFreeCollator(**masks, padded_layout=layout_dropout)
        return Batching(collator, train, attention, 1.0, layout_dropout)
    collator = PaddingFreeCollator(**masks)
    rows = pack_examples([{"input_ids": r["input_ids"], "labels": r["labels"], SAMPLE_ID_COLUMN: r[SAMPLE_ID_COLUMN]} for r in train], cutoff_len)
    return Batching(collator, datasets.Dataset.from_list(rows), attention, len(train) / len(rows))


@dataclass
class MicroBatches:
    """One optimizer step on this device: `count` forward passes of `size` samples each (the Trainer's
    per_device_train_batch_size and gradient_accumulation_steps)."""

    size: int
    count: int


def micro_batches(trainer_cfg: Any, batching: Batching, order: Sequence[int], cutoff_len: int, on_cuda: bool) -> MicroBatches:
    """The step's micro-batches as configured, or merged into one forward pass (trainer.merge_micro_batches:
    auto merges on a GPU). Only padding-free batches merge (a padded or packed micro-batch's memory grows
    with the samples it holds times cutoff_len), only with an attention that reads the sample boundaries
    (the dense sdpa mask grows with the square of the row), and only when every merged step of the run's
    stream `order` holds at most per_device_batch_size x cutoff_len tokens: what one padded or packed
    micro-batch may hold, so merging never asks for more memory than the settings already allow."""
    size, count = int(trainer_cfg.per_device_batch_size), int(trainer_cfg.gradient_accumulation_steps)
    configured = MicroBatches(size, count)
    setting = trainer_cfg.merge_micro_batches
    wanted = setting is True or (setting == "auto" and on_cuda)
    padding_free = isinstance(batching.collator, PaddingFreeCollator) and batching.samples_per_row == 1.0
    if not (wanted and padding_free and count > 1) or batching.attn_implementation == "sdpa":
        return configured
    merged = size * count
    most = most_tokens_per_batch(batching.train, order, merged)
    limit = size * cutoff_len
    if most > limit:
        log.info("padding-free: keeping %d micro-batches of %d a step: one step of this run's stream holds %d tokens, more than "
                 "one micro-batch may hold (per_device_batch_size x cutoff_len = %d)", count, size, most, limit)
        return configured
    log.info("padding-free: a step's %d micro-batches of %d run as one forward pass of %d samples (at most %d tokens, within "
             "per_device_batch_size x cutoff_len = %d); trainer.merge_micro_batches=false keeps them apart", count, size, merged, most, limit)
    return MicroBatches(merged, 1)


def most_tokens_per_batch(train: datasets.Dataset, order: Sequence[int], batch_size: int) -> int:
    """The most tokens any batch holds when `order` (row indices) is cut into consecutive batches of batch_size."""
    lengths = pc.list_value_length(train.data.column("input_ids")).to_numpy()  # per row of the Arrow table, read in place
    # a split, selected or shuffled set maps its rows onto that table (datasets keeps the mapping private;
    # reading the column through it instead copies every id, seconds on a large set)
    mapping = train._indices
    rows = lengths if mapping is None else lengths[mapping.column(0).to_numpy()]
    in_order = rows[np.asarray(order, dtype=np.int64)]
    return int(np.add.reduceat(in_order, np.arange(0, len(in_order), batch_size)).max()) if len(in_order) else 0
