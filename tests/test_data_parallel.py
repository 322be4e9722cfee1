"""Data prep with several worker processes gives the ids, labels and counts of one process, with tiktoken
or the HF tokenizer, and its cached files give them back."""
from conftest import ROOT
from omegaconf import OmegaConf

import sft.data.prepare
from sft.data.prepare import prepare_datasets
from sft.data.slot_encoder import SlotEncoder


def test_two_processes_give_the_ids_of_one(tmp_path, qwen_tokenizer, monkeypatch):
    monkeypatch.setattr(sft.data.prepare, "LARGE_DATASET_ROWS", 0)  # the parallel path, which large sets take, on a small one
    task = OmegaConf.load(ROOT / "conf" / "task" / "demo.yaml")
    task.update(dataset=["demo_yiliao", "demo_cate"], dataset_dir=str(ROOT / "data"), cutoff_len=128, max_samples=300)
    one = prepare_datasets(task, qwen_tokenizer, tmp_path / "one", seed=0, num_proc=1)
    two = prepare_datasets(task, qwen_tokenizer, tmp_path / "two", seed=0, num_proc=2)
    assert two.train["input_ids"] == one.train["input_ids"]
    assert two.train["labels"] == one.train["labels"]
    assert two.counts == one.counts and one.counts["train_rows"] > 0
    (cached,) = [path for path in (tmp_path / "two" / "tokenized").iterdir() if path.is_dir()]
    assert sorted(path.name for path in cached.iterdir()) == [
        f"part{index:03d}_{rank:05d}_of_00002.arrow" for index in range(2) for rank in range(2)
    ], "each worker's rows written straight into the cache, in row order"
    again = prepare_datasets(task, qwen_tokenizer, tmp_path / "two", seed=0, num_proc=2)
    assert again.train["input_ids"] == one.train["input_ids"] and again.train["labels"] == one.train["labels"]

    monkeypatch.setattr(SlotEncoder, "_use_tiktoken", lambda self, tokenizer, probe_texts, tokenizer_json: "switched off by the test")
    hf = prepare_datasets(task, qwen_tokenizer, tmp_path / "hf", seed=0, num_proc=2)
    assert hf.train["input_ids"] == one.train["input_ids"] and hf.train["labels"] == one.train["labels"]
