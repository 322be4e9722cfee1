"""The locally built tokenizers and the tiny model: what the data pipeline and the trainer rely on.

Each is built once and reused by later pytest sessions (the `cache_dir`, `tiny_model_dir` and `qwen_tokenizer`
fixtures in conftest.py); only the determinism test below builds the tiny model again, and it is marked slow.
"""
from __future__ import annotations

import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import tiktoken
import torch
from tiktoken.load import load_tiktoken_bpe
from transformers import AutoModelForCausalLM, AutoTokenizer

from sft.model.qwen_vocab import (
    EOS_TOKEN,
    PAD_TOKEN,
    QWEN2_PATTERN,
    QWEN25_ADDED_TOKENS,
    build_once,
    ensure_qwen2_tokenizer,
    qwen_tiktoken_path,
)
from sft.model.tiny_model import PRETRAIN_STEPS, TINY_MODEL_NAME, demo_texts

ROOT = Path(__file__).resolve().parents[1]
CHINESE = "患者您好，根据您描述的症状，建议先测量血压，再到医院心内科就诊。"
ENGLISH = "The patient's blood pressure is 140/90 mmHg; follow up in 2 weeks.\n\nThanks!"


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_model_dir: Path):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_tiny_tokenizer_has_qwen_added_tokens_eos_and_pad(tiny_tokenizer) -> None:
    ids = [tiny_tokenizer.encode(content) for content, _special in QWEN25_ADDED_TOKENS]
    assert ids == [[index] for index in range(len(tiny_tokenizer) - len(QWEN25_ADDED_TOKENS), len(tiny_tokenizer))]
    assert tiny_tokenizer.eos_token == EOS_TOKEN
    assert tiny_tokenizer.pad_token == PAD_TOKEN
    assert tiny_tokenizer.bos_token is None
    assert 7000 <= len(tiny_tokenizer) <= 8192


@pytest.mark.parametrize("text", [CHINESE, ENGLISH, "emoji 🙂 and tab\tend"])
def test_tiny_tokenizer_round_trips_text(tiny_tokenizer, text: str) -> None:
    assert tiny_tokenizer.decode(tiny_tokenizer.encode(text)) == text


def test_tiny_tokenizer_learnt_chinese_merges(tiny_tokenizer) -> None:
    assert len(tiny_tokenizer.encode(CHINESE)) < len(CHINESE.encode("utf-8")) / 2


def test_tiny_tokenizer_reads_everyday_chinese_beyond_the_demo_data(tiny_tokenizer) -> None:
    """Trained on jieba's dictionary too: common words outside the medical demo text are whole tokens,
    not byte fragments, and take fewer tokens than characters."""
    text = "今天天气很好，我们一起去公园散步吧。这本书的内容非常有意思，推荐给大家。"
    assert not any(text in demo for demo in demo_texts())
    ids = tiny_tokenizer.encode(text, add_special_tokens=False)
    assert not [token for token in ids if "\ufffd" in tiny_tokenizer.decode([token])]
    assert len(ids) < len(text)


def test_tiny_model_loads_and_gives_a_finite_loss(tiny_model_dir: Path, tiny_tokenizer) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.model_type == "qwen2"
    assert model.config.vocab_size == len(tiny_tokenizer)
    ids = torch.tensor([tiny_tokenizer.apply_chat_template(
        [{"role": "user", "content": CHINESE}, {"role": "assistant", "content": ENGLISH}], tokenize=True, return_dict=False)])
    loss = model(input_ids=ids, labels=ids).loss
    assert torch.isfinite(loss)


