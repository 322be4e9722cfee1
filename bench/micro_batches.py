"""The fixed cost of a forward and backward pass, which merging an optimizer step's micro-batches saves
(trainer.merge_micro_batches).

    python -m bench.micro_batches                 # under a minute on a CPU
    python -m bench.micro_batches --device cuda   # the same on a GPU

A pass through the Qwen2.5-0.5B layer structure (24 layers, LoRA r16 on every linear layer) dispatches
thousands of ops from Python, and on a GPU launches each as a kernel, whatever its tokens. The bench
measures that fixed cost: a pass of one 64-token sample through the structure at narrow widths, where
the compute is negligible, and counts its ops. A step of the seed settings (batch 20 x accumulation 5)
pays it 5 times apart and once merged. Whether the tokens' own time hides it depends on the device: on
a CPU the compute of a 20-sample micro-batch dwarfs it; on a GPU, for short samples, it is most of a
micro-batch (bench.throughput's GPU mode times both layouts on the real widths).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import Qwen2Config, Qwen2ForCausalLM

import sft.attention  # noqa: F401  registers sdpa_varlen, the padding-free attention on a CPU
from sft.collate import PaddingFreeCollator, model_inputs


def narrow_qwen25_05b() -> torch.nn.Module:
    """Qwen2.5-0.5B's 24 layers and module structure at 1/14 of its widths, with LoRA r16 on all linear layers."""
    config = Qwen2Config(hidden_size=64, num_hidden_layers=24, num_attention_heads=4, num_key_value_heads=2, intermediate_size=352,
                         vocab_size=1024, use_cache=False, attn_implementation="sdpa_varlen")
    torch.manual_seed(0)
    model = get_peft_model(Qwen2ForCausalLM(config), LoraConfig(r=16, lora_alpha=16, lora_dropout=0.01, target_modules="all-linear"))
    return model.train()


def one_sample(tokens: int = 64) -> dict[str, torch.Tensor]:
    ids = torch.arange(1, tokens + 1).unsqueeze(0)
    return PaddingFreeCollator()([{"input_ids": ids[0].tolist(), "labels": ids[0].tolist()}])


def step(model: torch.nn.Module, batch: dict) -> None:
    model(**model_inputs(batch)).loss.backward()
    model.zero_grad(set_to_none=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20, help="timed passes (the median is printed)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)  # as model.cpu_threads runs small models: more threads only add their syncing
    model = narrow_qwen25_05b().to(device)
    batch = {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in one_sample().items()}
    for _ in range(3):  # warm-up
        step(model, batch)
    times = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        step(model, batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        step(model, batch)
    ops = sum(event.count for event in profiler.key_averages() if event.key.startswith("aten::"))
    fixed = statistics.median(times)
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    print(f"Qwen2.5-0.5B layer structure at narrow widths (24 layers, LoRA r16 all-linear, sdpa_varlen) on {where}, torch {torch.__version__}")
    print(f"one forward and backward pass of one 64-token sample: {fixed:.3f} s (median of {args.rounds}), {ops} aten ops")
    print(f"an optimizer step of 5 micro-batches pays it 5 times ({5 * fixed:.3f} s), merged into one pass once ({fixed:.3f} s)")


if __name__ == "__main__":
    main()
