"""Attention for padding-free batches: pick the implementation, and provide "sdpa_varlen" where no
varlen kernel exists (CPU, or a GPU without flash-attn).

"sdpa_varlen" runs torch's scaled_dot_product_attention once per sample of a flattened batch, causal
within the sample, using the cu_seq_lens_q boundaries that PaddingFreeCollator puts in the batch. So it
costs sum(len_i^2) like the samples run alone, where a dense block-diagonal mask costs (sum len_i)^2.
Batches without boundaries (padded ones, generation) get plain sdpa. Importing this module registers
it with transformers' AttentionInterface, so `attn_implementation="sdpa_varlen"` works in from_pretrained
and in a config.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

SDPA_VARLEN = "sdpa_varlen"
PADDING_FREE_CHOICES = ("auto", SDPA_VARLEN, "flex_attention", "flash_attention_2", "flash_attention_3", "sdpa")


def sdpa_varlen_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    cu_seq_lens_q: torch.Tensor | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers attention function; query [B, heads, T, dim], returns [B, T, heads, dim]."""
    if cu_seq_lens_q is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    if query.shape[0] != 1:
        raise ValueError(f"sdpa_varlen got a batch of {query.shape[0]} rows with cu_seq_lens_q; a padding-free batch is one row [1, total_len]")
    bounds = cu_seq_lens_q.tolist()
    grouped_query = query.shape[1] != key.shape[1]
    outputs = [
        F.scaled_dot_product_attention(
            query[:, :, start:end], key[:, :, start:end], value[:, :, start:end],
            dropout_p=dropout, scale=scaling, is_causal=True, enable_gqa=grouped_query,
        )
        for start, end in zip(bounds[:-1], bounds[1:])
    ]
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous(), None


def sdpa_varlen_mask(batch_size: int, q_length: int, kv_length: int, q_offset: int = 0, kv_offset: int = 0,
                     attention_mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor | None:
    """sdpa's mask, except for one unpadded row without a cache offset: no mask at all. That row is either a
    padding-free batch, whose boundaries sdpa_varlen_attention reads from cu_seq_lens_q (transformers would
    otherwise build a dense [T, T] block-diagonal mask from the position ids, every step, for nothing), or a
    single sequence, which sdpa's is_causal covers."""
    if batch_size == 1 and attention_mask is None and q_length == kv_length and q_offset == 0 and kv_offset == 0:
        return None
    return sdpa_mask(batch_size=batch_size, q_length=q_length, kv_length=kv_length, q_offset=q_offset, kv_offset=kv_offset,
                     attention_mask=attention_mask, **kwargs)


AttentionInterface.register(SDPA_VARLEN, sdpa_varlen_attention)
AttentionMaskInterface.register(SDPA_VARLEN, sdpa_varlen_mask)


def flex_attention_available() -> bool:
    try:
        from torch.nn.attention.flex_attention import create_block_mask  # noqa: F401
    except ImportError:
        return False
    return True


def padding_free_attention(requested: str = "auto", device: torch.device | str | None = None) -> str:
    """The attn_implementation for padding-free batches. auto: flex_attention on a CUDA device (a
    document BlockMask, compiled, skips the masked blocks), else sdpa_varlen. "sdpa" means the dense
    block-diagonal mask (PaddingFreeCollator(dense_mask=True)): exact everywhere, T*T memory."""
    if requested not in PADDING_FREE_CHOICES:
        raise ValueError(f"unknown padding-free attention {requested!r}; choose one of {', '.join(PADDING_FREE_CHOICES)}")
    if requested != "auto":
        return requested
    on_cuda = torch.device(device).type == "cuda" if device is not None else torch.cuda.is_available()
    return "flex_attention" if on_cuda and flex_attention_available() else SDPA_VARLEN
