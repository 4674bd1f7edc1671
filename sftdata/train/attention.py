"""Documents never see each other: the model inputs for a packed micro-batch, per attention path.

Position ids restart at 0 at every document (RoPE then sees each document as if alone). Attention
isolation depends on the kernel, and each path hands transformers (5.x) something it passes
through unchanged:

- `flash_attention_2`: the rows are concatenated into one (1, total) row with no padding, and
  `cu_seq_lens_q/k` + `max_length_q/k` (FlashAttention varlen kwargs) come from `doc_lens`. No mask
  tensor, no wasted FLOPs on padding or across documents.
- `sdpa`: a 4-D bool mask (B, 1, L, L), True = may attend, block-diagonal and causal. transformers
  returns a 4-D mask as-is. Costs L*L bytes per row (16 MiB at 4,096) and keeps SDPA off its
  flash kernel, so on a GPU prefer flash-attn or flex.
- `flex_attention`: a `BlockMask` from the same segment ids; blocks across documents are skipped.
- `eager`: the same mask as an additive float (0 / dtype min), which eager attention adds.

Why not rely on transformers' own packed-sequence detection (position_ids with no mask)? It
infers boundaries from "position did not go up by 1", is disabled under tracing, and is an
implicit contract; building the mask from `doc_lens` is explicit and tested against running each
document alone (tests/test_train_packing.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sftdata.train.config import Attention
from sftdata.train.data import Batch


def resolve_attention(requested: Attention, device: torch.device) -> str:
    """The transformers `attn_implementation` to load the model with (auto: flash-attn on GPU if installed)."""
    if requested != Attention.auto:
        return requested.value
    if device.type == "cuda":
        try:
            import flash_attn  # noqa: F401
        except ImportError:
            return "sdpa"
        return "flash_attention_2"
    return "sdpa"


def document_mask(segments: torch.Tensor) -> torch.Tensor:
    """(B, 1, L, L) bool: query i may attend key j when same segment and j <= i."""
    length = segments.shape[1]
    same = segments[:, :, None] == segments[:, None, :]
    causal = torch.ones(length, length, dtype=torch.bool, device=segments.device).tril()
    return (same & causal)[:, None]


def model_inputs(batch: Batch, attn: str, device: torch.device, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Keyword arguments for `model(**inputs)` that isolate documents for attention path `attn`."""
    if attn.startswith("flash_attention"):
        # one varlen row: the real tokens of every row concatenated, no padding at all
        lens = [n for row in batch.doc_lens for n in row]
        cu = torch.tensor(np.cumsum([0, *lens]), dtype=torch.int32, device=device)
        return {
            "input_ids": torch.from_numpy(_concat_real(batch, batch.input_ids)).to(device),
            "position_ids": torch.from_numpy(_concat_real(batch, batch.position_ids)).to(device),
            "cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": max(lens), "max_length_k": max(lens),
        }
    ids = torch.from_numpy(batch.input_ids).to(device)
    pos = torch.from_numpy(batch.position_ids).to(device)
    seg = torch.from_numpy(batch.segments).to(device)
    if attn == "sdpa":
        mask: Any = document_mask(seg)
    elif attn == "eager":
        allowed = document_mask(seg)
        mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)
    elif attn == "flex_attention":
        from torch.nn.attention.flex_attention import create_block_mask

        def same_doc_causal(b, h, q, k):
            return (seg[b, q] == seg[b, k]) & (k <= q)

        length = ids.shape[1]
        mask = create_block_mask(same_doc_causal, B=ids.shape[0], H=None, Q_LEN=length, KV_LEN=length,
                                 device=str(device))
    else:
        raise ValueError(f"unknown attention implementation {attn!r}")
    return {"input_ids": ids, "position_ids": pos, "attention_mask": mask}


def flat_targets(batch: Batch, attn: str) -> np.ndarray:
    """Targets laid out like the model's output for `attn` ((1, total) for flash varlen, else (B, L))."""
    return _concat_real(batch, batch.targets) if attn.startswith("flash_attention") else batch.targets


def _concat_real(batch: Batch, array: np.ndarray) -> np.ndarray:
    """(1, total): the real (non-padding) part of each row of `array`, concatenated."""
    return np.concatenate([array[i, :n] for i, n in enumerate(batch.row_lens)])[None]
