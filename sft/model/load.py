"""The base model and tokenizer (hub id, ModelScope id, local dir, or a locally built one) plus LoRA.

`builtin:` names are built on this machine and cached, so the quickstart and the tests need no hub:
`builtin:tiny-qwen2` (a tiny Qwen2 with an 8k vocabulary) and, as a tokenizer,
`builtin:qwen2.5-tokenizer` (Qwen2.5's real vocabulary rebuilt from dashscope's qwen.tiktoken).
"""
from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from sft.lifecycle.errors import ConfigError

log = logging.getLogger(__name__)

BUILTIN_MODELS = ("builtin:tiny-qwen2",)
BUILTIN_TOKENIZERS = ("builtin:tiny-qwen2", "builtin:qwen2.5-tokenizer")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
LORA_DTYPES = ("fp32", "compute")
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def resolve_precision(precision: str) -> str:
    """auto: bf16 on a GPU that supports it, else fp32 (fp16 is only used when asked for)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"trainer.precision={precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"


def resolve_dtype(dtype: str, precision: str) -> torch.dtype:
    if dtype == "auto":
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    if dtype not in DTYPES:
        raise ConfigError(f"model.dtype={dtype!r}: choose auto or one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def local_path(name_or_path: str, cache_dir: str | Path, revision: str | None = None) -> str:
    """A builtin name built into the cache, a ModelScope id downloaded (USE_MODELSCOPE_HUB=1), else as is."""
    if name_or_path.startswith("builtin:"):
        if name_or_path == "builtin:tiny-qwen2":
            from sft.model.tiny_model import ensure_tiny_model

            return str(ensure_tiny_model(cache_dir))
        if name_or_path == "builtin:qwen2.5-tokenizer":
            from sft.model.qwen_vocab import ensure_qwen2_tokenizer

            return str(ensure_qwen2_tokenizer(cache_dir))
        raise ConfigError(f"unknown builtin {name_or_path!r}; known: {', '.join(BUILTIN_TOKENIZERS)}")
    if Path(name_or_path).exists():
        return name_or_path
    if os.environ.get("USE_MODELSCOPE_HUB", "0").lower() in ("1", "true"):
        try:
            from modelscope import snapshot_download
        except ImportError as error:
            raise ConfigError(f"USE_MODELSCOPE_HUB=1 needs the modelscope package: pip install -e \".[modelscope]\" (model {name_or_path!r})") from error

        return snapshot_download(name_or_path, revision=revision or "master")
    return name_or_path


def _hub_error(name: str, error: Exception) -> ConfigError:
    first_line = (str(error).strip().splitlines() or [""])[0]  # huggingface_hub's errors run to many lines
    return ConfigError(
        f"could not load {name!r} ({type(error).__name__}: {first_line}). It is neither a local dir nor reachable "
        f"on the hub from here: download it (`hf download {name} --local-dir DIR`, or `modelscope download`) and "
        "set model.name_or_path=DIR, set USE_MODELSCOPE_HUB=1 for ModelScope, or use model=tiny offline"
    )


def check_vocab(tokenizer: Any, model: Any) -> None:
    """Every token id the tokenizer can give must have a row in the model's embeddings, or training
    stops minutes in with an IndexError that names neither."""
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise ConfigError(
            f"the tokenizer ({tokenizer.name_or_path}) has {len(tokenizer)} tokens but the model's embeddings have "
            f"{rows} rows, so ids >= {rows} cannot be embedded; use the model's own tokenizer (model.tokenizer=null) "
            "or a model and tokenizer that belong together"
        )


def load_tokenizer(model_cfg: Any, cache_dir: str | Path) -> Any:
    from transformers import AutoTokenizer

    name = model_cfg.tokenizer or model_cfg.name_or_path
    path = local_path(name, cache_dir, model_cfg.revision)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=model_cfg.trust_remote_code, revision=model_cfg.revision)
    except OSError as error:
        raise _hub_error(name, error) from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    model_cfg: Any, lora_cfg: Any, precision: str, cache_dir: str | Path, gradient_checkpointing: bool, attn_implementation: str = "auto"
) -> Any:
    """The base model in its compute dtype with LoRA adapters, their weights in lora.dtype: fp32 (as
    LLaMA-Factory keeps them; under bf16 autocast every LoRA matmul then casts its input and weights) or
    compute (the model's dtype: no casts, bf16 optimizer updates).

    attn_implementation: "auto" (transformers' choice) or a name, e.g. the padding-free one that
    sft.recipe.batching chose."""
    from peft import get_peft_model

    adapter_dtype = lora_cfg.get("dtype", "fp32")
    if adapter_dtype not in LORA_DTYPES:
        raise ConfigError(f"lora.dtype={adapter_dtype!r}: choose fp32 (LLaMA-Factory's adapters) or compute (the model's dtype)")
    model = load_base_model(model_cfg, precision, cache_dir, attn_implementation)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.config.use_cache = False
    with peft_quiet():
        # peft creates the adapters in the base layer's dtype and, with autocast_adapter_dtype, raises bf16/fp16 ones to fp32
        model = get_peft_model(model, lora_config(lora_cfg), autocast_adapter_dtype=adapter_dtype == "fp32")
    if adapter_dtype == "fp32":
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.data = parameter.data.to(torch.float32)
    return model


@contextmanager
def peft_quiet() -> Iterator[None]:
    """peft's PeftModel.__init__ reads model.is_gradient_checkpointing, which transformers 5 deprecates
    ("FutureWarning: `is_gradient_checkpointing` is deprecated ... Use `is_activation_checkpointing`"): not
    ours to act on, and printed once per trial in a sweep and once per `python -m judge`."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def load_base_model(model_cfg: Any, precision: str, cache_dir: str | Path, attn_implementation: str = "auto") -> Any:
    """The base model alone, in its compute dtype: what training puts LoRA on and what evaluation
    and merging put a trained adapter on."""
    from transformers import AutoModelForCausalLM

    path = local_path(model_cfg.name_or_path, cache_dir, model_cfg.revision)
    kwargs: dict[str, Any] = {"dtype": resolve_dtype(model_cfg.dtype, precision), "trust_remote_code": model_cfg.trust_remote_code}
    if attn_implementation != "auto":
        kwargs["attn_implementation"] = attn_implementation
    try:
        return AutoModelForCausalLM.from_pretrained(path, revision=model_cfg.revision, **kwargs)
    except OSError as error:
        raise _hub_error(model_cfg.name_or_path, error) from error


def lora_config(lora_cfg: Any) -> Any:
    """PEFT's LoraConfig from LLaMA-Factory-style settings (`target: all` = every linear but lm_head)."""
    from peft import LoraConfig

    target = lora_cfg.target
    if isinstance(target, str):
        target = "all-linear" if target == "all" else [name.strip() for name in target.split(",")]
    else:
        target = list(target)
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=int(lora_cfg.rank),
        lora_alpha=float(lora_cfg.alpha),
        lora_dropout=float(lora_cfg.dropout),
        target_modules=target,
        use_rslora=bool(lora_cfg.use_rslora),
        use_dora=bool(lora_cfg.use_dora),
    )
