"""tiktoken gives the HF tokenizer's ids exactly, or is not used: for Qwen2.5's vocabulary and the tiny
model's, on every string of the demo data and on strings built to split differently; the data pipeline's
output is the same with and without tiktoken."""
from __future__ import annotations

import multiprocessing
import pickle
import random
import sys

import pytest
from conftest import ROOT
from omegaconf import OmegaConf
from tokenizers import normalizers
from transformers import AutoTokenizer

from sft.data.demo_data import make_cate, make_spo, make_yiliao_alpaca
from sft.data.prepare import prepare_datasets
from sft.data.slot_encoder import SlotEncoder
from sft.model.tiny_model import demo_texts

EDGE_TEXTS = [
    "<|im_start|>user\n<|im_end|><|im_end|>\n<|im_start|>assistant\n",
    "half a token <|im_end and <|im_start| and |>",
    "<|im_end|>\u0338 then >\u0338 and e\u0301\u0302 and \u212b and \ufb01",
    "\n\n\n  \n\t\r\n\u3000\u3000两个全角空格 and   three spaces   ",
    "HELLO'S World'Ll 1234567890 ١٢٣ 𝟙𝟚𝟛 ①②",
    "混合English和中文，标点！？；：“引号”『括号』…… done.",
    "😀😀😀 👨‍👩‍👧‍👦 🇨🇳 \U0010ffff \x00 \x7f",
    "a" * 3000,
    "患者" * 1500,
]


def corpus() -> list[str]:
    rng = random.Random(0)
    rows = make_yiliao_alpaca(rng, 300) + make_cate(rng, 100) + make_spo(rng, 100)
    generated = [value for row in rows for value in row.values() if isinstance(value, str)]
    return [*demo_texts(), *generated, *EDGE_TEXTS]


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize("which", ["qwen", "tiny"])
def test_tiktoken_ids_equal_the_hf_tokenizers(which, qwen_tokenizer, tiny_tokenizer):
    tokenizer = qwen_tokenizer if which == "qwen" else tiny_tokenizer
    encoder = SlotEncoder(tokenizer)
    assert encoder.uses_tiktoken
    texts = corpus()
    expected = [tokenizer.encode(text, add_special_tokens=False) for text in texts]
    assert encoder.encode(texts) == expected


def test_a_worker_process_gets_the_encoder_it_inherited_or_rebuilds_it(qwen_tokenizer, monkeypatch):
    """datasets' map workers receive the encoder pickled: a forked worker finds the one it inherited (the same
    object, nothing rebuilt); a worker started afresh rebuilds it from the tokenizer.json as it was set up
    (tiktoken or the HF tokenizer), with the same ids."""
    encoders = [SlotEncoder(qwen_tokenizer)]
    monkeypatch.setattr(SlotEncoder, "_use_tiktoken", lambda self, tokenizer, probe_texts, tokenizer_json: "switched off by the test")
    encoders.append(SlotEncoder(qwen_tokenizer))
    texts = corpus()[-40:]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        for encoder, uses_tiktoken in zip(encoders, (True, False)):
            assert pickle.loads(pickle.dumps(encoder)) is encoder
            assert pool.apply(getattr, (encoder, "uses_tiktoken")) is encoder.uses_tiktoken is uses_tiktoken
            assert pool.apply(encoder.encode, (texts,)) == encoder.encode(texts)


def test_a_pipeline_tiktoken_cannot_reproduce_falls_back_to_the_hf_tokenizer(tiny_model_dir, caplog):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.backend_tokenizer.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    with caplog.at_level("INFO", logger="sft.data.slot_encoder"):
        encoder = SlotEncoder(tokenizer)
    assert not encoder.uses_tiktoken
    assert "the normalizer is Sequence, not NFC" in caplog.text
    texts = corpus()[:200] + EDGE_TEXTS
    assert encoder.encode(texts) == [tokenizer.encode(text, add_special_tokens=False) for text in texts]


def test_without_tiktoken_installed_the_hf_tokenizer_is_used(qwen_tokenizer, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "tiktoken", None)
    with caplog.at_level("INFO", logger="sft.data.slot_encoder"):
        encoder = SlotEncoder(qwen_tokenizer)
    assert not encoder.uses_tiktoken and "pip install tiktoken" in caplog.text


def test_prepared_data_is_the_same_with_and_without_tiktoken(tmp_path, qwen_tokenizer, monkeypatch):
    """Through the public entry point, on the shipped demo tasks: the same rows, ids, labels and counts."""
    def prepared(cache: str) -> list:
        results = []
        for dataset in ("demo_yiliao", "demo_yiliao_sharegpt", "demo_cate", "demo_spo"):
            for cutoff_len in (256, 48):
                task = OmegaConf.load(ROOT / "conf" / "task" / "demo.yaml")
                task.update(dataset=[dataset], dataset_dir=str(ROOT / "data"), cutoff_len=cutoff_len)
                data = prepare_datasets(task, qwen_tokenizer, tmp_path / cache, seed=0)
                results.append((data.train["input_ids"], data.train["labels"], data.counts))
        return results

    with_tiktoken = prepared("with")
    monkeypatch.setattr(SlotEncoder, "_use_tiktoken", lambda self, tokenizer, probe_texts, tokenizer_json: "switched off by the test")
    assert not SlotEncoder(qwen_tokenizer).uses_tiktoken
    assert prepared("without") == with_tiktoken
