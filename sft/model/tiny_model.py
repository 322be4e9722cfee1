"""A tiny Qwen2 model with its own 8k tokenizer, built on this machine so the quickstart, the sweep and
the tests run with no model hub and no GPU.

The tokenizer is a byte-level BPE with Qwen2's pre-tokenizer, added tokens and chat template, so the data
pipeline treats it exactly as Qwen2.5's (only the ids differ). Its vocabulary is trained on broad Chinese
that ships offline: the 50,000 most frequent words of jieba's dictionary, each repeated in proportion to
its count (about one repeat per 400 occurrences), the common CJK punctuation, and the demo data. Trained
on the demo text alone it split unseen Chinese into byte fragments (1.29 tokens per character, 54% of
them fragments, on held-out reviews; `python -m bench.tokenizer` measures it).
The model is initialised under a fixed seed and then pretrained for a few seconds on the raw demo text
(no chat format), so it starts like a small base model: its embeddings mean something, LoRA
fine-tuning on the chat-formatted data then visibly lowers the loss, as it does on a real model.
Its shapes, dtypes and modules are those of a real Qwen2, which is what the training code needs.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from sft.data.build_once import build_once
from sft.model.qwen_vocab import QWEN25_ADDED_TOKENS, add_qwen25_tokens, save_as_qwen25, set_qwen2_pipeline

TINY_MODEL_NAME = "tiny-qwen2-v5"
DATA_DIR = Path(__file__).resolve().parents[2] / "data"
VOCAB_SIZE = 8192  # BPE tokens plus the 22 added ones
MAX_POSITIONS = 4096
HIDDEN_SIZE = 64  # the width a LoRA rank cannot exceed (runs.schema.check_lora_rank)
SEED = 0
PRETRAIN_STEPS = 60
PRETRAIN_BATCH = 4
PRETRAIN_LENGTH = 128
PRETRAIN_LR = 3e-3
PRETRAIN_EMBEDDING_LR = 3e-2  # the tied embeddings / output layer; see _pretrain
DICTIONARY_WORDS = 50_000  # jieba's most frequent words; more add build time and little else
OCCURRENCES_PER_REPEAT = 400
CJK_PUNCTUATION = "，。、；：？！“”‘’（）《》〈〉【】「」『』—…·～．％＋－／"
PUNCTUATION_REPEATS = 1000
PRETRAIN_LOG_EVERY = 20

log = logging.getLogger(__name__)


def tiny_model_dir(cache_dir: str | Path) -> Path:
    """Where the tiny model lives in a cache dir, built or not."""
    return Path(cache_dir).expanduser() / "models" / TINY_MODEL_NAME


def ensure_tiny_model(cache_dir: str | Path) -> Path:
    """The dir of the tiny model and its tokenizer (`<cache_dir>/models/<TINY_MODEL_NAME>`), built on first use.

    Loads with `AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained`. Bump the
    version in TINY_MODEL_NAME whenever the recipe below changes, so old caches are not reused.
    """
    return build_once(tiny_model_dir(cache_dir), _build)


def _build(directory: Path) -> None:
    """Each stage says when it starts and how long it took: on a busy machine the build takes minutes, and a
    silent console looks like a hang."""
    started = time.perf_counter()
    log.info("building the tiny model %s, once: an %d-token BPE and a 2-layer Qwen2 pretrained for %d steps on "
             "the demo text; later runs load it from %s", TINY_MODEL_NAME, VOCAB_SIZE, PRETRAIN_STEPS, directory.parent / TINY_MODEL_NAME)
    log.info("tiny model 1/3: training the byte-level BPE on jieba's dictionary words and the demo text")
    tokenizer = _train_tokenizer(vocabulary_texts())
    save_as_qwen25(tokenizer, directory, model_max_length=MAX_POSITIONS)
    log.info("tiny model 2/3: pretraining the 2-layer model (%d steps)", PRETRAIN_STEPS)
    _save_model(directory, tokenizer)
    log.info("tiny model 3/3: saved in %.1f s", time.perf_counter() - started)


def demo_texts() -> Iterator[str]:
    """Every string in the shipped demo data (data/*.json), wherever it sits in the JSON."""
    paths = sorted(DATA_DIR.glob("*.json"))
    if not paths:
        raise FileNotFoundError(
            f"no demo data (*.json) in {DATA_DIR} to train the tiny tokenizer on; "
            "restore the project's data/ dir (git checkout data/) or regenerate it with sft/data/demo_data.py"
        )
    for path in paths:
        yield from _strings(json.loads(path.read_text(encoding="utf-8")))


def dictionary_words(limit: int = DICTIONARY_WORDS) -> list[tuple[str, int]]:
    """jieba's dictionary (word, count, tag per line; about 350k words): the `limit` most frequent."""
    from importlib.resources import files

    entries = []
    with (files("jieba") / "dict.txt").open(encoding="utf-8") as handle:
        for line in handle:
            word, count, *_ = line.split(" ")
            entries.append((word, int(count)))
    entries.sort(key=lambda entry: -entry[1])
    return entries[:limit]


def vocabulary_texts() -> Iterator[str]:
    """The BPE's training text: dictionary words (one per line, repeated by frequency), CJK punctuation
    and the demo data. Words stand alone, so merges stay inside words, as in running text they mostly do."""
    for word, count in dictionary_words():
        yield (word + "\n") * max(1, round(count / OCCURRENCES_PER_REPEAT))
    for mark in CJK_PUNCTUATION:
        yield (mark + "\n") * PUNCTUATION_REPEATS
    yield from demo_texts()


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _train_tokenizer(texts: Iterator[str]) -> Tokenizer:
    """Byte-level BPE with every byte in its alphabet, so any text encodes without an unknown token."""
    tokenizer = Tokenizer(models.BPE())
    set_qwen2_pipeline(tokenizer)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - len(QWEN25_ADDED_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    add_qwen25_tokens(tokenizer)
    return tokenizer


def _save_model(directory: Path, tokenizer: Tokenizer) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from transformers.utils import logging as transformers_logging

    config = Qwen2Config(
        vocab_size=tokenizer.get_vocab_size(with_added_tokens=True),
        hidden_size=HIDDEN_SIZE,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.token_to_id("<|im_end|>"),
        pad_token_id=tokenizer.token_to_id("<|endoftext|>"),
    )
    threads = torch.get_num_threads()
    # one thread: the same bytes on any machine (float sums split across threads round differently), and a
    # 64-wide model gains little from a second thread while on a busy machine OpenMP threads wait on each
    # other (measured 3 s a step with 2 threads, 0.36 s with 1, at load 13 on 2 cores)
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            model = Qwen2ForCausalLM(config)
            _pretrain(model, tokenizer)
    finally:
        torch.set_num_threads(threads)
    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # its "Writing model shards" bar was all a newcomer saw
    try:
        model.save_pretrained(directory)
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()


def _pretrain(model: Any, tokenizer: Tokenizer) -> None:
    """A few full-parameter steps of next-token prediction on the demo text, in fixed order.

    The embeddings (tied to the output layer: most of the parameters, and most of a step's cost) learn at
    10x the rate of the rest: initialised at 0.02, they grow by about the learning rate a step under Adam,
    so at the rest's rate they took most of the steps to reach a useful size. With that, 60 steps of 4
    chunks (30% of the tokens, about a quarter of the time) reach a lower loss than 100 steps of 8 at one
    rate did: 2.6 against 2.9, the mean over 64 demo chunks.
    """
    import torch

    ids = [token for text in demo_texts() for token in tokenizer.encode(text).ids + [tokenizer.token_to_id("<|endoftext|>")]]
    chunks = torch.tensor(ids[: len(ids) // PRETRAIN_LENGTH * PRETRAIN_LENGTH]).view(-1, PRETRAIN_LENGTH)
    order = torch.randperm(len(chunks))
    embeddings = model.get_input_embeddings().weight
    others = [parameter for parameter in model.parameters() if parameter is not embeddings]
    optimizer = torch.optim.AdamW([{"params": [embeddings], "lr": PRETRAIN_EMBEDDING_LR}, {"params": others}], lr=PRETRAIN_LR)
    model.train()
    for step in range(PRETRAIN_STEPS):
        rows = order[(step * PRETRAIN_BATCH + torch.arange(PRETRAIN_BATCH)) % len(chunks)]
        batch = chunks[rows]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if (step + 1) % PRETRAIN_LOG_EVERY == 0:
            log.info("tiny model pretraining: step %d/%d, loss %.2f", step + 1, PRETRAIN_STEPS, loss.item())
    model.eval()
