"""Hand-off to a server: the `vllm serve` command for the chosen adapters, or one adapter merged into
the base model (safetensors) for a server without LoRA support."""
from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from judge.errors import JudgeInputError

# ranks `vllm serve --max-lora-rank` accepts; the adapters' largest rank is rounded up to one of them
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
SERVE_SCRIPT = "serve.sh"


def max_lora_rank(ranks: list[int]) -> int:
    largest = max(ranks)
    return next((rank for rank in VLLM_LORA_RANKS if rank >= largest), largest)


def vllm_command(base: str, adapters: dict[str, Path], ranks: list[int]) -> str:
    """`vllm serve BASE --enable-lora --lora-modules name=path ... --max-lora-rank R --max-loras k`: the
    base (when it is a local dir) and every adapter by absolute path, so the command works from any
    folder (vLLM reads a relative dir that is not there as a hub id); k lets all of them serve at once."""
    missing = [str(path) for path in adapters.values() if not path.is_dir()]
    if missing:
        raise JudgeInputError(f"{missing[0]}: adapter folder not found; the serve command would name a path that does not exist")
    model = str(Path(base).resolve()) if Path(base).is_dir() else base
    modules = [lora_module(name, path.resolve()) for name, path in adapters.items()]
    parts = ["vllm", "serve", model, "--enable-lora", "--lora-modules", *modules,
             "--max-lora-rank", str(max_lora_rank(ranks)), "--max-loras", str(len(adapters))]
    return shlex.join(parts)


def lora_module(name: str, path: Path) -> str:
    """One --lora-modules entry: vLLM's `name=path`, or its JSON form `{"name": ..., "path": ...}` when the
    name or path holds '=' or ',' (vLLM reads an entry with ',' or a second '=' as JSON)."""
    if any(char in text for text in (name, str(path)) for char in "=,"):
        return json.dumps({"name": name, "path": str(path)}, ensure_ascii=False)
    return f"{name}={path}"


def write_serve_script(command: str, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / SERVE_SCRIPT
    path.write_text(f"#!/bin/sh\n# serves the base model and the chosen adapters side by side (pip install vllm)\n{command}\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def merge_adapter(cfg: Any, adapter_dir: Path, tokenizer: Any, out_dir: Path) -> Path:
    """The adapter merged into the base weights in fp32 (exact), saved as safetensors with the
    tokenizer: a plain model for AutoModelForCausalLM and any server."""
    from peft import PeftModel

    from sft.model.load import load_base_model, peft_quiet

    base = load_base_model(cfg.model, "fp32", cfg.paths.cache_dir)
    with peft_quiet():
        merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    return out_dir
