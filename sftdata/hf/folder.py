"""`dataset(DIR)`: a prepared folder as a `datasets.Dataset`, memory-mapped, ready for TRL's SFTTrainer.

Design. Each shard is read by the project's one shard reader (`sftdata.shards.read_shard`, a
`pa.memory_map`) and wrapped, untouched, in a `datasets.table.MemoryMappedTable`: the token columns
(`input_ids`, `labels`, `doc_lens`, `doc_ids`) stay pages of the shard files, and pickling the
dataset (DataLoader workers, `map` with `num_proc`) sends the file path, not the data. Rows keep the
stored order; nothing is re-tokenized, re-packed or shuffled here.

The one extra column is `seq_lengths`, the document lengths under the name TRL 1.16 reads
(`DataCollatorForLanguageModeling` turns it into position ids that restart at every document, and
into `cu_seq_lens` for FlashAttention varlen). It is the same numbers as `doc_lens`. TRL refuses a
dataset that uses `with_transform` (`SFTTrainer._prepare_dataset`), so the column is materialised:
copied once into an in-memory Arrow block beside each memory-mapped shard (a horizontal
`ConcatenationTable`). Measured (notes/issue-12.md): 0.3 % of the shard bytes for alpaca_en_demo at
1,024 tokens (4 bytes per document + 4 per row, against 8+ bytes per token; 1.2 % for the bundled
example's 256-token rows), built in 0.5x the time of one read pass over the tokens; `dataset()`
takes ~8 ms in all. The alternative, `Dataset.from_file(...).map(...)` adding the column, rewrites
every column into a cache file (1.01x the shards' bytes, ~40x one read pass).
`position_ids` are not materialised: TRL 1.16 derives them from `seq_lengths`, and
`Collator` from `doc_lens`; a `position_ids` column would cost 4 bytes per token (about 50 % more
bytes than `input_ids` + `labels`) for nothing.

With `padding_free=True, packing=False, max_length=None`, `SFTTrainer` maps nothing over a dataset
that already has `input_ids` and `labels` (`_prepare_dataset` with `is_processed`), so its
`train_dataset` is this very object: same rows, same order, same ids, our labels.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from sftdata import shards
from sftdata.train import data as train_data

SEQ_LENGTHS = "seq_lengths"
"""The column TRL 1.16 reads document boundaries from (a copy of `doc_lens`)."""


@dataclass(frozen=True, slots=True)
class ExtraCost:
    """What materialising `seq_lengths` costs, as ratios to the shards it is built from."""

    shard_bytes: int
    """Bytes of the shards' Arrow buffers (memory-mapped, never copied)."""
    extra_bytes: int
    """Bytes of the materialised column (new buffers, in memory)."""
    read_seconds: float
    """One pass over every token of the shards (`input_ids` and `labels` summed): the floor of an epoch's reads."""
    extra_seconds: float
    """Time to build the materialised column."""

    @property
    def bytes_ratio(self) -> float:
        return self.extra_bytes / self.shard_bytes if self.shard_bytes else 0.0

    @property
    def time_ratio(self) -> float:
        return self.extra_seconds / self.read_seconds if self.read_seconds else 0.0


def dataset(folder: str | Path):
    """A prepared folder (packed or `--no-pack`, train or `--eval-shards`) as a memory-mapped `datasets.Dataset`.

    Columns: `input_ids`, `labels` (aligned with `input_ids`, unshifted, -100 = no loss), `doc_lens`,
    `doc_ids` (all from the shards, memory-mapped) and `seq_lengths` (= `doc_lens`, materialised for TRL).

    Args:
        folder: a folder written by `sftdata prepare` (it has `manifest.json`).

    Raises:
        sftdata.errors.InputError: no manifest, a missing shard, or no rows (the message says which).
    """
    from datasets import Dataset
    from datasets.table import ConcatenationTable, InMemoryTable, MemoryMappedTable

    shard_set = train_data.ShardSet(folder)  # checks the manifest, that every shard exists, that there are rows
    paths = [shard_set.folder / info.file for info in shard_set.manifest.shards]
    blocks = []
    for path in paths:
        table = shards.read_shard(path)
        blocks.append([MemoryMappedTable(table, str(path)), InMemoryTable(_seq_lengths(table))])
    return Dataset(ConcatenationTable.from_blocks(blocks), fingerprint=_fingerprint(shard_set.manifest))


def extra_cost(folder: str | Path) -> ExtraCost:
    """Measure what `dataset(folder)` adds to the shards: bytes and time of `seq_lengths`, against one read."""
    shard_set = train_data.ShardSet(folder)
    tables = [shards.read_shard(shard_set.folder / info.file) for info in shard_set.manifest.shards]
    t0 = time.perf_counter()
    for t in tables:
        for name in ("input_ids", "labels"):
            pc.sum(pc.list_flatten(t.column(name)))
    t1 = time.perf_counter()
    extras = [_seq_lengths(t) for t in tables]
    t2 = time.perf_counter()
    extra_bytes = sum(x.nbytes for x in extras)
    return ExtraCost(shard_bytes=sum(t.nbytes for t in tables), extra_bytes=extra_bytes,
                     read_seconds=t1 - t0, extra_seconds=t2 - t1)


def _fingerprint(manifest) -> str:
    """The datasets fingerprint: the run's fingerprint and every shard's sha256 (no path, so it is stable)."""
    parts = [f"sftdata.hf/{SEQ_LENGTHS}", manifest.fingerprint, *(s.sha256 for s in manifest.shards)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _seq_lengths(table: pa.Table) -> pa.Table:
    """`doc_lens` copied (int32, new buffers) into a one-column table named `seq_lengths`, the name TRL reads."""
    doc_lens = table.column("doc_lens").combine_chunks()
    offsets = doc_lens.offsets.to_numpy()
    values = doc_lens.values.to_numpy()[offsets[0]:offsets[-1]].copy()
    copy = pa.ListArray.from_arrays(pa.array(offsets - offsets[0], pa.int32()), pa.array(values, pa.int32()))
    return pa.table({SEQ_LENGTHS: copy})


def documents_per_row(ds) -> int:
    """The most documents any row of `ds` holds (1 for a `--no-pack` folder)."""
    table = ds.data.table
    name = SEQ_LENGTHS if SEQ_LENGTHS in table.column_names else "doc_lens"
    if name not in table.column_names:
        return 0
    lengths = pc.list_value_length(table.column(name))
    return int(pc.max(lengths).as_py() or 0)
