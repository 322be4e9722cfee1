"""Qwen2.5's tokenizer, rebuilt offline, and the conventions any Qwen2-style tokenizer here shares.

No model hub is reachable from these machines, yet our token ids must be Qwen2.5's so that loss values
match LLaMA-Factory's (docs/parity.md rule 9). Qwen2.5's byte-level BPE ranks ship in dashscope's
`qwen.tiktoken`; transformers' TikTokenConverter recovers the merges from them. The tiny model's tokenizer
(sft/model/tiny_model.py) uses the same pre-tokenizer, added tokens and chat template, so code written against
one works with the other.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors

from sft.data.build_once import build_once

QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Qwen2.5's added tokens in id order (151643 on); True where its tokenizer_config marks them special.
QWEN25_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"
QWEN25_MAX_LENGTH = 131072
QWEN25_CACHE_NAME = "qwen2.5-v1"

# Qwen2.5-Instruct's chat template, verbatim from its tokenizer_config.json.
QWEN25_CHAT_TEMPLATE = (
    "{%- if tools %}\n"
    "    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n"
    "    {%- else %}\n"
    "        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n"
    "    {%- endif %}\n"
    "    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n"
    "        {{- \"\\n\" }}\n"
    "        {{- tool | tojson }}\n"
    "    {%- endfor %}\n"
    "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, "
    "\\\"arguments\\\": <args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n"
    "{%- else %}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "    {%- else %}\n"
    "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    "<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or "
    "(message.role == \"assistant\" and not message.tool_calls) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n"
    "        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n"
    "            {{- '\\n' + message.content }}\n"
    "        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n"
    "            {%- endif %}\n"
    "            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n"
    "            {{- tool_call.name }}\n"
    "            {{- '\", \"arguments\": ' }}\n"
    "            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n"
    "        {%- endfor %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    "    {%- elif message.role == \"tool\" %}\n"
    "        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n"
    "        {%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n"
    "        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
    "            {{- '<|im_end|>\\n' }}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)


def qwen2_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """Qwen2's split: its regex (single digits, CJK runs kept whole), then bytes mapped as in GPT-2."""
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def set_qwen2_pipeline(tokenizer: Tokenizer) -> None:
    """Qwen2.5's normalizer, pre-tokenizer and byte-level decoding; set before training so the merges
    are learnt on the same pieces that encoding will see."""
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = qwen2_pre_tokenizer()
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)


def add_qwen25_tokens(tokenizer: Tokenizer) -> None:
    """Append Qwen2.5's added tokens in its order, so they take the ids right after the BPE vocabulary
    (151643 on for the real one); add them only once the vocabulary is final."""
    for content, special in QWEN25_ADDED_TOKENS:
        token = AddedToken(content, single_word=False, lstrip=False, rstrip=False, normalized=False, special=special)
        if special:
            tokenizer.add_special_tokens([token])
        else:
            tokenizer.add_tokens([token])


def save_as_qwen25(tokenizer: Tokenizer, directory: Path, model_max_length: int) -> None:
    """Save as a fast tokenizer with Qwen2.5's eos/pad (no bos) and chat template, for AutoTokenizer."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=None,
        bos_token=None,
        model_max_length=model_max_length,
        chat_template=QWEN25_CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
    )
    fast.save_pretrained(directory)


def qwen2_tokenizer_dir(cache_dir: str | Path) -> Path:
    """Where Qwen2.5's rebuilt tokenizer lives in a cache dir, built or not."""
    return Path(cache_dir).expanduser() / "tokenizers" / QWEN25_CACHE_NAME


def ensure_qwen2_tokenizer(cache_dir: str | Path) -> Path:
    """The dir of Qwen2.5's tokenizer (`<cache_dir>/tokenizers/qwen2.5-v1`), built from dashscope's
    qwen.tiktoken on first use; loads with `AutoTokenizer.from_pretrained`."""
    return build_once(qwen2_tokenizer_dir(cache_dir), _build_qwen25)


def qwen_tiktoken_path() -> Path:
    """dashscope's copy of Qwen's BPE ranks (base64 token, rank; 151,643 lines), found without importing
    dashscope, whose import pulls in its whole API client."""
    spec = importlib.util.find_spec("dashscope")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "building Qwen2.5's tokenizer offline needs qwen.tiktoken from the dashscope package: "
            "pip install dashscope (or the project's extra: pip install -e \".[qwen-vocab]\")"
        )
    path = Path(spec.submodule_search_locations[0]) / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing from the installed dashscope: reinstall it (pip install --force-reinstall dashscope)"
        )
    return path


def _build_qwen25(directory: Path) -> None:
    from transformers.convert_slow_tokenizer import TikTokenConverter

    tokenizer = TikTokenConverter(vocab_file=str(qwen_tiktoken_path()), pattern=QWEN2_PATTERN).tokenizer()
    set_qwen2_pipeline(tokenizer)
    add_qwen25_tokens(tokenizer)
    save_as_qwen25(tokenizer, directory, model_max_length=QWEN25_MAX_LENGTH)
