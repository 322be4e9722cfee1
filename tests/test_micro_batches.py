"""trainer.merge_micro_batches: a padding-free step's micro-batches as one forward pass. Which runs merge
(sft.recipe.batching.micro_batches), and that a merged run trains the same steps as the accumulated one (an
in-process run of the recipe on the tiny model)."""
from __future__ import annotations

import logging

import datasets
import pytest
import torch
from conftest import compose_train
from omegaconf import OmegaConf
from safetensors.torch import load_file

from runs.jsonl import read_jsonl
from sft.recipe.batching import MicroBatches, batching_for, micro_batches, most_tokens_per_batch

LENGTHS = [5, 3, 8, 2, 7, 4]  # six training rows; cutoff 8 and batch 2 allow 16 tokens a forward pass


def trainer_cfg(merge, padding_free=True, packing=False, batch=2, accumulation=3):
    return OmegaConf.create({"padding_free": padding_free, "packing": packing, "per_device_batch_size": batch,
                             "gradient_accumulation_steps": accumulation, "merge_micro_batches": merge})


def train_set(lengths=LENGTHS):
    return datasets.Dataset.from_list([{"input_ids": list(range(1, n + 1)), "labels": list(range(1, n + 1)), "sample_id": i}
                                       for i, n in enumerate(lengths)])


@pytest.mark.parametrize("merge,on_cuda,attention,padding_free,packing,accumulation,cutoff,expected", [
    ("auto", True, "auto", True, False, 3, 16, MicroBatches(6, 1)),  # a GPU merges
    ("auto", False, "auto", True, False, 3, 16, MicroBatches(2, 3)),  # a CPU keeps the padded path's dropout masks
    (True, False, "auto", True, False, 3, 16, MicroBatches(6, 1)),
    (False, True, "auto", True, False, 3, 16, MicroBatches(2, 3)),
    ("auto", True, "sdpa", True, False, 3, 16, MicroBatches(2, 3)),  # the dense mask grows with the row's square
    ("auto", True, "auto", False, False, 3, 16, MicroBatches(2, 3)),  # padded batches grow with cutoff_len
    ("auto", True, "auto", True, True, 3, 16, MicroBatches(2, 3)),  # packed rows are cutoff_len long
    ("auto", True, "auto", True, False, 1, 16, MicroBatches(2, 1)),  # nothing to merge
    ("auto", True, "auto", True, False, 3, 14, MicroBatches(2, 3)),  # the six rows' 29 tokens exceed 2 x 14
])
def test_which_runs_merge_their_micro_batches(merge, on_cuda, attention, padding_free, packing, accumulation, cutoff, expected):
    cfg = trainer_cfg(merge, padding_free, packing, accumulation=accumulation)
    batching = batching_for(cfg, attention, 0, train_set(), 8, 0.0, on_cuda)
    order = list(range(len(batching.train)))
    assert micro_batches(cfg, batching, order, cutoff, on_cuda) == expected


def test_the_token_check_reads_every_merged_batch_of_the_stream_in_its_order():
    train = train_set().select([5, 4, 3, 2, 1, 0])  # an indices mapping, as a shuffled or split set has
    assert most_tokens_per_batch(train, [0, 1, 2, 3, 4, 5], 2) == 11  # rows of 4+7, 2+8, 3+5
    assert most_tokens_per_batch(train, [1, 3, 0, 2, 4, 5, 1], 2) == 15  # 7+8, 4+2, 3+5, then a partial 7
    assert most_tokens_per_batch(train, [1, 3, 0, 2, 4, 5, 1], 4) == 21  # 7+8+4+2, then a partial 3+5+7


BASE = ["model=tiny", "task=demo", "task.max_samples=60", "task.val_size=8", "task.cutoff_len=512", "lora.dropout=0.0",
        "trainer.per_device_batch_size=2", "trainer.gradient_accumulation_steps=3", "trainer.max_steps=4",
        "trainer.logging_steps=1", "trainer.save_steps=1000"]


@pytest.mark.slow
def test_a_merged_run_trains_the_same_steps_as_the_accumulated_one(tmp_path, recipe_env, caplog):
    from sft.recipe.train import run_training

    runs = {}
    for merge in (True, False):
        cfg = compose_train([*BASE, f"trainer.merge_micro_batches={str(merge).lower()}"])
        run_dir = tmp_path / f"merge_{merge}"
        with caplog.at_level(logging.INFO, logger="sft.recipe.batching"):
            caplog.clear()
            run_training(cfg, run_dir)
        merged_line = [r.getMessage() for r in caplog.records if "one forward pass of 6 samples" in r.getMessage()]
        assert bool(merged_line) is merge
        args = torch.load(run_dir / "training_args.bin", weights_only=False)  # what the Trainer ran with
        assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == ((6, 1) if merge else (2, 3))
        records, _ = read_jsonl(run_dir / "metrics.jsonl")
        steps, _ = read_jsonl(run_dir / "samples.jsonl")
        runs[merge] = (records, steps, load_file(run_dir / "adapter_model.safetensors"))
    (merged, merged_steps, merged_adapter), (accumulated, accumulated_steps, accumulated_adapter) = runs[True], runs[False]
    assert merged_steps == accumulated_steps and len(merged_steps) == 4
    assert [(r["step"], r["samples"], r["tokens"]) for r in merged] == [(r["step"], r["samples"], r["tokens"]) for r in accumulated]
    for key in ("loss", "eval_loss"):
        values = [[r[key] for r in records if key in r] for records in (merged, accumulated)]
        assert len(values[0]) >= 1
        assert values[0] == pytest.approx(values[1], abs=1e-5)
    for name in accumulated_adapter:
        assert torch.allclose(merged_adapter[name], accumulated_adapter[name], atol=1e-6), name
