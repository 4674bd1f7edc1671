"""Memory-mapped shards, the step plan, and collation of packed rows into tensors.

Rows are read straight from the Arrow IPC stream files through `sftdata.shards.read_shard` (the one
shard reader, a `pa.memory_map`): opening a folder costs no copy, and a row is two numpy views
(offsets into the flat `input_ids` / `labels` / `doc_lens` buffers), so memory stays flat whatever
the shard size. Rows are batched as they were packed; a row is never split or re-packed here.

Which rows an optimizer step uses is a pure function (`step_rows`) of (seed, epoch, step, rank):
the shuffle is a permutation seeded by `seed + epoch`, each global step takes the next
`world * grad_accum * micro_batch_size` rows of it, and rank r takes its contiguous slice. That is
the distributed sampler, and it makes the data position of a checkpoint just the step number.
The last `< rows_per_step` rows of an epoch are dropped (a different few each epoch when shuffled)
so that every rank runs the same number of micro-steps, which DDP needs.

Collation shifts the labels once (`targets[i] = labels[i + 1]`, "position i predicts token i+1").
Every document starts with label -100 in the shards, so the last token of one document never
learns to predict the first token of the next. Padding (micro-batches of rows of different
lengths) gets target -100 and forms its own attention segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from sftdata.errors import InputError
from sftdata.manifest import MANIFEST_NAME, Manifest
from sftdata.shards import numpy_values, read_shard
from sftdata.tokens import IGNORE_INDEX


@dataclass(frozen=True, slots=True)
class Row:
    """One packed row as numpy views into the memory-mapped shard."""

    input_ids: np.ndarray
    labels: np.ndarray
    doc_lens: np.ndarray


class _Columns:
    """Flat values + offsets of the list columns of one record batch (views, no copy)."""

    def __init__(self, batch: pa.RecordBatch) -> None:
        def flat(name: str) -> tuple[np.ndarray, np.ndarray]:
            col = batch.column(name)
            return numpy_values(col.values), numpy_values(col.offsets)

        self.ids, self.ids_off = flat("input_ids")
        self.labels, self.labels_off = flat("labels")
        self.doc_lens, self.doc_off = flat("doc_lens")

    def row(self, i: int) -> Row:
        a, b = self.ids_off[i], self.ids_off[i + 1]
        la, lb = self.labels_off[i], self.labels_off[i + 1]
        da, db = self.doc_off[i], self.doc_off[i + 1]
        return Row(self.ids[a:b], self.labels[la:lb], self.doc_lens[da:db])


class ShardSet:
    """All rows of a prepared folder, memory-mapped, addressable by a global row index."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not (self.folder / MANIFEST_NAME).is_file():
            hint = " (an unfinished run leaves NAME.incomplete/)" if self.folder.suffix == ".incomplete" else ""
            raise InputError(f"{self.folder}: no {MANIFEST_NAME}{hint}; pass a folder written by `sftdata prepare`")
        self.manifest = Manifest.load(self.folder)
        self._batches: list[_Columns] = []
        starts: list[int] = []
        total = 0
        for info in self.manifest.shards:
            path = self.folder / info.file
            if not path.is_file():
                raise InputError(f"{path}: shard listed in {self.folder / MANIFEST_NAME} is missing")
            for batch in read_shard(path).to_batches():
                starts.append(total)
                self._batches.append(_Columns(batch))
                total += batch.num_rows
        self._starts = np.asarray(starts, dtype=np.int64)
        self.num_rows = total
        if total == 0:
            raise InputError(f"{self.folder}: the shards hold no rows; nothing to train on")

    @property
    def capacity(self) -> int:
        return self.manifest.packing.capacity

    def __len__(self) -> int:
        return self.num_rows

    def __getitem__(self, index: int) -> Row:
        b = int(np.searchsorted(self._starts, index, side="right") - 1)
        return self._batches[b].row(index - int(self._starts[b]))

    def max_token_id(self) -> int:
        return max(int(c.ids.max()) for c in self._batches if c.ids.size)


