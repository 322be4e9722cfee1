"""LoRA dropout for padding-free batches that draws the padded batch's masks, so that on a CPU
padding-free training is padded training, step for step: trainer.padding_free changes the speed only.

On a CPU torch's dropout is `noise = empty_like(x).bernoulli_(1 - p); noise.div_(1 - p); x * noise`, and
bernoulli_ fills a contiguous tensor element by element in index order from the generator, whatever its
shape. A padded batch [B, L, F] and the same samples laid end to end, [1, T, F], therefore draw different
masks and leave the generator in different states. PaddedLayoutDropout draws the noise of the padded
batch ([B * L, F], from the batch's PaddedLayout) and keeps the rows of the real tokens: the same masks
and the same generator state as the padded path. CUDA's dropout is a fused kernel that draws otherwise,
so on a GPU padding-free keeps peft's plain dropout (sft.recipe.batching decides).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from sft.recipe.collate import PaddedLayout


class LayoutSlot:
    """The current micro-batch's PaddedLayout, set by the trainer around each training step (forward and
    backward, which recomputes dropout under gradient checkpointing) and read by every PaddedLayoutDropout."""

    def __init__(self) -> None:
        self.layout: PaddedLayout | None = None

    @contextmanager
    def holding(self, layout: PaddedLayout | None) -> Iterator[None]:
        self.layout = layout
        try:
            yield
        finally:
            self.layout = None


class PaddedLayoutDropout(nn.Module):
    """nn.Dropout(p) for a padding-free row [1, T, F], with the noise drawn in the padded layout."""

    def __init__(self, p: float, slot: LayoutSlot) -> None:
        super().__init__()
        self.p = p
        self.slot = slot

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        layout = self.slot.layout
        if layout is None:
            raise RuntimeError("padded-layout LoRA dropout ran in training without the batch's layout: train through "
                               "SFTTrainer with PaddingFreeCollator(padded_layout=True), or set trainer.padding_free=false")
        if x.dim() != 3 or x.shape[0] != 1 or x.shape[1] != layout.token_index.numel():
            raise ValueError(f"padded-layout LoRA dropout got input {tuple(x.shape)}; it takes one padding-free row "
                             f"[1, {layout.token_index.numel()}, features] (packed rows keep plain dropout)")
        noise = x.new_empty((layout.positions, x.shape[-1])).bernoulli_(1 - self.p)
        noise.div_(1 - self.p)
        return x * noise[layout.token_index.to(x.device)].unsqueeze(0)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_padded_layout_dropout(model: nn.Module) -> LayoutSlot:
    """Replace every LoRA layer's nn.Dropout (peft's lora_dropout) with a PaddedLayoutDropout of the same p,
    all reading the returned slot, which SFTTrainer fills with each batch's layout."""
    slot = LayoutSlot()
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, nn.ModuleDict):
            continue
        for adapter, dropout in dropouts.items():
            if isinstance(dropout, nn.Dropout):
                dropouts[adapter] = PaddedLayoutDropout(dropout.p, slot)
    return slot
