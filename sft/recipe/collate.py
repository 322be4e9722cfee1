"""Turn tokenized examples ({"input_ids", "labels"}, labels -100 on prompt tokens, not shifted) into
model batches.

PaddedCollator is LLaMA-Factory's default path: right padding to the longest row of the batch.
PaddingFreeCollator computes the same samples without pads; pack_examples is LLaMA-Factory's packing.
Both collators' batches also say how many samples and non-pad tokens they hold, as ints, and where the loss
reads a logit (label_targets), for SFTTrainer: everything a training step needs that depends on the batch's
content is worked out here, on the CPU, so that the step never waits for the GPU to read a tensor back.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Sequence

import torch
from transformers import DataCollatorWithFlattening

from sft.data.stream import PACKED_IDS_COLUMN, SAMPLE_ID_COLUMN, SAMPLE_IDS_KEY
from sft.model.attention import DocumentMask

IGNORE_INDEX = -100  # the label torch's cross_entropy skips (its default ignore_index)
# The batch's samples and non-pad tokens as Python ints, for counting what training saw without reading a
# tensor (the batch may already be on a GPU, where that read waits for the device every micro-batch).
SAMPLE_COUNT_KEY = "sample_count"
TOKEN_COUNT_KEY = "token_count"
PADDED_LAYOUT_KEY = "padded_layout"  # a padding-free batch's PaddedLayout, for sft.model.lora_dropout
TRAINER_KEYS = (SAMPLE_COUNT_KEY, TOKEN_COUNT_KEY, PADDED_LAYOUT_KEY, SAMPLE_IDS_KEY)  # for SFTTrainer, not the model
# Where the loss reads a logit (label_targets): SFTTrainer's compute_loss turns them into the model's logits_to_keep
# and shift_labels, or drops them when something else computes the loss.
LABEL_POSITIONS_KEY = "label_positions"
NEXT_LABELS_KEY = "next_labels"
LOSS_KEYS = (LABEL_POSITIONS_KEY, NEXT_LABELS_KEY)
PAD_TO_MULTIPLE_OF = 8

Example = dict[str, Any]


def check_examples(examples: Sequence[Example]) -> None:
    """Refuse what would silently train on nothing or on garbage: an empty batch, mismatched rows."""
    if len(examples) == 0:
        raise ValueError("empty batch: the collator got no examples; check that the dataset is not empty after filtering")
    for index, example in enumerate(examples):
        if "input_ids" not in example or "labels" not in example:
            raise ValueError(f"example {index} has keys {sorted(example)}; the collator needs 'input_ids' and 'labels' (tokenize the data first)")
        if len(example["input_ids"]) == 0:
            raise ValueError(f"example {index} has no tokens; drop empty rows before collating")
        if len(example["input_ids"]) != len(example["labels"]):
            raise ValueError(
                f"example {index} has {len(example['input_ids'])} input_ids but {len(example['labels'])} labels; "
                "labels must be unshifted and as long as input_ids"
            )


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """The batch without what the collators add for SFTTrainer (TRAINER_KEYS, LOSS_KEYS): what the model's forward takes."""
    return {key: value for key, value in batch.items() if key not in TRAINER_KEYS and key not in LOSS_KEYS}


def label_targets(labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """A batch's LOSS_KEYS, worked out here on the CPU: for each row, the positions whose next token is a label
    (labels shifted by one, as the model's loss shifts them) and those next-token labels, as [rows, most labels
    of a row] tensors; shorter rows repeat position 0 with label IGNORE_INDEX, which the loss skips. Their size
    is set here, so the training step selects the logits by index without waiting for a GPU to count them."""
    next_labels = torch.nn.functional.pad(labels[..., 1:], (0, 1), value=IGNORE_INDEX)
    keep = next_labels != IGNORE_INDEX
    counts = keep.sum(dim=1)
    width = int(counts.max()) if labels.numel() else 0
    kept_first = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :width]
    real = torch.arange(width) < counts[:, None]
    return {LABEL_POSITIONS_KEY: torch.where(real, kept_first, 0),
            NEXT_LABELS_KEY: torch.where(real, next_labels.gather(1, kept_first), IGNORE_INDEX)}


def batch_counts(lengths: Sequence[int]) -> dict[str, int]:
    """A batch's SAMPLE_COUNT_KEY and TOKEN_COUNT_KEY entries, from its samples' token counts."""
    return {SAMPLE_COUNT_KEY: len(lengths), TOKEN_COUNT_KEY: sum(lengths)}


