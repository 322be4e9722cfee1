"""trainer.compile (sft.model.compile) and lora.dtype: a compiled run trains the eager run's steps, and the adapters
take the dtype asked for."""
from __future__ import annotations

import logging
import os

import pytest
import torch
from conftest import compose_train
from safetensors.torch import load_file

from runs.jsonl import read_jsonl
from sft.lifecycle.errors import ConfigError
from sft.model.compile import resolve_compile, use_compile_cache

# Compiled and eager fp32 kernels sum in other orders: the losses of 10 steps agreed within 1.5e-6 and the
# adapters within 1e-8 on a CPU; the bounds leave a margin for other CPUs' vector widths.
LOSS_TOLERANCE = 1e-5
ADAPTER_TOLERANCE = 1e-6
BASE = ["model=tiny", "task=demo", "task.max_samples=40", "task.val_size=0", "task.cutoff_len=128", "lora.dropout=0.0",
        "trainer.per_device_batch_size=2", "trainer.max_steps=10", "trainer.logging_steps=1", "trainer.save_steps=1000"]


def test_compile_setting():
    assert resolve_compile("auto", on_cuda=True) is True
    assert resolve_compile("auto", on_cuda=False) is False
    assert resolve_compile(True, on_cuda=False) is True
    assert resolve_compile(False, on_cuda=True) is False
    with pytest.raises(ConfigError, match="trainer.compile='yes'"):
        resolve_compile("yes", on_cuda=True)


def test_compiled_kernels_are_cached_under_the_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/tmp/elsewhere")  # as inductor sets it on import when unset
    assert use_compile_cache(tmp_path) == tmp_path / "compile"
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "compile")


@pytest.mark.parametrize("adapter_dtype,expected", [("fp32", torch.float32), ("compute", torch.bfloat16)])
def test_lora_dtype(cache_dir, adapter_dtype, expected):
    from sft.model.load import load_model

    cfg = compose_train(["model=tiny", f"lora.dtype={adapter_dtype}"])
    model = load_model(cfg.model, cfg.lora, "bf16", cache_dir, gradient_checkpointing=False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and {p.dtype for p in trainable} == {expected}
    assert {p.dtype for p in model.parameters() if not p.requires_grad} == {torch.bfloat16}


def test_unknown_lora_dtype_is_refused(cache_dir):
    from sft.model.load import load_model

    cfg = compose_train(["model=tiny", "lora.dtype=fp8"])
    with pytest.raises(ConfigError, match="lora.dtype='fp8'"):
        load_model(cfg.model, cfg.lora, "bf16", cache_dir, gradient_checkpointing=False)


@pytest.mark.slow
def test_compiled_runs_train_the_eager_runs_steps(tmp_path, recipe_env, cache_dir, caplog, monkeypatch):
    """10 steps of the tiny model, padding-free and padded, eager and with the decoder layers compiled: the
    same losses and adapter within the tolerances, no recompile after the first step whatever the batches'
    lengths, and the kernels cached under paths.cache_dir. Compiling costs about a minute of CPU when the
    cache is cold (it outlives the session with the rest of the test cache)."""
    from sft.recipe.train import run_training

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "")  # restored after the test: the recipe points it at the cache dir
    for padding_free in ("true", "false"):
        runs = {}
        for compiled in ("false", "true"):
            run_dir = tmp_path / f"padding_free_{padding_free}_compile_{compiled}"
            with caplog.at_level(logging.INFO, logger="sft.model.compile"):
                caplog.clear()
                run_training(compose_train([*BASE, f"trainer.padding_free={padding_free}", f"trainer.compile={compiled}"]), run_dir)
            counts = [r.getMessage() for r in caplog.records if "recompile" in r.getMessage()]
            assert len(counts) == (compiled == "true")
            assert all("0 recompile(s) after the first step" in line for line in counts)
            records, _ = read_jsonl(run_dir / "metrics.jsonl")
            runs[compiled] = ([r["loss"] for r in records if "loss" in r], load_file(run_dir / "adapter_model.safetensors"))
        (compiled_losses, compiled_adapter), (eager_losses, eager_adapter) = runs["true"], runs["false"]
        assert len(eager_losses) == 10
        assert compiled_losses == pytest.approx(eager_losses, abs=LOSS_TOLERANCE)
        for name in eager_adapter:
            assert torch.allclose(compiled_adapter[name], eager_adapter[name], atol=ADAPTER_TOLERANCE), name
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str((cache_dir / "compile").resolve())
    assert any((cache_dir / "compile").iterdir())
