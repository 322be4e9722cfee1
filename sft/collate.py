"""Turn tokenized examples ({"input_ids", "labels"}, labels -100 on prompt tokens, not shifted) into
model batches.

PaddedCollator is LLaMA-Factory's default path: right padding to the longest row of the batch.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

IGNORE_INDEX = -100  # the label torch's cross_entropy skips (its default ignore_index)

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


class PaddedCollator:
    """Right-pads every row to the batch's longest (rounded up to pad_to_multiple_of, which keeps
    GPU matmul shapes friendly); pads get attention 0 and label -100, so they count in no loss."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = 8) -> None:
        if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
            raise ValueError(f"pad_to_multiple_of={pad_to_multiple_of} must be a positive integer or None")
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        check_examples(examples)
        width = max(len(example["input_ids"]) for example in examples)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(examples), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
        for row, example in enumerate(examples):
            length = len(example["input_ids"])
            input_ids[row, :length] = torch.as_tensor(example["input_ids"], dtype=torch.long)
            labels[row, :length] = torch.as_tensor(example["labels"], dtype=torch.long)
            attention_mask[row, :length] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
