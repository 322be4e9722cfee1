"""Token ids of template slots, through tiktoken where it gives the HF tokenizer's ids exactly, else the HF
tokenizer itself.

Tokenizing is the whole cost of preparing a data set, and Chinese text makes it expensive: the HF fast
tokenizer spends about 1 µs per character (regex split, byte mapping, BPE, offsets nobody reads), so a
436k-row yiliao set takes 100+ core-seconds. tiktoken runs the same byte-level BPE 2.5x faster on one
core, and Qwen's vocabulary is a tiktoken vocabulary to begin with (qwen.tiktoken). The HF tokenizer stays
the reference (LLaMA-Factory tokenizes with it): tiktoken is used only for a tokenizer whose pipeline it can
reproduce (NFC or no normalizer, one regex split then byte-level, plain BPE, added tokens matched verbatim),
with merges in rank order, and only after it has given the same ids as the HF tokenizer on every probe
string, the data's own first rows included. Anything else falls back to the HF tokenizer, with the reason
logged.

tiktoken's BPE costs the square of a piece's length, and the split regex makes a whole run of Chinese
characters between two punctuation marks one piece (often 50-150 bytes). So the encoder splits with the
same regex itself and encodes each distinct piece once, from a per-process cache: each piece is encoded
alone in tiktoken too, so the ids are the same, and the rows of a data set share many of their pieces.

datasets' worker processes get the encoder by pickling. Pickled whole, a 150k-vocabulary encoder is 10 MB
and takes seconds to pickle and again to unpickle in each worker, so it pickles as a key: a worker forked
from the process that built it (datasets' workers on Linux) finds the very encoder it inherited, and a
worker started afresh rebuilds it from the tokenizer.json, without repeating the probe check.
"""
from __future__ import annotations

import functools
import json
import logging
import re
import unicodedata
import uuid
import weakref
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

PIECE_CACHE_SIZE = 200_000  # distinct split pieces kept per process (tens of MB); emptied when full

# strings where pre-tokenizers and normalizers disagree if they are going to: contractions, digit runs,
# whitespace runs and newlines, punctuation next to CJK, combining marks that NFC composes, emoji, and
# added tokens inside text
PROBE_TEXTS = (
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
    "I'm sure they'll say it's 2024-11-27 12:30:05; isn't it?  Yes!!\n\n\nNo\r\n  indented\ttab   ",
    "高血压患者能吃党参吗？\n\n可以，但要注意：每日 3～5 克，连服 2 周。（医生建议）",
    "e\u0301 vs \u00e9, A\u030a, \u1100\u1161\u11a8, ＡＢＣ１２３, ½ ², \u2028 \u00a0 \u3000end",
    "emoji 👩‍⚕️🩺 and math ∑x² ≠ ∞ <|im_end|> text <|im_start|>user\n<|endoftext|>",
    "   leading spaces, trailing spaces   \n",
    "",
)

# the encoders this process built or inherited by fork, by key: what an unpickled encoder is looked up in
_LIVE_ENCODERS: weakref.WeakValueDictionary[str, SlotEncoder] = weakref.WeakValueDictionary()


