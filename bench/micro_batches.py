"""The fixed cost of a forward and backward pass, which merging an optimizer step's micro-batches saves
(trainer.merge_micro_batches) and compiling the decoder layers shrinks (trainer.compile), eager and compiled.

    python -m bench.micro_batches                 # a few minutes on a CPU (most of it compiling)
    python -m bench.micro_batches --device cuda   # the same on a GPU

A pass through the Qwen2.5-0.5B layer structure (24 layers, LoRA r16 on every linear layer) dispatches
thousands of ops from Python, and on a GPU launches each as a kernel, whatever its tokens. The bench
measures that fixed cost: a pass of one 64-token sample through the structure at narrow widths, where
the compute is negligible, and counts what it dispatches: on a CPU the aten ops (torch.profiler's aten::
events; a compiled layer runs its fused kernels as one generated function, so only the ops it still calls
count), on CUDA the kernel launches (the profiler's cudaLaunchKernel / cuLaunchKernel calls). A step of the
seed settings (batch 20 x accumulation 5) pays it 5 times apart and once merged. The attention is the one
trainer.compile uses for padding-free batches on the device (sft.model.attention.padding_free_attention),
the same in both modes, so that only compiling differs.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

import torch
from peft import LoraConfig, get_peft_model
from transformers import Qwen2Config, Qwen2ForCausalLM

from sft.model.attention import padding_free_attention
from sft.model.compile import compile_decoder_layers
from sft.recipe.collate import PaddingFreeCollator, model_inputs

TOKENS = 63  # not a width of the narrow model: a compiled graph's sizes would otherwise be tied to it
LAUNCHES = ("cudaLaunchKernel", "cuLaunchKernel")


def narrow_qwen25_05b(attention: str) -> torch.nn.Module:
    """Qwen2.5-0.5B's 24 layers and module structure at 1/14 of its widths, with LoRA r16 on all linear layers."""
    config = Qwen2Config(hidden_size=64, num_hidden_layers=24, num_attention_heads=4, num_key_value_heads=2, intermediate_size=352,
                         vocab_size=1024, use_cache=False, attn_implementation=attention)
    torch.manual_seed(0)
    model = get_peft_model(Qwen2ForCausalLM(config), LoraConfig(r=16, lora_alpha=16, lora_dropout=0.01, target_modules="all-linear"))
    return model.train()


def one_sample(attention: str, device: torch.device) -> dict[str, Any]:
    ids = list(range(1, TOKENS + 1))
    collator = PaddingFreeCollator(dense_mask=attention == "sdpa", block_mask=attention == "flex_attention")
    return {key: value.to(device) if hasattr(value, "to") else value for key, value in model_inputs(collator([{"input_ids": ids, "labels": ids}])).items()}


def step(model: torch.nn.Module, batch: dict) -> None:
    model(**batch).loss.backward()
    model.zero_grad(set_to_none=True)


def measure(device: torch.device, compiled: bool, rounds: int, cache_dir: str) -> dict[str, Any]:
    """The median seconds of a pass, and what one pass dispatches, for the model eager or compiled."""
    from torch.profiler import ProfilerActivity, profile

    attention = padding_free_attention("auto", device, compiled=True)
    model = narrow_qwen25_05b(attention).to(device)
    if compiled:
        compile_decoder_layers(model, cache_dir)
    batch = one_sample(attention, device)
    for _ in range(3):  # warm-up (compiles)
        step(model, batch)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        step(model, batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        step(model, batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
    events = profiler.key_averages()
    if device.type == "cuda":
        dispatched = sum(event.count for event in events if event.key in LAUNCHES)
    else:
        dispatched = sum(event.count for event in events if event.key.startswith("aten::"))
    return {"seconds": statistics.median(times), "dispatched": dispatched, "attention": attention}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20, help="timed passes (the median is printed)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--cache-dir", help="where the compiled kernels are cached (default: a temporary dir, compiled afresh)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)  # as model.cpu_threads runs small models: more threads only add their syncing
    unit = "kernel launches" if device.type == "cuda" else "aten ops dispatched"
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    with tempfile.TemporaryDirectory(prefix="lorasweep-micro-batches-") as work_dir:
        results = {mode: measure(device, mode == "compiled", args.rounds, args.cache_dir or work_dir) for mode in ("eager", "compiled")}
    print(f"Qwen2.5-0.5B layer structure at narrow widths (24 layers, LoRA r16 all-linear, {results['eager']['attention']}) on {where}, "
          f"torch {torch.__version__}; one forward and backward pass of one {TOKENS}-token sample, median of {args.rounds}")
    for mode, result in results.items():
        print(f"{mode:9} {result['seconds']:.4f} s a pass, {result['dispatched']:6d} {unit} a pass; an optimizer step of 5 micro-batches "
              f"pays it 5 times ({5 * result['seconds']:.3f} s), merged into one pass once")
    print(f"compiled / eager: {results['compiled']['seconds'] / results['eager']['seconds']:.2f}x the time, "
          f"{results['compiled']['dispatched'] / results['eager']['dispatched']:.2f}x the {unit}")


if __name__ == "__main__":
    main()
