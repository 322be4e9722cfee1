"""The HF Trainer with what it does not do itself: count samples and non-pad tokens exactly (the x axis
for comparing batch sizes), record which samples each step trained on, read the study's one sample
stream (sft.data.stream) instead of sampling per trial, project to the vocabulary only where a label is, and
hand padding-free batches' padded layout to the LoRA dropout that draws in it (sft.model.lora_dropout).
"""
from __future__ import annotations

import inspect
from typing import Any

import torch
from transformers import Trainer

from sft.data.stream import SAMPLE_IDS_KEY, StreamSampler
from sft.model.lora_dropout import LayoutSlot
from sft.recipe.callbacks import SeenCounter
from sft.recipe.checkpoints import AtomicCheckpoints
from sft.recipe.collate import (IGNORE_INDEX, LABEL_POSITIONS_KEY, NEXT_LABELS_KEY, PADDED_LAYOUT_KEY, SAMPLE_COUNT_KEY, TOKEN_COUNT_KEY,
                          TRAINER_KEYS, model_inputs)


def count_batch(inputs: dict[str, Any]) -> tuple[int, int]:
    """(samples, non-pad tokens) in one micro-batch: the ints its collator put in it (sft.recipe.collate). Summing
    its attention mask instead would wait for the GPU that already holds the batch, every micro-batch."""
    return inputs[SAMPLE_COUNT_KEY], inputs[TOKEN_COUNT_KEY]


def loss_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """The model's inputs for a training loss read at the label positions only: the collator's label positions
    (sft.recipe.collate.label_targets) as logits_to_keep, an index whose size the CPU set, and its next-token labels
    as shift_labels. Nothing here reads a tensor, so the step queues its work on a GPU without waiting."""
    return {**model_inputs(inputs), "logits_to_keep": inputs[LABEL_POSITIONS_KEY], "shift_labels": inputs[NEXT_LABELS_KEY]}


def slices_logits_per_row() -> bool:
    """Whether transformers' causal LMs take logits_to_keep as a [batch, positions] index, each row its own
    positions (its slice_logits_to_keep, transformers 5.21); earlier releases index every row's hidden
    states with the whole tensor (an IndexError or logits of the wrong shape at the first step), so
    training there computes every logit."""
    import transformers.modeling_utils

    return hasattr(transformers.modeling_utils, "slice_logits_to_keep")


class SFTTrainer(AtomicCheckpoints, Trainer):
    def __init__(self, *args: Any, counter: SeenCounter, stream: StreamSampler, layout_slot: LayoutSlot | None = None, **kwargs: Any) -> None:
        """layout_slot: the slot of the model's PaddedLayoutDropout modules (sft.model.lora_dropout), if it has them."""
        super().__init__(*args, **kwargs)
        self.counter = counter
        self.stream = stream
        self.layout_slot = layout_slot
        self.eval_loss_sum, self.eval_tokens = 0.0, 0
        self.logits_at_labels_only = self._can_keep_label_logits_only()
        # counted once: the Trainer recounts every step for its total_flos, walking every module (~5 ms a step)
        self.non_embedding_parameters = self.model.num_parameters(exclude_embeddings=True) if hasattr(self.model, "num_parameters") else None

    def _can_keep_label_logits_only(self) -> bool:
        """Whether training may ask the model for the logits of label positions only (logits_to_keep as an
        index of them, the next-token labels as shift_labels): the model's forward must take both (transformers'
        causal LMs do) and nothing else may compute the loss (Liger's fused kernel, a label smoother)."""
        from peft import PeftModel

        model = self.model.get_base_model() if isinstance(self.model, PeftModel) else self.model
        takes_logits_to_keep = "logits_to_keep" in inspect.signature(model.forward).parameters
        return (takes_logits_to_keep and slices_logits_per_row() and self.model_accepts_loss_kwargs and not self.args.use_liger_kernel
                and self.label_smoother is None and self.compute_loss_func is None)

    def _get_train_sampler(self, train_dataset: Any = None) -> StreamSampler:
        return self.stream

    def training_step(self, model: torch.nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        samples, tokens = count_batch(inputs)
        self.counter.step_ids.extend(inputs.get(SAMPLE_IDS_KEY, []))
        self.counter.samples += samples
        self.counter.tokens += tokens
        layout = inputs.get(PADDED_LAYOUT_KEY)
        inputs = {key: value for key, value in inputs.items() if key not in TRAINER_KEYS}  # compute_loss reads the label positions
        if self.layout_slot is None:
            return super().training_step(model, inputs, num_items_in_batch)
        with self.layout_slot.holding(layout):
            return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None) -> Any:
        """The Trainer's loss, with the vocabulary projection and the cross-entropy run on the label positions
        only. The loss is the same sum over the same positions (prompt and pad positions carry no label);
        the skipped logits cost most of a small model's step, as only ~20% of a chat row's tokens are labels."""
        if self.logits_at_labels_only and model.training and not return_outputs and LABEL_POSITIONS_KEY in inputs:
            inputs = loss_inputs(inputs)
        else:
            inputs = model_inputs(inputs)
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        """The Trainer's estimate for trainer_state.json's total_flos (6 x non-embedding parameters x input
        tokens), from the parameter count taken at the start."""
        main_input = getattr(self.model, "main_input_name", "input_ids")
        if self.non_embedding_parameters is None or main_input not in inputs:
            return super().floating_point_ops(inputs)
        return 6 * inputs[main_input].numel() * self.non_embedding_parameters

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
        inputs = model_inputs(inputs)
        loss, logits, labels = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        if loss is not None and "labels" in inputs:
            # the model's loss is the mean over the batch's predicted tokens (labels shifted by one)
            tokens = int((inputs["labels"][..., 1:] != IGNORE_INDEX).sum())
            self.eval_loss_sum += float(loss.double()) * tokens
            self.eval_tokens += tokens
        return loss, logits, labels
