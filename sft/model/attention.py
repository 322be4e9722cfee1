"""Attention for padding-free batches: pick the implementation, and provide "sdpa_varlen" where no
varlen kernel exists (CPU, or a GPU without flash-attn).

"sdpa_varlen" runs torch's scaled_dot_product_attention once per sample of a flattened batch, causal
within the sample, using the cu_seq_lens_q boundaries that PaddingFreeCollator puts in the batch. So it
costs sum(len_i^2) like the samples run alone, where a dense block-diagonal mask costs (sum len_i)^2.
Batches without boundaries (padded ones, generation) get plain sdpa. Importing this module registers
it with transformers' AttentionInterface, so `attn_implementation="sdpa_varlen"` works in from_pretrained
and in a config.

DocumentMask is flex_attention's BlockMask of a padding-free row, worked out by the collator on the CPU.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask
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


def padding_free_attention(requested: str = "auto", device: torch.device | str | None = None, compiled: bool = False) -> str:
    """The attn_implementation for padding-free batches. auto: flex_attention on a CUDA device (a
    document BlockMask, compiled, skips the masked blocks), else sdpa_varlen, or, when the decoder layers
    are compiled (trainer.compile), sdpa with the dense mask: sdpa_varlen's loop over the samples would
    recompile the layers for every batch. "sdpa" means the dense block-diagonal mask
    (PaddingFreeCollator(dense_mask=True)): exact everywhere, T*T memory."""
    if requested not in PADDING_FREE_CHOICES:
        raise ValueError(f"unknown padding-free attention {requested!r}; choose one of {', '.join(PADDING_FREE_CHOICES)}")
    if requested != "auto":
        return requested
    on_cuda = torch.device(device).type == "cuda" if device is not None else torch.cuda.is_available()
    if on_cuda:
        return "flex_attention"
    return "sdpa" if compiled else SDPA_VARLEN


FLEX_BLOCK = 128  # flex_attention's default block size: a BlockMask says which 128 x 128 tiles hold any pair


def document_causal(document_ids: torch.Tensor) -> Callable[..., torch.Tensor]:
    """flex_attention's mask_mod: a query attends to the keys of its own sample up to itself."""

    def mask_mod(batch: torch.Tensor, head: torch.Tensor, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        return (document_ids[query] == document_ids[key]) & (query >= key)

    return mask_mod


class DocumentMask:
    """The BlockMask of a padding-free row [1, T] (each sample causal within itself), worked out on the CPU
    from the collator's boundaries: which tiles are empty, full or partial follows from the first and last
    sample of each tile, O((T / 128)^2) small ints, where create_block_mask would evaluate the mask at
    every one of the T*T pairs. The batch carries it as its attention_mask; moving the batch to the device
    (`to`, as the Trainer's dataloader moves every batch, non-blocking from pinned memory) gives the
    BlockMask itself, which transformers passes to flex_attention as it is."""

    def __init__(self, cu_seq_lens: torch.Tensor) -> None:
        lengths = (cu_seq_lens[1:] - cu_seq_lens[:-1]).long()
        self.length = int(cu_seq_lens[-1])
        blocks = -(-self.length // FLEX_BLOCK)
        # beyond the row, up to the last tile's end, the id -1: no token of the row attends there
        self.document_ids = torch.full((blocks * FLEX_BLOCK,), -1, dtype=torch.int32)
        self.document_ids[: self.length] = torch.repeat_interleave(torch.arange(len(lengths), dtype=torch.int32), lengths)
        tiles = self.document_ids.view(blocks, FLEX_BLOCK)
        first, last = tiles[:, 0], tiles.max(dim=1).values  # sample ids rise along the row
        whole = (first == last) & (tiles[:, -1] >= 0)  # one sample fills the tile
        query, key = torch.arange(blocks)[:, None], torch.arange(blocks)[None, :]
        # an earlier tile shares a sample with a query tile only if it ends with the sample the query tile starts with
        touching = (key == query) | ((key < query) & (last[key] == first[query]))
        full = (key < query) & whole[key] & whole[query] & (first[key] == first[query])
        self.tables = (*ordered(touching & ~full), *ordered(full))

    def _moved(self, move: Callable[[torch.Tensor], torch.Tensor]) -> DocumentMask:
        moved = object.__new__(DocumentMask)
        moved.length, moved.document_ids, moved.tables = self.length, move(self.document_ids), tuple(move(t) for t in self.tables)
        return moved

    def pin_memory(self) -> DocumentMask:
        """The DataLoader's pin_memory=True calls this, so the copy to the GPU can overlap the work before it."""
        return self._moved(torch.Tensor.pin_memory)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> BlockMask:
        moved = self._moved(lambda tensor: tensor.to(device, non_blocking=non_blocking))
        return BlockMask.from_kv_blocks(*moved.tables, BLOCK_SIZE=FLEX_BLOCK, mask_mod=document_causal(moved.document_ids),
                                        seq_lengths=(self.length, self.length))


def ordered(tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A [tiles, tiles] boolean table as BlockMask's (counts [1, 1, tiles], indices [1, 1, tiles, tiles]): per
    query tile, how many key tiles are set and which, those first."""
    counts = tiles.sum(dim=1).to(torch.int32)
    indices = torch.argsort((~tiles).to(torch.int8), dim=1, stable=True).to(torch.int32)
    return counts[None, None], indices[None, None]
