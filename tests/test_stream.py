"""One sample stream per study (sft/data/stream.py): every trial trains on the same samples in the same order
up to its exact budget whatever its batch size or accumulation; repeats vary only the training seed; the
eval loss is the same at any eval batch size. In-process runs of the recipe on the tiny model."""
from __future__ import annotations

import json

import pytest
from conftest import compose_train
from safetensors.torch import load_file

from runs.jsonl import read_jsonl
from sft.recipe.train import run_training

pytestmark = pytest.mark.slow

BASE = ["model=tiny", "task=demo", "task.max_samples=120", "task.val_size=24", "task.cutoff_len=128",
        "trainer.logging_steps=1", "trainer.save_steps=1000", "trainer.max_samples_seen=40"]


@pytest.fixture
def train(tmp_path, recipe_env):
    """Runs the recipe with BASE + overrides into its own run dir; returns (result.json, ids per step)."""

    def run(*overrides: str) -> tuple[dict, list[list[int]]]:
        cfg = compose_train([*BASE, *overrides])
        run_dir = tmp_path / "_".join(o.split(".")[-1] for o in overrides)
        run_training(cfg, run_dir)
        steps, _ = read_jsonl(run_dir / "samples.jsonl")
        return json.loads((run_dir / "result.json").read_text()), [line["ids"] for line in steps]

    run.dir = lambda *overrides: tmp_path / "_".join(o.split(".")[-1] for o in overrides)
    return run


def test_every_batch_size_and_accumulation_trains_the_same_samples_in_the_same_order(train):
    shapes = [(2, 1), (8, 1), (16, 1), (2, 4), (8, 2)]
    runs = {shape: train(f"trainer.per_device_batch_size={shape[0]}", f"trainer.gradient_accumulation_steps={shape[1]}")
            for shape in shapes}
    sequences = {shape: [i for step in steps for i in step] for shape, (_, steps) in runs.items()}
    assert len({tuple(sequence) for sequence in sequences.values()}) == 1
    assert len(sequences[(2, 1)]) == 40 and len(set(sequences[(2, 1)])) == 40  # under one epoch: no repeats
    assert len({result["data_fingerprint"] for result, _ in runs.values()}) == 1
    assert len({result["split_fingerprint"] for result, _ in runs.values()}) == 1
    for (batch, accumulation), (result, steps) in runs.items():
        per_step = batch * accumulation
        # exact budget: whole steps, then one step with what is left (40 = 2 x 16 + 8)
        assert [len(step) for step in steps] == [per_step] * (40 // per_step) + ([40 % per_step] if 40 % per_step else [])
        assert result["samples_trained"] == result["seen"]["samples"] == result["budget"]["samples"] == 40
        assert (result["data_seed"], result["train_seed"]) == (0, 42)

    unshuffled, steps = train("trainer.per_device_batch_size=8", "trainer.shuffle=false")
    assert unshuffled["data_fingerprint"] != runs[(8, 1)][0]["data_fingerprint"]  # another stream, and it says so
    assert unshuffled["split_fingerprint"] == runs[(8, 1)][0]["split_fingerprint"]


def test_repeats_change_only_the_training_seed(train):
    first, first_steps = train("trainer.seed=1")
    second, second_steps = train("trainer.seed=2")
    assert first_steps == second_steps
    assert (first["data_fingerprint"], first["split_fingerprint"]) == (second["data_fingerprint"], second["split_fingerprint"])
    assert (first["train_seed"], second["train_seed"]) == (1, 2)
    weights = [load_file(train.dir(f"trainer.seed={seed}") / "adapter_model.safetensors") for seed in (1, 2)]
    assert any(not weights[0][name].equal(weights[1][name]) for name in weights[0])  # another LoRA init

    other_data, other_steps = train("task.data_seed=1")
    assert other_data["split_fingerprint"] != first["split_fingerprint"]
    assert other_data["data_fingerprint"] != first["data_fingerprint"]


def test_eval_loss_is_the_same_at_every_eval_batch_size(train):
    losses = {}
    for size in (1, 2, 8, 16):
        result, _ = train("trainer.max_samples_seen=8", "trainer.per_device_batch_size=8", f"trainer.eval_batch_size={size}")
        losses[size] = result["last_log"]["eval_loss"]
    adapters = [load_file(train.dir("trainer.max_samples_seen=8", "trainer.per_device_batch_size=8", f"trainer.eval_batch_size={size}")
                          / "adapter_model.safetensors") for size in (1, 16)]
    assert all(adapters[0][name].equal(adapters[1][name]) for name in adapters[0])  # the same adapter
    assert max(losses.values()) - min(losses.values()) < 1e-6, losses
