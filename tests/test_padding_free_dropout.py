"""trainer.padding_free is a speed switch on a CPU: with LoRA dropout, the recipe's padding-free run draws
the padded run's dropout masks (sft.model.lora_dropout) and trains the same adapter. In-process runs of the
recipe on the tiny model, and which batchings get the padded-layout dropout."""
from __future__ import annotations

import datasets
import pytest
import torch
from conftest import compose_train
from omegaconf import OmegaConf
from safetensors.torch import load_file

from runs.jsonl import read_jsonl
from sft.recipe.batching import batching_for
from sft.recipe.collate import PADDED_LAYOUT_KEY, PaddedCollator
from sft.recipe.train import run_training

BASE = ["model=tiny", "task=demo", "task.max_samples=60", "task.val_size=8", "task.cutoff_len=128", "lora.dropout=0.1",
        "trainer.per_device_batch_size=4", "trainer.max_steps=4", "trainer.logging_steps=1", "trainer.save_steps=1000"]


@pytest.mark.slow
def test_padding_free_and_padded_runs_train_the_same_adapter_with_lora_dropout(tmp_path, recipe_env):
    runs = {}
    for padding_free in (True, False):
        cfg = compose_train([*BASE, f"trainer.padding_free={str(padding_free).lower()}"])
        run_dir = tmp_path / f"padding_free_{padding_free}"
        run_training(cfg, run_dir)
        records, _ = read_jsonl(run_dir / "metrics.jsonl")
        runs[padding_free] = (records, load_file(run_dir / "adapter_model.safetensors"))
    (free_records, free_adapter), (padded_records, padded_adapter) = runs[True], runs[False]
    losses = [[r["loss"] for r in records if "loss" in r] for records in (free_records, padded_records)]
    assert len(losses[0]) == 4
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)
    assert [r["eval_loss"] for r in free_records if "eval_loss" in r] == pytest.approx(
        [r["eval_loss"] for r in padded_records if "eval_loss" in r], abs=1e-6)
    for name in padded_adapter:
        assert torch.allclose(free_adapter[name], padded_adapter[name], atol=1e-6), name


@pytest.mark.parametrize("padding_free,packing,dropout,on_cuda,expected", [
    (True, False, 0.1, False, True),
    (True, False, 0.0, False, False),  # peft's dropout is an identity then: nothing to draw
    (True, False, 0.1, True, False),  # CUDA's fused dropout draws otherwise: plain dropout
    (True, True, 0.1, False, False),  # packed rows are another batch altogether
    (False, False, 0.1, False, False),
])
def test_padded_layout_dropout_only_for_padding_free_batches_on_a_cpu(padding_free, packing, dropout, on_cuda, expected):
    train = datasets.Dataset.from_list([{"input_ids": [1, 2, 3], "labels": [-100, 2, 3], "sample_id": 0}])
    trainer_cfg = OmegaConf.create({"padding_free": padding_free, "packing": packing})
    batching = batching_for(trainer_cfg, "auto", 0, train, 8, dropout, on_cuda)
    assert batching.padded_layout_dropout is expected
    if not isinstance(batching.collator, PaddedCollator):
        assert (PADDED_LAYOUT_KEY in batching.collator([dict(train[0])])) is expected
