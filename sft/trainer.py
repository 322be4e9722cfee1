"""The HF Trainer with the two things it does not do itself: count samples and non-pad tokens
exactly (the x axis for comparing batch sizes) and take the data in file order when asked."""
from __future__ import annotations

from typing import Any

import torch
from transformers import Trainer

from sft.callbacks import SeenCounter
from sft.collate import SAMPLE_COUNT_KEY


def count_batch(inputs: dict[str, Any]) -> tuple[int, int]:
    """(samples, non-pad tokens) in one micro-batch."""
    input_ids = inputs["input_ids"]
    samples = int(inputs[SAMPLE_COUNT_KEY]) if SAMPLE_COUNT_KEY in inputs else int(input_ids.shape[0])
    attention_mask = inputs.get("attention_mask")
    if attention_mask is not None and attention_mask.dim() == 2:
        tokens = int(attention_mask.sum())
    else:
        tokens = int(input_ids.numel())
    return samples, tokens


class SFTTrainer(Trainer):
    def __init__(self, *args: Any, counter: SeenCounter, shuffle: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counter = counter
        self.shuffle = shuffle

    def training_step(self, model: torch.nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        inputs = dict(inputs)
        samples, tokens = count_batch(inputs)
        inputs.pop(SAMPLE_COUNT_KEY, None)
        self.counter.samples += samples
        self.counter.tokens += tokens
        return super().training_step(model, inputs, num_items_in_batch)

    def prediction_step(self, model: torch.nn.Module, inputs: dict[str, Any], prediction_loss_only: bool, ignore_keys: list[str] | None = None):
        inputs = {key: value for key, value in inputs.items() if key != SAMPLE_COUNT_KEY}
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