class SlotEncoder:
    """Encodes lists of strings to lists of token ids; picklable, so datasets' worker processes get it."""

    def __init__(self, tokenizer: Any, probe_texts: Iterable[str] = (), tokenizer_json: str | None = None) -> None:
        """`tokenizer_json`: the backend tokenizer's `to_str()` when the caller has it already (it takes ~0.3 s
        for a 150k vocabulary)."""
        self.backend = tokenizer.backend_tokenizer
        self.tokenizer_json = tokenizer_json or self.backend.to_str()
        self.split_special_tokens = bool(getattr(tokenizer, "split_special_tokens", False))
        self.encoding, self.normalize_nfc, self.added_ids, self.added_pattern, self.split_pattern = None, False, {}, None, None
        self.piece_ids: dict[str, list[int]] = {}
        reason = self._use_tiktoken(tokenizer, [*PROBE_TEXTS, *probe_texts], self.tokenizer_json)
        if reason:
            self.encoding = None
            log.info("tokenizing with the HF tokenizer (tiktoken not used: %s)", reason)
        else:
            log.info("tokenizing with tiktoken, checked against the HF tokenizer")
        self.key = uuid.uuid4().hex
        _LIVE_ENCODERS[self.key] = self

    def __reduce__(self) -> tuple[Any, tuple[str, str, bool, bool]]:
        return _encoder_in_this_process, (self.key, self.tokenizer_json, self.split_special_tokens, self.uses_tiktoken)

    @property
    def uses_tiktoken(self) -> bool:
        return self.encoding is not None

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each string (no special tokens added); each distinct string encoded once (the
        system prompt repeats in nearly every row)."""
        distinct = list(dict.fromkeys(texts))
        if not distinct:
            return []
        encoded = self._tiktoken_ids(distinct) if self.encoding is not None else self._hf_ids(distinct)
        ids = dict(zip(distinct, encoded))
        return [ids[text] for text in texts]

    def _hf_ids(self, texts: list[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self.backend.encode_batch(texts, add_special_tokens=False)]

    def _tiktoken_ids(self, texts: list[str]) -> list[list[int]]:
        """The HF tokenizer's order of work: added tokens split out verbatim (leftmost, longest first),
        each segment between them normalized, then split and BPE-encoded. Each distinct segment once: the
        template's own ("\n", "assistant\n") recur in every row."""
        parts = [self.added_pattern.split(text) for text in texts]
        segments = dict.fromkeys(segment for text_parts in parts for segment in text_parts[0::2])
        for segment in segments:
            segments[segment] = self._ordinary_ids(unicodedata.normalize("NFC", segment) if self.normalize_nfc else segment)
        encoded = []
        for text_parts in parts:
            ids = list(segments[text_parts[0]])
            for index in range(1, len(text_parts), 2):
                ids.append(self.added_ids[text_parts[index]])
                ids += segments[text_parts[index + 1]]
            encoded.append(ids)
        return encoded

    def _ordinary_ids(self, text: str) -> list[int]:
        """tiktoken's encode_ordinary, one split piece at a time, each distinct piece BPE-encoded once."""
        ids: list[int] = []
        piece_ids = self.piece_ids
        for piece in self.split_pattern.findall(text):
            try:
                ids += piece_ids[piece]
            except KeyError:
                if len(piece_ids) >= PIECE_CACHE_SIZE:
                    piece_ids.clear()
                ids += piece_ids.setdefault(piece, self.encoding.encode_ordinary(piece))
        return ids

    def _use_tiktoken(self, tokenizer: Any, probe_texts: list[str], tokenizer_json: str) -> str:
        """Set up tiktoken for this tokenizer; the reason it cannot be used, or "" when it can."""
        try:
            import tiktoken  # noqa: F401  (only whether it is installed)
        except ImportError:
            return "tiktoken is not installed (pip install tiktoken)"
        setup = _tiktoken_setup(tokenizer_json, self.split_special_tokens)
        if isinstance(setup, str):
            return setup
        self._set_tiktoken(setup)
        texts = list(dict.fromkeys(probe_texts))
        for text, tiktoken_ids, hf_ids in zip(texts, self._tiktoken_ids(texts), self._hf_ids(texts)):
            if tiktoken_ids != hf_ids:
                return f"its ids differ from the HF tokenizer's on {text[:60]!r}"
        return ""

    def _set_tiktoken(self, setup: tuple[Any, bool, dict[str, int], re.Pattern, Any]) -> None:
        self.encoding, self.normalize_nfc, self.added_ids, self.added_pattern, self.split_pattern = setup


def _encoder_in_this_process(key: str, tokenizer_json: str, split_special_tokens: bool, uses_tiktoken: bool) -> SlotEncoder:
    """An unpickled encoder: the one this process built or inherited by fork, else rebuilt as its builder
    set it up (tiktoken or not, as the builder's probe check decided)."""
    encoder = _LIVE_ENCODERS.get(key)
    if encoder is None:
        from tokenizers import Tokenizer

        encoder = SlotEncoder.__new__(SlotEncoder)
        encoder.backend, encoder.tokenizer_json, encoder.split_special_tokens = Tokenizer.from_str(tokenizer_json), tokenizer_json, split_special_tokens
        encoder.encoding, encoder.piece_ids, encoder.key = None, {}, key
        if uses_tiktoken:
            encoder._set_tiktoken(_tiktoken_setup(tokenizer_json, split_special_tokens))
        _LIVE_ENCODERS[key] = encoder
    return encoder


