"""Adapters judged per minute on the tiny model: the base loaded once and adapters switched (PEFT's
load_adapter / set_adapter, what `python -m judge` does) against the base reloaded for every adapter.

k LoRA adapters (random, non-zero weights, rank 16 on every linear layer) are saved to a temp dir; each
"judgement" is the held-out work of one adapter: greedy answers to --prompts prompts of the demo
classification task, batched with left padding. Both ways run side by side in one process.

    python -m bench.judge_speed [--adapters 6] [--prompts 32] [--max-new-tokens 16]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from judge.heldout import encode_prompt
from judge.models import AdapterSet, generate, load_base
from sft.model.load import load_tokenizer, lora_config, peft_quiet

ROOT = Path(__file__).resolve().parents[1]


def save_adapters(cfg, folder: Path, count: int) -> list[Path]:
    from peft import get_peft_model

    settings = OmegaConf.create({"rank": 16, "alpha": 32, "dropout": 0.0, "target": "all", "use_rslora": False, "use_dora": False})
    paths = []
    for index in range(count):
        torch.manual_seed(index)
        with peft_quiet():
            model = get_peft_model(load_base(cfg), lora_config(settings))
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(parameter, std=0.02)
        path = folder / f"adapter{index}"
        model.save_pretrained(str(path))
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapters", type=int, default=6)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    args = parser.parse_args()
    cfg = OmegaConf.create({"model": OmegaConf.load(ROOT / "conf" / "model" / "tiny.yaml"),
                            "paths": {"cache_dir": os.environ.get("LORASWEEP_CACHE", str(ROOT / ".cache"))}})
    tokenizer = load_tokenizer(cfg.model, cfg.paths.cache_dir)
    rows = json.loads((ROOT / "data" / "demo_cate.json").read_text(encoding="utf-8"))[: args.prompts]
    prompts = [encode_prompt(tokenizer, "qwen", f"{row['instruction']}\n{row['input']}", None) for row in rows]

    def judge(model) -> None:
        generate(model, prompts, tokenizer, args.batch_size, args.max_new_tokens, lambda _: None)

    with tempfile.TemporaryDirectory() as folder:
        paths = save_adapters(cfg, Path(folder), args.adapters)
        started = time.perf_counter()
        for path in paths:
            reloaded = AdapterSet(load_base(cfg), {path.name: path})
            with reloaded.active(path.name) as model:
                judge(model)
        reload_s = time.perf_counter() - started
        started = time.perf_counter()
        switching = AdapterSet(load_base(cfg), {path.name: path for path in paths})
        for path in paths:
            with switching.active(path.name) as model:
                judge(model)
        switch_s = time.perf_counter() - started
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"tiny model on {device}, {args.adapters} adapters x {args.prompts} prompts, {args.max_new_tokens} new tokens, batch {args.batch_size}")
    print(f"{'way':<28}{'seconds':>10}{'adapters/min':>15}")
    for label, seconds in (("reload base per adapter", reload_s), ("one load + set_adapter", switch_s)):
        print(f"{label:<28}{seconds:>10.2f}{60 * args.adapters / seconds:>15.1f}")
    print(f"one load + switching: {reload_s / switch_s:.2f}x the adapters per minute of reloading")


if __name__ == "__main__":
    main()
