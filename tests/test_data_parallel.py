"""Data prep with several worker processes gives the ids, labels and counts of one process."""
from conftest import ROOT
from omegaconf import OmegaConf

import sft.data
from sft.data import prepare_datasets


def test_two_processes_give_the_ids_of_one(tmp_path, qwen_tokenizer, monkeypatch):
    monkeypatch.setattr(sft.data, "LARGE_DATASET_ROWS", 0)  # the parallel path, which large sets take, on a small one
    task = OmegaConf.load(ROOT / "conf" / "task" / "demo.yaml")
    task.update(dataset=["demo_yiliao", "demo_cate"], dataset_dir=str(ROOT / "data"), cutoff_len=128, max_samples=300)
    one = prepare_datasets(task, qwen_tokenizer, tmp_path / "one", seed=0, num_proc=1)
    two = prepare_datasets(task, qwen_tokenizer, tmp_path / "two", seed=0, num_proc=2)
    assert two.train["input_ids"] == one.train["input_ids"]
    assert two.train["labels"] == one.train["labels"]
    assert two.counts == one.counts and one.counts["train_rows"] > 0