@functools.lru_cache(maxsize=2)
def _tiktoken_setup(serialized: str, split_special_tokens: bool) -> tuple[Any, bool, dict[str, int], re.Pattern, Any] | str:
    """tiktoken's encoding, whether to NFC-normalize, the added tokens and the pattern that splits them out, and
    the split regex (compiled with `regex`, which reads its \\p{L} classes), for a tokenizer.json; or the reason
    tiktoken cannot reproduce it.

    Cached: parsing a 150k-token vocabulary and building its ranks takes seconds, and every data set a
    process prepares with the same tokenizer (each test, each cache miss of a sweep's trials) would pay them.
    """
    import regex
    import tiktoken

    spec = json.loads(serialized)
    reason = _unsupported_pipeline(spec, split_special_tokens)
    if reason:
        return reason
    model = spec["model"]
    vocab: dict[str, int] = model["vocab"]
    merges = [tuple(merge.split(" ", 1)) if isinstance(merge, str) else tuple(merge) for merge in model["merges"]]
    merged_ranks = [vocab.get(left + right, -1) for left, right in merges]
    if min(merged_ranks, default=0) < 0:
        return "a merge makes a token missing from the vocabulary"
    if any(later < earlier for earlier, later in zip(merged_ranks, merged_ranks[1:])):
        return "merges are not in the order of their tokens' ids, so BPE priorities would differ"
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_of = {char: byte for byte, char in bytes_to_unicode().items()}
    try:
        ranks = {bytes(byte_of[char] for char in token): rank for token, rank in vocab.items()}
    except KeyError:
        return "a vocabulary entry is not byte-level text"
    if len(ranks) != len(vocab) or not all(bytes([byte]) in ranks for byte in range(256)):
        return "the vocabulary does not hold each of the 256 bytes exactly once"
    added = {token["content"]: token["id"] for token in spec["added_tokens"]}
    if set(added.values()) & set(ranks.values()):
        return "an added token shares an id with a vocabulary entry"
    split_regex = spec["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"]
    try:
        encoding = tiktoken.Encoding(f"lorasweep-{len(ranks)}", pat_str=split_regex, mergeable_ranks=ranks, special_tokens={})
        split_pattern = regex.compile(split_regex)
    except (ValueError, regex.error) as error:
        return f"the split regex does not compile for tiktoken or regex ({error})"
    added_pattern = re.compile("(" + "|".join(re.escape(token) for token in sorted(added, key=len, reverse=True)) + ")") if added else re.compile("(?!)")
    return encoding, spec.get("normalizer") is not None, added, added_pattern, split_pattern


def _unsupported_pipeline(spec: dict[str, Any], split_special_tokens: bool) -> str:
    """What, if anything, in a tokenizer.json pipeline tiktoken cannot reproduce."""
    model, pre_tokenizer, normalizer = spec.get("model") or {}, spec.get("pre_tokenizer") or {}, spec.get("normalizer")
    if model.get("type") != "BPE" or model.get("dropout") or model.get("byte_fallback"):
        return "the model is not a plain BPE"
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        return "the BPE marks word pieces"
    if normalizer is not None and normalizer.get("type") != "NFC":
        return f"the normalizer is {normalizer.get('type')}, not NFC"
    steps = pre_tokenizer.get("pretokenizers") if pre_tokenizer.get("type") == "Sequence" else None
    if not steps or len(steps) != 2:
        return "the pre-tokenizer is not a regex split followed by byte-level"
    split, byte_level = steps
    if split.get("type") != "Split" or "Regex" not in (split.get("pattern") or {}) or split.get("behavior") != "Isolated" or split.get("invert"):
        return "the pre-tokenizer's split is not one isolating regex"
    if byte_level.get("type") != "ByteLevel" or byte_level.get("add_prefix_space") or byte_level.get("use_regex"):
        return "the byte-level step adds a prefix space or splits again"
    if any(token["normalized"] or token["lstrip"] or token["rstrip"] or token["single_word"] for token in spec.get("added_tokens", [])):
        return "an added token is normalized, stripped or single-word"
    if split_special_tokens:
        return "split_special_tokens is on"
    return ""
