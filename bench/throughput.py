"""Training throughput of the padded path (LLaMA-Factory's defaults) against padding-free and packed
batches: the same synthetic samples, the same seed, one run, one table.

Figures per mode: real (non-pad) tokens per second, computed tokens per real token, peak memory, and
MFU = 4 x (matmul parameters) x real tokens/s / measured matmul peak (forward plus activation
gradients; the frozen base weights get no weight gradients, so 4 and not 6).

    python -m bench.throughput                    # CPU: tiny Qwen2, about a minute on 2 cores
    python -m bench.throughput --json out.json    # the same, plus the figures as JSON
    python -m bench.throughput --dry-run          # the GPU-mode model with 1 layer, one step per mode, on CPU
    bash bench/gpu_check.sh                       # GPU mode on a CUDA machine: Qwen2.5-0.5B architecture, bf16

Sample lengths follow Chinese medical Q&A (the yiliao task): questions of median ~50 characters,
answers of median ~150, lognormal with a long tail cut at the cutoff, ~1.5 characters per Qwen token,
plus the qwen template's default system prompt and role headers.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from transformers import Qwen2Config, Qwen2ForCausalLM

from sft.attention import SDPA_VARLEN, padding_free_attention
from sft.collate import IGNORE_INDEX, SAMPLE_COUNT_KEY, PaddedCollator, PaddingFreeCollator, pack_examples

# Measured with the Qwen2.5 tokenizer built offline (sft.qwen_vocab) on data/demo_yiliao.json:
PROMPT_OVERHEAD = 29  # qwen template: default system prompt, <|im_start|>user\n ... <|im_end|>\n<|im_start|>assistant\n
ANSWER_OVERHEAD = 2  # <|im_end|>\n after the answer, trained
CHARS_PER_TOKEN = 1.5  # Chinese consultation text: 1.53 characters per token in questions, 1.52 in answers
QUESTION_CHARS = (50.0, 0.7)  # lognormal (median, sigma)
ANSWER_CHARS = (150.0, 1.0)


@dataclass
class Settings:
    """One benchmark setup: the model, its precision and device, and LLaMA-Factory's batch settings."""

    name: str
    model: dict[str, Any]
    device: str
    dtype: str
    cutoff_len: int
    batch_size: int
    accumulation: int
    measured_steps: int  # optimizer steps timed per mode
    repeats: int  # passes over the timed micro-batches; each counts with its fastest pass (a shared CPU's noise)
    warmup_batches: int  # micro-batches run before timing (kernel compilation, allocator warm-up)
    gpu_path: bool  # the GPU modes (Liger, flex_attention where it runs) rather than the CPU comparison


def cpu_settings() -> Settings:
    model = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=256, vocab_size=8192, max_position_embeddings=2048, tie_word_embeddings=True)
    return Settings("cpu-tiny", model, "cpu", "float32", cutoff_len=1024, batch_size=20, accumulation=1,
                    measured_steps=2, repeats=2, warmup_batches=1, gpu_path=False)


def qwen25_05b_config() -> dict[str, Any]:
    return dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                intermediate_size=4864, vocab_size=151936, max_position_embeddings=32768, rope_theta=1000000.0,
                rms_norm_eps=1e-6, tie_word_embeddings=True)


def gpu_settings() -> Settings:
    """The seed's yiliao settings: cutoff 2048, per-device batch 20, gradient accumulation 5."""
    return Settings("gpu-qwen2.5-0.5b", qwen25_05b_config(), "cuda", "bfloat16", cutoff_len=2048, batch_size=20,
                    accumulation=5, measured_steps=2, repeats=1, warmup_batches=3, gpu_path=True)


def dry_run_settings() -> Settings:
    """The GPU-mode model and code path with one layer and a small batch, one step per mode, on CPU."""
    model = {**qwen25_05b_config(), "num_hidden_layers": 1}
    return Settings("dry-run", model, "cpu", "bfloat16", cutoff_len=2048, batch_size=4, accumulation=1,
                    measured_steps=1, repeats=1, warmup_batches=0, gpu_path=True)


@dataclass
class Mode:
    name: str
    batches: str  # padded | padding_free | packed
    attention: str  # attn_implementation
    gradient_checkpointing: bool
    liger: bool  # Liger's fused linear cross-entropy instead of logits + cross-entropy
    dense_mask: bool = False