def steps_per_epoch(num_rows: int, rows_per_step: int) -> int:
    """Whole optimizer steps in one pass (the remainder is dropped so ranks stay in step)."""
    return num_rows // rows_per_step


def step_rows(num_rows: int, step: int, *, micro_batch_size: int, grad_accum: int, world: int, rank: int,
              seed: int, shuffle: bool) -> list[list[int]]:
    """Row indices of this rank's micro-batches for global optimizer step `step` (0-based).

    A pure function of its arguments: the distributed sampler, the epoch shuffle and the resume
    position in one place.
    """
    per_rank = micro_batch_size * grad_accum
    per_step = per_rank * world
    n_steps = steps_per_epoch(num_rows, per_step)
    epoch, k = divmod(step, n_steps)
    order = np.random.default_rng(seed + epoch).permutation(num_rows) if shuffle else np.arange(num_rows)
    mine = order[k * per_step + rank * per_rank: k * per_step + (rank + 1) * per_rank]
    return [mine[m * micro_batch_size:(m + 1) * micro_batch_size].tolist() for m in range(grad_accum)]


def shift_labels(labels: np.ndarray) -> np.ndarray:
    """Targets for each position: the next token's label, -100 after the last (the one shift)."""
    targets = np.full_like(labels, IGNORE_INDEX)
    targets[:-1] = labels[1:]
    return targets


@dataclass(frozen=True, slots=True)
class Batch:
    """A collated micro-batch (numpy; moved to torch by the model inputs builder)."""

    input_ids: np.ndarray
    """int64 (B, L), padded with 0."""
    targets: np.ndarray
    """int64 (B, L), shifted labels, -100 where no loss (prompts, document ends, padding)."""
    position_ids: np.ndarray
    """int64 (B, L), restarting at 0 at every document (and at the padding)."""
    segments: np.ndarray
    """int64 (B, L), document index within the row; padding is one more segment."""
    doc_lens: list[list[int]]
    """Per row, the document lengths (padding not included)."""

    @property
    def row_lens(self) -> list[int]:
        """Real (non-padding) tokens of each row."""
        return [sum(lens) for lens in self.doc_lens]

    @property
    def tokens(self) -> int:
        """Real (non-padding) tokens."""
        return sum(self.row_lens)

    @property
    def supervised(self) -> int:
        return int((self.targets != IGNORE_INDEX).sum())


def collate(rows: list[Row], pad_to: int | None = None) -> Batch:
    """Stack packed rows, padding to the longest (or to `pad_to`); positions and segments from doc_lens."""
    length = max(len(r.input_ids) for r in rows) if pad_to is None else pad_to
    n = len(rows)
    ids = np.zeros((n, length), dtype=np.int64)
    targets = np.full((n, length), IGNORE_INDEX, dtype=np.int64)
    positions = np.zeros((n, length), dtype=np.int64)
    segments = np.zeros((n, length), dtype=np.int64)
    all_lens: list[list[int]] = []
    for i, r in enumerate(rows):
        m = len(r.input_ids)
        if m > length:
            raise ValueError(f"row of {m} tokens does not fit pad_to={length}")
        lens = [int(x) for x in r.doc_lens]
        if sum(lens) != m:
            raise InputError(f"row with {m} tokens has doc_lens summing to {sum(lens)}; the shard is corrupt")
        all_lens.append(lens)
        if m < length:
            lens = [*lens, length - m]  # padding: one more segment, positions from 0, no loss
        ids[i, :m] = r.input_ids
        targets[i, :m] = shift_labels(r.labels)
        starts = np.repeat(np.cumsum([0, *lens[:-1]]), lens)
        positions[i] = np.arange(length) - starts
        segments[i] = np.repeat(np.arange(len(lens)), lens)
    return Batch(ids, targets, positions, segments, all_lens)