def padded_width(lengths: Sequence[int], pad_to_multiple_of: int | None) -> int:
    """The width PaddedCollator pads rows of these lengths to: the longest, rounded up to the multiple."""
    width = max(lengths)
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    return width


@dataclass(frozen=True)
class PaddedLayout:
    """Where a padding-free row's tokens would sit in PaddedCollator's batch of the same samples (rows of
    these lengths, right padding, the default multiple). sft.model.lora_dropout draws its noise in this layout,
    as the padded batch does. Worked out on first read only: the Trainer collates evaluation batches with
    the training collator, and their layout is never read (no dropout in evaluation)."""

    lengths: tuple[int, ...]

    @property
    def positions(self) -> int:
        """Rows x width of the padded batch."""
        return len(self.lengths) * padded_width(self.lengths, PAD_TO_MULTIPLE_OF)

    @cached_property
    def token_index(self) -> torch.Tensor:
        """Each token's flat position in the padded batch, in the row's order."""
        width = padded_width(self.lengths, PAD_TO_MULTIPLE_OF)
        return torch.cat([row * width + torch.arange(length) for row, length in enumerate(self.lengths)])


class PaddedCollator:
    """Right-pads every row to the batch's longest (rounded up to pad_to_multiple_of, which keeps
    GPU matmul shapes friendly); pads get attention 0 and label -100, so they count in no loss."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = PAD_TO_MULTIPLE_OF) -> None:
        if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
            raise ValueError(f"pad_to_multiple_of={pad_to_multiple_of} must be a positive integer or None")
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, examples: Sequence[Example]) -> dict[str, Any]:
        check_examples(examples)
        if any("sequence_lengths" in example for example in examples):
            raise ValueError("packed rows (from pack_examples) need PaddingFreeCollator: padding them would let their samples attend to each other")
        lengths = [len(example["input_ids"]) for example in examples]
        width = padded_width(lengths, self.pad_to_multiple_of)
        input_ids = torch.full((len(examples), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
        for row, example in enumerate(examples):
            length = len(example["input_ids"])
            input_ids[row, :length] = torch.as_tensor(example["input_ids"], dtype=torch.long)
            labels[row, :length] = torch.as_tensor(example["labels"], dtype=torch.long)
            attention_mask[row, :length] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels, **label_targets(labels), **batch_counts(lengths)}


class PaddingFreeCollator:
    """The same samples as a padded batch, laid end to end in one row [1, total_len]: no pad token is
    computed. Packed rows (from pack_examples) are split back into their samples first.

    Samples stay isolated by their boundaries, which the batch carries as position_ids restarting at 0
    and as cu_seq_lens_q/k (the varlen kwargs): attn_implementation "sdpa_varlen" (sft.model.attention),
    "flex_attention" (a document BlockMask built by transformers) and flash-attention use them. Each
    sample's first label becomes -100: after the model's internal shift it would be the target of the
    previous sample's last token; the padded path never trains it either, so the losses stay equal.

    dense_mask=True adds an explicit [1, 1, T, T] boolean block-diagonal causal mask: exact with plain
    "sdpa" whatever the model's settings, at T*T memory; the fallback when the others are unavailable.
    block_mask=True adds the same mask as flex_attention's BlockMask (sft.model.attention.DocumentMask), built here
    on the CPU from the boundaries and moved to the device with the batch: built once per batch, with no read
    of a device tensor, where transformers would rebuild it from the position ids in every forward pass.

    padded_layout=True adds the PaddedLayout of PaddedCollator's batch of the same examples
    (PADDED_LAYOUT_KEY), so that LoRA dropout can draw the padded batch's masks (sft.model.lora_dropout).
    Packed rows have no padded batch to mirror and are refused then.
    """

    def __init__(self, dense_mask: bool = False, padded_layout: bool = False, block_mask: bool = False) -> None:
        if dense_mask and block_mask:
            raise ValueError("PaddingFreeCollator takes dense_mask (for sdpa) or block_mask (for flex_attention), not both")
        self.dense_mask = dense_mask
        self.block_mask = block_mask
        self.padded_layout = padded_layout
        self.flatten = DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX, return_flash_attn_kwargs=True)

    def __call__(self, examples: Sequence[Example]) -> dict[str, Any]:
        check_examples(examples)
        samples = split_packed(examples)
        batch = self.flatten(samples, return_tensors="pt")
        if self.dense_mask:
            batch["attention_mask"] = block_causal_mask(batch["cu_seq_lens_q"])
        elif self.block_mask:
            batch["attention_mask"] = DocumentMask(batch["cu_seq_lens_q"])
        batch.update(label_targets(batch["labels"]))
        # transformers reads document boundaries from position_ids only when no KV cache is built
        batch["use_cache"] = False
        batch.update(batch_counts([len(sample["input_ids"]) for sample in samples]))
        if self.padded_layout:
            batch[PADDED_LAYOUT_KEY] = padded_layout(examples)
        return batch


def padded_layout(examples: Sequence[Example]) -> PaddedLayout:
    """The PaddedLayout of PaddedCollator's batch of these examples (right padding, default multiple)."""
    if any("sequence_lengths" in example for example in examples):
        raise ValueError("packed rows (from pack_examples) have no padded layout: build PaddingFreeCollator with padded_layout=False for them")
    return PaddedLayout(tuple(len(example["input_ids"]) for example in examples))


