"""The HF Trainer with what it does not do itself: count samples and non-pad tokens exactly (the x axis
for comparing batch sizes), record which samples each step trained on, and read the study's one
sample stream (sft.stream) instead of sampling per trial."""
from __future__ import annotations

from typing import Any

import torch
from transformers import Trainer

from sft.callbacks import SeenCounter
from sft.collate import IGNORE_INDEX, SAMPLE_COUNT_KEY
from sft.stream import SAMPLE_IDS_KEY, StreamSampler


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
    def __init__(self, *args: Any, counter: SeenCounter, stream: StreamSampler, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counter = counter
        self.stream = stream
        self.eval_loss_sum, self.eval_tokens = 0.0, 0

    def _get_train_sampler(self, train_dataset: Any = None) -> StreamSampler:
        return self.stream

    def training_step(self, model: torch.nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        inputs = dict(inputs)
        samples, tokens = count_batch(inputs)
        inputs.pop(SAMPLE_COUNT_KEY, None)
        self.counter.step_ids.extend(inputs.pop(SAMPLE_IDS_KEY, []))
        self.counter.samples += samples
        self.counter.tokens += tokens
        return super().training_step(model, inputs, num_items_in_batch)

    def evaluation_loop(self, dataloader: Any, description: str, prediction_loss_only: bool | None = None,
                        ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval") -> Any:
        """The Trainer's loop, with its eval loss (a mean of per-batch means, which depends on the eval
        batch size) replaced by the token-weighted mean over the whole eval set: a property of the adapter."""
        self.eval_loss_sum, self.eval_tokens = 0.0, 0
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        if self.eval_tokens:
            output.metrics[f"{metric_key_prefix}_loss"] = self.eval_loss_sum / self.eval_tokens
        return output

    def prediction_step(self, model: torch.nn.Module, inputs: dict[str, Any], prediction_loss_only: bool, ignore_keys: list[str] | None = None):
        inputs = {key: value for key, value in inputs.items() if key not in (SAMPLE_COUNT_KEY, SAMPLE_IDS_KEY)}
        loss, logits, labels = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        if loss is not None and "labels" in inputs:
            # the model's loss is the mean over the batch's predicted tokens (labels shifted by one)
            tokens = int((inputs["labels"][..., 1:] != IGNORE_INDEX).sum())
            self.eval_loss_sum += float(loss.double()) * tokens
            self.eval_tokens += tokens
        return loss, logits, labels
