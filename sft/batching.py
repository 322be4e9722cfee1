"""How a run's samples become batches: padded (LLaMA-Factory's default), padding-free (the samples of
a batch end to end in one row, no pad token computed, each sample attending only to itself), or packed
(LLaMA-Factory's `packing`: rows of several samples up to cutoff_len, also kept apart).

Padding-free is exact (same loss as padded, every sample's logits as if run alone; tests/test_collate.py)
so it is on by default; it needs an attention that reads the sample boundaries, chosen here. With LoRA
dropout, on a CPU, its batches also carry the padded layout, so that the dropout draws the padded path's
masks (sft.lora_dropout): padding-free then trains the padded path's model. Not on a GPU, whose fused
dropout kernel draws otherwise, nor with packing, which is another batch altogether.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import datasets

from sft.attention import PADDING_FREE_CHOICES, padding_free_attention
from sft.collate import PaddedCollator, PaddingFreeCollator, pack_examples
from sft.errors import ConfigError
from sft.stream import SAMPLE_ID_COLUMN


@dataclass
class Batching:
    collator: Any
    train: datasets.Dataset
    attn_implementation: str  # what the model is loaded with ("auto" = transformers' choice)
    samples_per_row: float  # > 1 with packing
    padded_layout_dropout: bool = False  # the collator adds the padded layout for sft.lora_dropout


def batching_for(trainer_cfg: Any, attn_implementation: str, pad_token_id: int, train: datasets.Dataset, cutoff_len: int,
                 lora_dropout: float, on_cuda: bool) -> Batching:
    packing = bool(trainer_cfg.packing)
    if not (packing or bool(trainer_cfg.padding_free)):
        return Batching(PaddedCollator(pad_token_id), train, attn_implementation, 1.0)
    if attn_implementation not in PADDING_FREE_CHOICES:
        raise ConfigError(
            f"model.attn_implementation={attn_implementation} cannot keep the samples of a padding-free or "
            f"packed batch apart; use one of {', '.join(PADDING_FREE_CHOICES)} or set trainer.padding_free=false "
            "and trainer.packing=false"
        )
    attention = padding_free_attention(attn_implementation)
    if not packing:
        layout_dropout = lora_dropout > 0 and not on_cuda
        collator = PaddingFreeCollator(dense_mask=attention == "sdpa", padded_layout=layout_dropout)
        return Batching(collator, train, attention, 1.0, layout_dropout)
    collator = PaddingFreeCollator(dense_mask=attention == "sdpa")
    rows = pack_examples([{"input_ids": r["input_ids"], "labels": r["labels"], SAMPLE_ID_COLUMN: r[SAMPLE_ID_COLUMN]} for r in train], cutoff_len)
    return Batching(collator, datasets.Dataset.from_list(rows), attention, len(train) / len(rows))
