"""One training-sample stream per study: every trial sees the same samples in the same order up to its
budget, whatever its batch size or gradient accumulation.

The stream is the training set's rows, epoch after epoch: in file order (trainer.shuffle=false) or, for
trainer.shuffle=true, in a permutation drawn from task.data_seed and the epoch number, never from
trainer.seed. Batches cut the stream consecutively (a partial batch only at the budget's end), so a
batch of 2 and a batch of 16 train on the same first N samples. The ids of the samples actually trained
on are recorded per optimizer step (samples.jsonl) and hashed into result.json's data_fingerprint.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

SAMPLE_ID_COLUMN = "sample_id"  # a training row's index in the filtered data set, before the eval split
PACKED_IDS_COLUMN = "sample_ids"  # the sample ids a packed row holds
SAMPLE_IDS_KEY = "sample_ids"  # the ids of a batch's samples, in order; popped before the forward pass


def fingerprint(ids: Sequence[int]) -> str:
    """A short hash of ids in order: equal fingerprints mean the same samples in the same order."""
    return hashlib.sha256(",".join(str(int(i)) for i in ids).encode()).hexdigest()[:16]


def stream_order(rows: int, total: int, data_seed: int, shuffle: bool) -> list[int]:
    """The first `total` row indices of the stream (see the module docstring)."""
    order: list[int] = []
    epoch = 0
    while len(order) < total:
        epoch_order = np.random.default_rng([data_seed, epoch]).permutation(rows) if shuffle else np.arange(rows)
        order.extend(int(i) for i in epoch_order[: total - len(order)])
        epoch += 1
    return order


class StreamSampler(torch.utils.data.Sampler[int]):
    """The stream's first `total` rows as one pass: the Trainer sees a single epoch holding the whole
    budget, so its last optimizer step takes the remaining micro-batches (a partial accumulation)."""

    def __init__(self, rows: int, total: int, data_seed: int, shuffle: bool) -> None:
        self.order = stream_order(rows, total, data_seed, shuffle)

    def __iter__(self) -> Iterator[int]:
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


class SampleIdCollator:
    """Wraps a collator to add the batch's sample ids (SAMPLE_IDS_KEY): a plain row holds one sample,
    a packed row the samples it was packed from."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        ids: list[int] = []
        for example in examples:
            if PACKED_IDS_COLUMN in example:
                ids.extend(int(i) for i in example[PACKED_IDS_COLUMN])
            elif SAMPLE_ID_COLUMN in example:
                ids.append(int(example[SAMPLE_ID_COLUMN]))
        batch = self.collator(examples)
        batch[SAMPLE_IDS_KEY] = ids
        return batch