def modes_for(settings: Settings, liger_available: bool) -> list[Mode]:
    fast = padding_free_attention("auto", settings.device)
    modes = [Mode("padded (LLaMA-Factory defaults)", "padded", "sdpa", True, False)]
    if settings.gpu_path:
        modes += [
            Mode("padding-free", "padding_free", fast, False, liger_available),
            Mode("padding-free sdpa_varlen", "padding_free", SDPA_VARLEN, False, liger_available),
            Mode("packed", "packed", fast, False, liger_available),
        ]
    else:
        modes += [
            Mode("padded, no checkpointing", "padded", "sdpa", False, False),
            Mode("padding-free", "padding_free", fast, False, False),
            Mode("padding-free dense mask", "padding_free", "sdpa", False, False, dense_mask=True),
            Mode("packed", "packed", fast, False, False),
        ]
    return modes


def synthetic_examples(count: int, cutoff_len: int, vocab_size: int, seed: int) -> list[dict[str, list[int]]]:
    """Token rows shaped like tokenized yiliao rows: prompt labels -100, answer trained; cut at cutoff_len
    as LLaMA-Factory cuts (the answer loses its end first)."""
    generator = torch.Generator().manual_seed(seed)

    def tokens(median_chars: float, sigma: float) -> int:
        chars = math.exp(math.log(median_chars) + sigma * torch.randn((), generator=generator).item())
        return max(1, round(chars / CHARS_PER_TOKEN))

    examples = []
    for _ in range(count):
        prompt = min(cutoff_len - 1, PROMPT_OVERHEAD + tokens(*QUESTION_CHARS))
        answer = min(cutoff_len - prompt, tokens(*ANSWER_CHARS) + ANSWER_OVERHEAD)
        input_ids = torch.randint(0, vocab_size, (prompt + answer,), generator=generator).tolist()
        examples.append({"input_ids": input_ids, "labels": [IGNORE_INDEX] * prompt + input_ids[prompt:]})
    return examples


def micro_batches(mode: Mode, examples: list[dict], settings: Settings) -> list[list[dict]]:
    """The examples grouped as the mode's dataloader would: batch_size samples per micro-batch; packed rows
    grouped so that a micro-batch holds about as many real tokens as batch_size samples do."""
    if mode.batches != "packed":
        return [examples[start : start + settings.batch_size] for start in range(0, len(examples), settings.batch_size)]
    rows = pack_examples(examples, settings.cutoff_len)
    mean_length = sum(len(example["input_ids"]) for example in examples) / len(examples)
    rows_per_batch = max(1, round(settings.batch_size * mean_length / settings.cutoff_len))
    return [rows[start : start + rows_per_batch] for start in range(0, len(rows), rows_per_batch)]


def collator_for(mode: Mode, pad_token_id: int) -> Callable[[list[dict]], dict[str, Any]]:
    if mode.batches == "padded":
        return PaddedCollator(pad_token_id=pad_token_id, pad_to_multiple_of=8)
    return PaddingFreeCollator(dense_mask=mode.dense_mask)


def build_model(settings: Settings, mode: Mode) -> torch.nn.Module:
    """Random weights (seed 0) in the settings' dtype, LoRA r16 on all linear layers (LLaMA-Factory's `all`)."""
    torch.manual_seed(0)
    config = Qwen2Config(**settings.model, attn_implementation=mode.attention, use_cache=False)
    with torch.device(settings.device):
        model = Qwen2ForCausalLM(config).to(getattr(torch, settings.dtype))
    if mode.gradient_checkpointing:  # the name transformers 5.17 still has
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def liger_loss_function() -> Callable | None:
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
    except ImportError:
        return None
    return LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE_INDEX)


def training_loss(model: torch.nn.Module, batch: dict[str, Any], fused_loss: Callable | None) -> torch.Tensor:
    """The loss HF computes (labels shifted inside), or the same loss through Liger's fused kernel,
    which never materialises the [tokens, vocab] logits."""
    if fused_loss is None:
        return model(**batch).loss
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    causal_lm = model.get_base_model()
    hidden = causal_lm.model(**inputs).last_hidden_state
    targets = F.pad(batch["labels"][:, 1:], (0, 1), value=IGNORE_INDEX)
    return fused_loss(causal_lm.lm_head.weight, hidden.flatten(0, 1), targets.flatten())


@dataclass
class SavedActivations:
    """Bytes of non-parameter tensors autograd keeps for backward: on CPU, where no allocator statistics
    exist, the memory figure that differs between modes."""

    parameter_storages: set[int]
    storages: dict[int, int] = field(default_factory=dict)

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self.parameter_storages:
            self.storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    def take_total(self) -> int:
        total = sum(self.storages.values())
        self.storages = {}
        return total


