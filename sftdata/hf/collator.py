"""`Collator`: batches of packed rows for `transformers.Trainer` and a plain `torch.utils.data.DataLoader`.

Two layouts, both giving exactly the loss of `sftdata train` (sum of token losses / supervised
tokens; tests/test_hf_loss.py):

- **padding-free** (default): the rows of a batch are concatenated into one `(1, T)` row, no padding
  at all. `position_ids` restart at 0 at every document; `cu_seq_lens_q/k` and `max_length_q/k`
  (FlashAttention varlen) come from `doc_lens`, so flash kernels never look up boundaries, and sdpa /
  eager / flex_attention get a block-diagonal mask that transformers builds from the restarting
  positions (`masking_utils.find_packed_sequence_indices`). That detection is skipped when the model
  holds a KV cache, which it does in a forward pass whenever `use_cache` is left to a pretrained
  config's `True`: so every batch carries `use_cache=False`, and `model(**batch)` is isolated in a
  plain loop too.
- **padded** (`padding_free=False`): for models or attention kernels that cannot isolate packed
  documents. Every *document* becomes its own row, padded to the longest (or to
  `pad_to_multiple_of`), with a standard 2-D `attention_mask`: isolation then needs nothing from the
  kernel, at the price of the padding (the tokens that packing saved).

Labels are ours, unshifted (the model's loss shifts them); the label at every document start is -100
in the shards already, and the collator sets it again so that the flattened row never trains the
last token of one document to predict the first of the next, whatever the rows' origin.

`pad_to_multiple_of` pads the flat row (padding-free) or the row length (padded) with
`pad_token_id`, label -100; in padding-free mode the padding is one more segment with its own
positions, so it never joins a document.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sftdata.errors import InputError
from sftdata.tokens import IGNORE_INDEX

LENGTH_COLUMNS = ("seq_lengths", "doc_lens")
"""Where a row's document lengths are read from (`dataset()` has both)."""


@dataclass
class Collator:
    """Turns rows of `sftdata.hf.dataset(DIR)` (or dicts with `input_ids`, `labels`, `doc_lens`) into a batch.

    Args:
        padding_free: one `(1, T)` row with restarting `position_ids` (True), or one padded row per
            document with an `attention_mask` (False).
        pad_to_multiple_of: pad the length to a multiple of this (e.g. 8 or 64 for tensor cores).
        pad_token_id: the id written in padding (never in the loss).
    """

    padding_free: bool = True
    pad_to_multiple_of: int | None = None
    pad_token_id: int = 0

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        docs = [doc for row in rows for doc in _documents(row)]
        if self.padding_free:
            return self._padding_free(docs)
        return self._padded(docs)

    def _round_up(self, n: int) -> int:
        m = self.pad_to_multiple_of
        return n if not m else -(-n // m) * m

    def _padding_free(self, docs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
        lens = [len(ids) for ids, _ in docs]
        total = sum(lens)
        pad = self._round_up(total) - total
        ids = np.concatenate([d[0] for d in docs] + [np.full(pad, self.pad_token_id, dtype=np.int64)])
        labels = np.concatenate([_doc_labels(d[1]) for d in docs] + [np.full(pad, IGNORE_INDEX, dtype=np.int64)])
        seg_lens = lens + ([pad] if pad else [])
        starts = np.repeat(np.cumsum([0, *seg_lens[:-1]]), seg_lens)
        positions = np.arange(total + pad) - starts
        cu = torch.tensor(np.cumsum([0, *seg_lens]), dtype=torch.int32)
        return {
            "input_ids": torch.from_numpy(ids.astype(np.int64))[None],
            "labels": torch.from_numpy(labels.astype(np.int64))[None],
            "position_ids": torch.from_numpy(positions.astype(np.int64))[None],
            "cu_seq_lens_q": cu, "cu_seq_lens_k": cu,
            "max_length_q": max(seg_lens), "max_length_k": max(seg_lens),
            "use_cache": False,
        }

    def _padded(self, docs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
        length = self._round_up(max(len(ids) for ids, _ in docs))
        n = len(docs)
        ids = np.full((n, length), self.pad_token_id, dtype=np.int64)
        labels = np.full((n, length), IGNORE_INDEX, dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.int64)
        for i, (doc_ids, doc_labels) in enumerate(docs):
            m = len(doc_ids)
            ids[i, :m] = doc_ids
            labels[i, :m] = _doc_labels(doc_labels)
            mask[i, :m] = 1
        positions = np.broadcast_to(np.arange(length), (n, length)).copy()
        return {
            "input_ids": torch.from_numpy(ids), "labels": torch.from_numpy(labels),
            "attention_mask": torch.from_numpy(mask), "position_ids": torch.from_numpy(positions),
            "use_cache": False,
        }


def _doc_labels(labels: np.ndarray) -> np.ndarray:
    """A document's labels with the first one -100 (it has no previous token of its own to be predicted from)."""
    out = np.asarray(labels, dtype=np.int64).copy()
    if out.size:
        out[0] = IGNORE_INDEX
    return out


def _documents(row: Mapping[str, Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split one packed row into its documents' (input_ids, labels) by its document lengths."""
    name = next((c for c in LENGTH_COLUMNS if c in row), None)
    if name is None:
        raise InputError(
            f"a row has no `seq_lengths` or `doc_lens` (it has {sorted(row)}), so its documents cannot be kept apart; "
            "transformers.Trainer drops columns the model does not take: pass "
            "TrainingArguments(remove_unused_columns=False), or rows from sftdata.hf.dataset(DIR)")
    ids = np.asarray(row["input_ids"], dtype=np.int64)
    labels = np.asarray(row["labels"], dtype=np.int64)
    lens = np.asarray(row[name], dtype=np.int64)
    if len(labels) != len(ids) or int(lens.sum()) != len(ids) or (lens <= 0).any():
        raise InputError(f"a row of {len(ids)} tokens has {len(labels)} labels and {name} {lens.tolist()} "
                         f"(they must sum to the tokens, each > 0); the shard is corrupt or not from sftdata prepare")
    cuts = np.cumsum(lens)[:-1]
    return list(zip(np.split(ids, cuts), np.split(labels, cuts), strict=True))
