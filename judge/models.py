"""The base model loaded once with every adapter attached by name, batched greedy generation and the
token-weighted held-out loss.

k adapters cost one base load: PEFT's multi-adapter API (`load_adapter` / `set_adapter`) switches
between them, and `disable_adapter()` gives the base model itself. Generation pads on the left (so
every row's answer starts at the same column), keeps the KV cache on, and runs in bf16 on a GPU that
has it (fp32 elsewhere), as training chose its precision.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from judge.errors import JudgeInputError
from sft.data.template import IGNORE_INDEX
from sft.model.load import load_base_model, resolve_precision

ADAPTER_WEIGHTS = "adapter_model.safetensors"
Advance = Callable[[int], None]


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_base(cfg: DictConfig) -> Any:
    """The run's base model on the device, in its inference precision, with the KV cache on. On a CPU,
    with the run's model.cpu_threads torch threads, as training ran it (a small model's matmuls are too
    small to split: more threads only add their syncing)."""
    if device() == "cpu" and cfg.model.get("cpu_threads"):
        torch.set_num_threads(int(cfg.model.cpu_threads))
    model = load_base_model(cfg.model, resolve_precision("auto"), cfg.paths.cache_dir).to(device())
    model.config.use_cache = True
    return model.eval()


class AdapterSet:
    """One base model with named adapters; `active(name)` runs the base (None) or one adapter."""

    def __init__(self, base: Any, adapters: dict[str, Path]) -> None:
        from peft import PeftModel

        from sft.model.load import peft_quiet

        self.model = base
        for index, (name, path) in enumerate(adapters.items()):
            try:
                if index == 0:
                    with peft_quiet():
                        self.model = PeftModel.from_pretrained(base, str(path), adapter_name=name, is_trainable=False)
                else:
                    self.model.load_adapter(str(path), adapter_name=name, is_trainable=False)
            except (RuntimeError, ValueError, KeyError) as error:
                first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise JudgeInputError(
                    f"{path / ADAPTER_WEIGHTS}: does not fit the base model ({first_line}); was it trained on another base model?"
                ) from None
        self.model.eval()

    @contextmanager
    def active(self, name: str | None) -> Iterator[Any]:
        if name is None:
            with self.model.disable_adapter() if hasattr(self.model, "disable_adapter") else nullcontext():
                yield self.model
            return
        self.model.set_adapter(name)
        yield self.model


def batches(order: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(order), size):
        yield order[start : start + size]


@torch.inference_mode()
def generate(
    model: Any, prompts: list[list[int]], tokenizer: Any, batch_size: int, max_new_tokens: int, advance: Advance
) -> list[str]:
    """Greedy answers to token-id prompts, batched by similar length with left padding; each answer
    ends at the first end-of-turn token."""
    from transformers import GenerationConfig

    stop_ids = sorted({tokenizer.eos_token_id, tokenizer.pad_token_id} - {None})
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                              eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id)
    answers: list[str] = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda index: len(prompts[index]))
    for chunk in batches(order, batch_size):
        width = max(len(prompts[index]) for index in chunk)
        input_ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, index in enumerate(chunk):
            ids = prompts[index]
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention_mask[row, width - len(ids) :] = 1
        output = model.generate(input_ids=input_ids.to(model.device), attention_mask=attention_mask.to(model.device),
                                generation_config=config)
        for row, index in enumerate(chunk):
            new = output[row, width:].tolist()
            cut = next((position for position, token in enumerate(new) if token in stop_ids), len(new))
            answers[index] = tokenizer.decode(new[:cut], skip_special_tokens=True).strip()
        advance(len(chunk))
    return answers


@torch.inference_mode()
def eval_loss(model: Any, input_ids: list[list[int]], labels: list[list[int]], pad_id: int, batch_size: int, advance: Advance) -> tuple[float, int]:
    """(sum of token losses, number of label tokens) over the rows: the token-weighted loss, the same
    whatever the batch size."""
    total, tokens = 0.0, 0
    order = sorted(range(len(input_ids)), key=lambda index: len(input_ids[index]))
    for chunk in batches(order, batch_size):
        width = max(len(input_ids[index]) for index in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        targets = torch.full((len(chunk), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, index in enumerate(chunk):
            length = len(input_ids[index])
            ids[row, :length] = torch.tensor(input_ids[index])
            targets[row, :length] = torch.tensor(labels[index])
            mask[row, :length] = 1
        logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits.float()
        shifted = targets[:, 1:].to(logits.device)
        total += torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), shifted.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
        ).item()
        tokens += int((shifted != IGNORE_INDEX).sum())
        advance(len(chunk))
    return total, tokens
