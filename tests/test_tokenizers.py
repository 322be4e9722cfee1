"""The locally built tokenizers and the tiny model: what the data pipeline and the trainer rely on.

Builds happen once per session (the `cache_dir`, `tiny_model_dir` and `qwen_tokenizer` fixtures in
conftest.py).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sft.qwen_vocab import EOS_TOKEN, PAD_TOKEN, QWEN25_ADDED_TOKENS, build_once

ROOT = Path(__file__).resolve().parents[1]
CHINESE = "患者您好，根据您描述的症状，建议先测量血压，再到医院心内科就诊。"
ENGLISH = "The patient's blood pressure is 140/90 mmHg; follow up in 2 weeks.\n\nThanks!"


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_model_dir: Path):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_tiny_tokenizer_has_qwen_added_tokens_eos_and_pad(tiny_tokenizer) -> None:
    vocab = tiny_tokenizer.get_vocab()
    for content, _special in QWEN25_ADDED_TOKENS:
        assert content in vocab
        assert tiny_tokenizer.encode(content) == [vocab[content]]
    assert tiny_tokenizer.eos_token == EOS_TOKEN
    assert tiny_tokenizer.pad_token == PAD_TOKEN
    assert tiny_tokenizer.bos_token is None
    assert 7000 <= len(tiny_tokenizer) <= 8192


@pytest.mark.parametrize("text", [CHINESE, ENGLISH, "emoji 🙂 and tab\tend"])
def test_tiny_tokenizer_round_trips_text(tiny_tokenizer, text: str) -> None:
    assert tiny_tokenizer.decode(tiny_tokenizer.encode(text)) == text


def test_tiny_tokenizer_learnt_chinese_merges(tiny_tokenizer) -> None:
    assert len(tiny_tokenizer.encode(CHINESE)) < len(CHINESE.encode("utf-8")) / 2


def test_tiny_model_loads_and_gives_a_finite_loss(tiny_model_dir: Path, tiny_tokenizer) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.model_type == "qwen2"
    assert model.config.vocab_size == len(tiny_tokenizer)
    ids = torch.tensor([tiny_tokenizer.apply_chat_template(
        [{"role": "user", "content": CHINESE}, {"role": "assistant", "content": ENGLISH}], tokenize=True, return_dict=False)])
    loss = model(input_ids=ids, labels=ids).loss
    assert torch.isfinite(loss)


def test_concurrent_builds_agree_and_match_an_earlier_build(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Two processes racing on an empty cache both get the same complete dir, byte-identical to the
    session's own build (so builds are deterministic too)."""
    code = "import sys; from sft.tiny_model import ensure_tiny_model; print(ensure_tiny_model(sys.argv[1]))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [process.communicate(timeout=120) for process in processes]
    for process, (_stdout, stderr) in zip(processes, results):
        assert process.returncode == 0, stderr
    built_dir = tmp_path / "models" / "tiny-qwen2-v1"
    assert [stdout.strip() for stdout, _stderr in results] == [str(built_dir)] * 2
    assert [path.name for path in (tmp_path / "models").iterdir()] == [built_dir.name]
    for path in tiny_model_dir.iterdir():
        assert (built_dir / path.name).read_bytes() == path.read_bytes(), f"{path.name} differs between builds"


def test_build_once_keeps_the_first_finished_build(tmp_path: Path) -> None:
    """The loser of a race discards its own build and returns the winner's."""
    target = tmp_path / "artefact"

    def losing_build(scratch: Path) -> None:
        (scratch / "owner").write_text("loser")
        build_once(target, lambda winner: (winner / "owner").write_text("winner"))

    assert build_once(target, losing_build) == target
    assert (target / "owner").read_text() == "winner"
    assert [path.name for path in tmp_path.iterdir()] == ["artefact"]
