"""trainer.compile: regional compilation of the decoder layers, as torchtune's compile_model does.

Each decoder layer is compiled on its own (nn.Module.compile): the layers share one code and one graph, so
a model compiles in the time of one layer, and what lies between them (embedding, mask, loss) stays eager.
Shapes are dynamic from the first call: a padding-free row's length changes every batch, and a graph
specialised to one length would be compiled again for the next. (A first batch whose length equals one of
the model's widths ties the two sizes together, and the next length compiles once more.) CompileCounts
logs, when training ends, how many graphs were compiled and how many of them after the first step.

The compiled kernels (inductor's, and Triton's under it) are cached under paths.cache_dir, so the later
trials of a sweep, and later sweeps, load them instead of compiling again.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from sft.lifecycle.errors import ConfigError

log = logging.getLogger(__name__)

COMPILE_CHOICES = ("auto", True, False)
COMPILE_CACHE = "compile"  # under paths.cache_dir


def resolve_compile(setting: Any, on_cuda: bool) -> bool:
    """auto: on for CUDA (its kernel launches are what a small model's pass waits on), off on a CPU, where
    compiling costs more than the few steps of a CPU run save."""
    if setting not in COMPILE_CHOICES:
        raise ConfigError(f"trainer.compile={setting!r}: choose auto (on for CUDA, off on a CPU), true or false")
    return on_cuda if setting == "auto" else bool(setting)


def use_compile_cache(cache_dir: str | Path) -> Path:
    """Inductor's cache, and Triton's inside it, under cache_dir. Inductor reads TORCHINDUCTOR_CACHE_DIR each
    time it looks a kernel up, and sets it to its default in /tmp the first time when it is unset (which
    importing it may do), so it is set here, before the first compile."""
    directory = Path(cache_dir).expanduser().resolve() / COMPILE_CACHE
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(directory)
    return directory


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's decoder layers: transformers' GradientCheckpointingLayer, the base of every decoder layer."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [module for module in model.modules() if isinstance(module, GradientCheckpointingLayer)]


def compile_decoder_layers(model: torch.nn.Module, cache_dir: str | Path) -> int:
    """Compile each decoder layer in place (with its LoRA modules); the number compiled."""
    layers = decoder_layers(model)
    if not layers:
        raise ConfigError(f"trainer.compile: {type(model).__name__} has no transformers decoder layer to compile; set trainer.compile=false")
    cache = use_compile_cache(cache_dir)
    for layer in layers:
        layer.compile(dynamic=True)
    log.info("trainer.compile: %d decoder layers compiled (dynamic shapes), kernels cached in %s", len(layers), cache)
    return len(layers)


def graphs_compiled() -> int:
    """Graphs torch.compile has compiled in this process so far."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


class CompileCounts(TrainerCallback):
    """Counts the graphs compiled during training, and those compiled after the first step: recompiles, which
    dynamic shapes keep at 0 whatever the batches' lengths (evaluation, in eval mode, compiles its own graph
    once). Logged when training ends."""

    def __init__(self) -> None:
        self.before = self.at_end = 0
        self.after_first_step: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.before = graphs_compiled()

    def on_step_end(self, args, state, control, **kwargs):
        if self.after_first_step is None:
            self.after_first_step = graphs_compiled()

    def on_train_end(self, args, state, control, **kwargs):
        self.at_end = graphs_compiled()
        log.info("trainer.compile: %d graph(s) compiled in training, %d recompile(s) after the first step",
                 self.at_end - self.before, self.recompiles)

    @property
    def recompiles(self) -> int:
        return self.at_end - (self.at_end if self.after_first_step is None else self.after_first_step)