def real_token_count(batch: dict[str, Any]) -> int:
    """Non-pad tokens: a padded batch marks them in its 2D attention_mask; a padding-free one has no pads.
    (Counted here rather than with sft.trainer, whose imports the bare GPU machine lacks.)"""
    mask = batch.get("attention_mask")
    return int(mask.sum()) if mask is not None and mask.dim() == 2 else batch["input_ids"].numel()


def to_device(batch: dict[str, Any], device: str) -> dict[str, Any]:
    return {key: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class ModeRun:
    """One mode's model, optimizer and collated batches (collated up front, as dataloader workers would
    beside the GPU), timed one micro-batch at a time so that the modes can take turns."""

    def __init__(self, mode: Mode, settings: Settings, warmup_examples: list[dict], examples: list[dict], fused_loss: Callable | None) -> None:
        self.mode, self.settings = mode, settings
        self.model = build_model(settings, mode)
        self.model.train()
        self.optimizer = torch.optim.AdamW([param for param in self.model.parameters() if param.requires_grad], lr=1e-4)
        self.loss_function = fused_loss if mode.liger else None
        collate = collator_for(mode, pad_token_id=0)
        self.batches = [collate(group) for group in micro_batches(mode, examples, settings)]
        self.saved = SavedActivations({param.untyped_storage().data_ptr() for param in self.model.parameters()})
        self.done, self.peak_activation_bytes, self.last_loss = 0, 0, math.nan
        self.best_seconds = [math.inf] * len(self.batches)
        warmup = micro_batches(mode, warmup_examples, settings) if warmup_examples else []
        for group in warmup:
            self.train_step(collate(group), optimizer_step=True)

    @property
    def progress(self) -> float:
        return self.done / (len(self.batches) * self.settings.repeats)

    def train_step(self, batch: dict[str, Any], optimizer_step: bool) -> float:
        inputs = {key: value for key, value in to_device(batch, self.settings.device).items() if key != SAMPLE_COUNT_KEY}
        loss = training_loss(self.model, inputs, self.loss_function) / self.settings.accumulation
        loss.backward()
        if optimizer_step:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        return loss.item() * self.settings.accumulation

    def run_next(self) -> None:
        """Time the next micro-batch; on CUDA the activation peak is the allocator's peak above what was
        held before it, on CPU the bytes saved for backward."""
        index = self.done % len(self.batches)
        self.done += 1
        optimizer_step = (index + 1) % self.settings.accumulation == 0 or index == len(self.batches) - 1
        on_cuda = self.settings.device == "cuda"
        if on_cuda:
            synchronize("cuda")
            held = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        hooks = torch.autograd.graph.saved_tensors_hooks(self.saved.pack, lambda tensor: tensor)
        start = time.perf_counter()
        with contextlib.nullcontext() if on_cuda else hooks:
            self.last_loss = self.train_step(self.batches[index], optimizer_step)
        synchronize(self.settings.device)
        self.best_seconds[index] = min(self.best_seconds[index], time.perf_counter() - start)
        activation_bytes = torch.cuda.max_memory_allocated() - held if on_cuda else self.saved.take_total()
        self.peak_activation_bytes = max(self.peak_activation_bytes, activation_bytes)

    def result(self) -> dict[str, Any]:
        seconds = sum(self.best_seconds)
        real_tokens = sum(real_token_count(batch) for batch in self.batches)
        computed_tokens = sum(batch["input_ids"].numel() for batch in self.batches)
        return {
            **asdict(self.mode), "micro_batches": len(self.batches), "samples": sum(batch.get(SAMPLE_COUNT_KEY, len(batch["input_ids"])) for batch in self.batches),
            "seconds": seconds, "real_tokens": real_tokens, "computed_tokens": computed_tokens,
            "real_tokens_per_s": real_tokens / seconds, "computed_per_real": computed_tokens / real_tokens,
            "activation_peak_mib": self.peak_activation_bytes / 2**20, "last_loss": self.last_loss,
            "matmul_parameters": sum(module.weight.numel() for module in self.model.modules() if isinstance(module, torch.nn.Linear)),
        }


def matmul_peak_flops(device: str, dtype: torch.dtype) -> float:
    """Best of a few square matmuls in the training dtype: the peak that MFU is measured against."""
    size = 8192 if device == "cuda" else 1024
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = math.inf
    for _ in range(5 if device == "cuda" else 3):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        synchronize(device)
        best = min(best, (time.perf_counter() - start) / 10)
    return 2 * size**3 / best


def run(settings: Settings, seed: int) -> dict[str, Any]:
    """All modes on the same samples. They take turns, one micro-batch each, whoever is least far through
    its samples next: a load that changes during the run (a shared CPU) then weighs on every mode alike."""
    fused_loss = liger_loss_function() if settings.gpu_path else None
    notes = []
    if settings.gpu_path and fused_loss is None:
        notes.append("liger_kernel not importable: the fast path uses HF's loss (pip install liger-kernel)")
    warmup_count = settings.warmup_batches * settings.batch_size
    measured_count = settings.measured_steps * settings.accumulation * settings.batch_size
    examples = synthetic_examples(warmup_count + measured_count, settings.cutoff_len, settings.model["vocab_size"], seed)
    peak = matmul_peak_flops(settings.device, getattr(torch, settings.dtype))
    runs: dict[str, ModeRun] = {}
    failed: dict[str, dict[str, Any]] = {}
    modes = modes_for(settings, liger_available=fused_loss is not None)
    for mode in modes:
        try:
            runs[mode.name] = ModeRun(mode, settings, examples[:warmup_count], examples[warmup_count:], fused_loss)
        except torch.OutOfMemoryError:
            failed[mode.name] = {**asdict(mode), "error": "out of memory"}
    while unfinished := [run for run in runs.values() if run.progress < 1]:
        current = min(unfinished, key=lambda run: run.progress)
        try:
            current.run_next()
        except torch.OutOfMemoryError:
            failed[current.mode.name] = {**asdict(current.mode), "error": "out of memory"}
            del runs[current.mode.name]
            torch.cuda.empty_cache()
    results = [runs[mode.name].result() if mode.name in runs else failed[mode.name] for mode in modes]
    baseline = results[0].get("real_tokens_per_s")
    for result in results:
        if "error" in result:
            notes.append(f"{result['name']}: {result['error']} at batch {settings.batch_size}")
            continue
        result["mfu"] = 4 * result["matmul_parameters"] * result["real_tokens_per_s"] / peak
        if baseline:
            result["speedup_vs_padded"] = result["real_tokens_per_s"] / baseline
    device_name = torch.cuda.get_device_name() if settings.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    return {"settings": asdict(settings), "seed": seed, "device_name": device_name, "torch": torch.__version__,
            "matmul_peak_tflops": peak / 1e12, "modes": results, "notes": notes}


def format_table(report: dict[str, Any]) -> str:
    settings = report["settings"]
    memory = "act. peak MiB"
    lines = [
        f"{settings['name']} on {report['device_name']} (torch {report['torch']}), {settings['dtype']}, cutoff "
        f"{settings['cutoff_len']}, batch {settings['batch_size']} x accumulation {settings['accumulation']}, "
        f"matmul peak {report['matmul_peak_tflops']:.2f} TFLOP/s; timed {settings['measured_steps']} optimizer steps "
        f"per mode, each micro-batch at its best of {settings['repeats']} pass(es), modes taking turns",
        f"{'mode':34} {'attention':15} {'ckpt':5} {'liger':5} {'real tok/s':>11} {'comp/real':>9} {memory:>15} {'MFU':>6} {'vs padded':>9}",
    ]
    for result in report["modes"]:
        head = f"{result['name']:34} {result['attention']:15} {'on' if result['gradient_checkpointing'] else 'off':5} {'on' if result['liger'] else 'off':5}"
        if "error" in result:
            lines.append(f"{head} {result['error']}")
            continue
        lines.append(
            f"{head} {result['real_tokens_per_s']:11.0f} {result['computed_per_real']:9.2f} {result['activation_peak_mib']:15.1f} "
            f"{100 * result['mfu']:5.1f}% {result.get('speedup_vs_padded', float('nan')):8.2f}x"
        )
    lines.append("act. peak: memory the micro-batch needs beyond weights and optimizer (CUDA: allocator peak "
                 "above what was held before it; CPU: tensors saved for backward)")
    lines += [f"note: {note}" for note in report["notes"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda when available")
    parser.add_argument("--dry-run", action="store_true", help="GPU-mode model with 1 layer, one step per mode, on CPU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps timed per mode (default: per device)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is visible here; run without --device for the CPU benchmark")
    settings = dry_run_settings() if args.dry_run else gpu_settings() if device == "cuda" else cpu_settings()
    if args.steps is not None:
        settings.measured_steps = args.steps
    report = run(settings, args.seed)
    print(format_table(report), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