@pytest.mark.slow
def test_concurrent_builds_agree_and_match_an_earlier_build(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Two processes racing on an empty cache both get the same complete dir (one builds, saying what and
    stage by stage, the other waits on the lock), byte-identical to the cached build (so builds are
    deterministic too)."""
    code = ("import logging, sys; logging.basicConfig(level=logging.INFO); from sft.model.tiny_model import ensure_tiny_model; "
            "print(ensure_tiny_model(sys.argv[1]))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [process.communicate(timeout=600) for process in processes]
    for process, (_stdout, stderr) in zip(processes, results):
        assert process.returncode == 0, stderr
    logs = [stderr for _stdout, stderr in results]
    assert sum(f"building the tiny model {TINY_MODEL_NAME}, once" in log for log in logs) == 1
    assert sum(f"tiny model pretraining: step {PRETRAIN_STEPS}/{PRETRAIN_STEPS}" in log and "tiny model 3/3: saved" in log for log in logs) == 1
    built_dir = tmp_path / "models" / TINY_MODEL_NAME
    assert [stdout.strip() for stdout, _stderr in results] == [str(built_dir)] * 2
    assert sorted(path.name for path in (tmp_path / "models").iterdir()) == [f".{built_dir.name}.lock", built_dir.name]
    for path in tiny_model_dir.iterdir():
        assert (built_dir / path.name).read_bytes() == path.read_bytes(), f"{path.name} differs between builds"


def test_build_once_builds_once_and_a_failed_build_leaves_nothing(tmp_path: Path) -> None:
    """A build that raises leaves neither a target nor a scratch dir, so the next call builds afresh;
    once built, the target is returned without building again."""
    target = tmp_path / "artefact"
    builds: list[str] = []

    def failing_build(scratch: Path) -> None:
        (scratch / "half").write_text("written before the failure")
        raise RuntimeError("build failed")

    def good_build(scratch: Path) -> None:
        builds.append(scratch.name)
        (scratch / "owner").write_text("built")

    with pytest.raises(RuntimeError, match="build failed"):
        build_once(target, failing_build)
    assert [path.name for path in tmp_path.iterdir()] == [".artefact.lock"]
    assert build_once(target, good_build) == target
    assert build_once(target, good_build) == target
    assert len(builds) == 1 and (target / "owner").read_text() == "built"
    assert sorted(path.name for path in tmp_path.iterdir()) == [".artefact.lock", "artefact"]


def test_qwen25_known_ids(qwen_tokenizer) -> None:
    assert qwen_tokenizer.encode("<|im_start|>system\n") == [151644, 8948, 198]
    assert qwen_tokenizer.encode("\n\n") == [271]
    assert qwen_tokenizer.encode("\n") == [198]


def test_qwen25_added_tokens_have_qwen_ids_and_special_flags(qwen_tokenizer) -> None:
    ids = [qwen_tokenizer.convert_tokens_to_ids(content) for content, _special in QWEN25_ADDED_TOKENS]
    assert ids == list(range(151643, 151665))
    assert len(qwen_tokenizer) == 151665
    kept = qwen_tokenizer.decode(ids, skip_special_tokens=True)
    assert kept == "".join(content for content, special in QWEN25_ADDED_TOKENS if not special)


def test_qwen25_eos_pad_and_length(qwen_tokenizer) -> None:
    assert (qwen_tokenizer.eos_token, qwen_tokenizer.eos_token_id) == ("<|im_end|>", 151645)
    assert (qwen_tokenizer.pad_token, qwen_tokenizer.pad_token_id) == ("<|endoftext|>", 151643)
    assert qwen_tokenizer.bos_token is None
    assert qwen_tokenizer.model_max_length == 131072


@pytest.mark.parametrize("text", [CHINESE, ENGLISH])
def test_qwen25_round_trips_text(qwen_tokenizer, text: str) -> None:
    ids = qwen_tokenizer.encode(text)
    assert len(ids) < len(text)
    assert qwen_tokenizer.decode(ids) == text


def test_qwen25_encodes_the_demo_data_as_qwens_own_tiktoken_does(qwen_tokenizer) -> None:
    """Qwen's reference tokenizer is tiktoken over the same ranks and regex; the fast one must agree."""
    reference = tiktoken.Encoding(
        "qwen", pat_str=QWEN2_PATTERN, mergeable_ranks=load_tiktoken_bpe(str(qwen_tiktoken_path())), special_tokens={})
    texts = [unicodedata.normalize("NFC", text) for text in demo_texts()] + [ENGLISH, "  spaces\t\ttabs 12345 ?!...\r\n"]
    assert qwen_tokenizer(texts, add_special_tokens=False)["input_ids"] == reference.encode_batch(texts)


def test_qwen25_chat_template(qwen_tokenizer) -> None:
    messages = [
        {"role": "system", "content": "你是医生。"},
        {"role": "user", "content": "我头疼。"},
        {"role": "assistant", "content": "请多休息。"},
    ]
    assert qwen_tokenizer.apply_chat_template(messages, tokenize=False) == (
        "<|im_start|>system\n你是医生。<|im_end|>\n<|im_start|>user\n我头疼。<|im_end|>\n"
        "<|im_start|>assistant\n请多休息。<|im_end|>\n")
    assert qwen_tokenizer.apply_chat_template(messages[1:2], tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n我头疼。<|im_end|>\n<|im_start|>assistant\n")


def test_missing_dashscope_names_the_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "dashscope", None)
    with pytest.raises(ModuleNotFoundError, match="pip install dashscope"):
        ensure_qwen2_tokenizer(tmp_path)
    assert [path.name for path in (tmp_path / "tokenizers").iterdir()] == [".qwen2.5-v1.lock"]