def split_packed(examples: Sequence[Example]) -> list[Example]:
    """Packed rows back into their samples (by "sequence_lengths"); plain examples pass unchanged."""
    samples: list[Example] = []
    for index, example in enumerate(examples):
        lengths = example.get("sequence_lengths")
        if lengths is None:
            samples.append({"input_ids": list(example["input_ids"]), "labels": list(example["labels"])})
            continue
        if sum(lengths) != len(example["input_ids"]) or min(lengths) < 1:
            raise ValueError(
                f"packed row {index} has sequence_lengths {list(lengths)} for {len(example['input_ids'])} tokens; "
                "rebuild it with sft.recipe.collate.pack_examples"
            )
        start = 0
        for length in lengths:
            samples.append({"input_ids": list(example["input_ids"][start : start + length]), "labels": list(example["labels"][start : start + length])})
            start += length
    return samples


def block_causal_mask(cu_seq_lens: torch.Tensor) -> torch.Tensor:
    """[1, 1, T, T] boolean mask, True where a token may attend: earlier tokens of its own sample only."""
    lengths = (cu_seq_lens[1:] - cu_seq_lens[:-1]).long()
    sample_of_token = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    same_sample = sample_of_token[:, None] == sample_of_token[None, :]
    total = int(cu_seq_lens[-1])
    causal = torch.ones(total, total, dtype=torch.bool).tril()
    return (same_sample & causal)[None, None]


def pack_examples(examples: Sequence[Example], cutoff_len: int) -> list[Example]:
    """LLaMA-Factory's `packing`: several samples per row of at most cutoff_len tokens, by best-fit
    decreasing (deterministic: longest first, ties in input order). Each row keeps "sequence_lengths",
    so PaddingFreeCollator restores the boundaries and no sample attends to another."""
    if cutoff_len < 1:
        raise ValueError(f"cutoff_len={cutoff_len} must be a positive number of tokens")
    check_examples(examples)
    for index, example in enumerate(examples):
        if len(example["input_ids"]) > cutoff_len:
            raise ValueError(
                f"example {index} has {len(example['input_ids'])} tokens, more than cutoff_len={cutoff_len}; "
                "tokenize with the same task.cutoff_len as packing uses"
            )
    order = sorted(range(len(examples)), key=lambda index: (-len(examples[index]["input_ids"]), index))
    rows: list[list[int]] = []
    free_space: list[tuple[int, int]] = []  # (tokens still free, row index), sorted
    for index in order:
        length = len(examples[index]["input_ids"])
        slot = bisect.bisect_left(free_space, (length, -1))
        if slot == len(free_space):
            rows.append([index])
            row, remaining = len(rows) - 1, cutoff_len - length
        else:
            free, row = free_space.pop(slot)
            rows[row].append(index)
            remaining = free - length
        if remaining > 0:
            bisect.insort(free_space, (remaining, row))
    return [merge_row([examples[index] for index in row]) for row in rows]


def merge_row(samples: Sequence[Example]) -> Example:
    """One packed row; it keeps its samples' ids when they carry one (sft.data.stream)."""
    row = {
        "input_ids": [token for sample in samples for token in sample["input_ids"]],
        "labels": [label for sample in samples for label in sample["labels"]],
        "sequence_lengths": [len(sample["input_ids"]) for sample in samples],
    }
    if all(SAMPLE_ID_COLUMN in sample for sample in samples):
        row[PACKED_IDS_COLUMN] = [sample[SAMPLE_ID_COLUMN] for sample in samples]
    return row
