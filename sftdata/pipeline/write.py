"""The write step of `prepare`: a window's plan -> packed rows -> shard parts, each written whole.

    build_rows (one gather over the window's flat arrays) -> shard_slices -> ShardWriter per part
    (temp name, fsync, rename) -> `PartEntry` for the journal

Rows are materialised from a plan with one fancy-index gather, no Python loop over tokens: given every
document of a window back to back (`input_ids`, `labels`, `offsets`) and a plan (rows of document
indices), the output token stream is `flat[gather]`, where `gather` is built with `np.repeat` from the
documents' starts; the Arrow list columns are then made from offsets without copying. Building the
1,850 rows of the 20k-conversation bench takes about 20 ms.

The first-label rule lives here, in `build_rows`, and only here: each document's first label is
-100, so the position before a document boundary never learns to predict the next, unrelated
document. `build_rows` is the one step that sees where documents start inside a row, and every
shard row passes through it (packed or not, local or Ray); `encode_stage` leaves labels as the mask
says.

`ShardWriter` writes the Arrow IPC *stream* format (`sftdata.shards` holds the format and the one
reader, so the audit and the trainer never import the writer). Bytes are deterministic: no
timestamps, no compression dictionaries that depend on threads, record batches of a fixed number of
rows. The sha256 is computed while writing (no second read).

`write_parts` is a pure function of its arguments (the same bytes wherever it runs): the local engine
calls it in the main process, the Ray engine in Ray tasks, and a retried task rewrites the same files.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa

from sftdata.faults import fault_point
from sftdata.manifest import SHARD_SCHEMA
from sftdata.pipeline.journal import TMP_SUFFIX, PartEntry, part_name
from sftdata.shards import numpy_values, shard_schema
from sftdata.tokens import IGNORE_INDEX


def build_rows(input_ids: np.ndarray, labels: np.ndarray, offsets: np.ndarray, doc_ids: list[str],
               plan: list[list[int]]) -> pa.RecordBatch:
    """Rows of `SHARD_SCHEMA` for a plan over documents stored back to back, each document's first label -100.

    Args:
        input_ids: int32 ids of all documents, back to back.
        labels: int32 labels aligned with `input_ids`.
        offsets: int64 start of each document, plus the end (len = documents + 1).
        doc_ids: id of each document.
        plan: rows, each a list of document indices (in row order).
    """
    docs = np.fromiter((d for row in plan for d in row), dtype=np.int64, count=sum(len(r) for r in plan))
    docs_per_row = np.fromiter((len(r) for r in plan), dtype=np.int64, count=len(plan))
    starts = offsets[docs]
    lens = offsets[docs + 1] - starts
    out_starts = np.concatenate([[0], np.cumsum(lens)])
    total = int(out_starts[-1])
    # position p of the output comes from starts[doc] + (p - out_starts[doc])
    index = np.int32 if len(input_ids) < 2**31 else np.int64  # half the memory of the gather when it fits
    gather = np.repeat((starts - out_starts[:-1]).astype(index), lens) + np.arange(total, dtype=index)
    ids_out = input_ids[gather]
    labels_out = labels[gather]
    del gather
    labels_out[out_starts[:-1]] = IGNORE_INDEX
    doc_bounds = np.concatenate([[0], np.cumsum(docs_per_row)])
    row_offsets = out_starts[doc_bounds].astype(np.int32)
    doc_offsets = doc_bounds.astype(np.int32)
    row_offsets, doc_offsets = _int32(row_offsets), _int32(doc_offsets)
    columns = [
        pa.ListArray.from_arrays(row_offsets, _int32(ids_out)),
        pa.ListArray.from_arrays(row_offsets, _int32(labels_out)),
        pa.ListArray.from_arrays(doc_offsets, _int32(lens)),
        pa.ListArray.from_arrays(doc_offsets, _strings([doc_ids[d] for d in docs.tolist()])),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=SHARD_SCHEMA)


# Arrays are built from their buffers: `pa.array` imports pandas on its first call (0.2 s and ~60 MB at the
# end of every run) only to ask whether its argument is a pandas object.
def _int32(values: np.ndarray) -> pa.Array:
    data = np.ascontiguousarray(values, dtype=np.int32)
    return pa.Array.from_buffers(pa.int32(), len(data), [None, pa.py_buffer(data)])


def _strings(values: list[str]) -> pa.Array:
    encoded = [v.encode("utf-8") for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    data = pa.py_buffer(b"".join(encoded))
    return pa.Array.from_buffers(pa.string(), len(encoded), [None, pa.py_buffer(offsets), data])


def shard_slices(n_rows: int, rows_per_shard: int) -> list[tuple[int, int]]:
    """Split `n_rows` into the fewest near-equal shards of at most `rows_per_shard` rows."""
    if n_rows == 0:
        return []
    count = -(-n_rows // rows_per_shard)
    bounds = [round(i * n_rows / count) for i in range(count + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(count)]


BATCH_ROWS = 1024
"""Rows per Arrow record batch: small enough for a trainer to read lazily, large enough to be cheap."""


@dataclass(slots=True)
class ShardStats:
    """What a finished shard holds (`ShardInfo` in the manifest, without the file name)."""

    sha256: str
    rows: int
    documents: int
    tokens: int
    supervised_tokens: int


class _HashingSink:
    """A file-like sink that hashes what passes through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()
        self.closed = False

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        self.hash.update(view)
        written = self.raw.write(view)
        fault_point("part.write", self.raw.flush)  # kill tests: stopped here, the part is half on disk
        return written

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:
        self.closed = True


class ShardWriter:
    """Writes packed rows to one shard.

    Args:
        sink: a path (the file is created, fsynced and closed by `close`) or a binary stream such as
            `pa.BufferOutputStream()` or an open file (left open).
        fingerprint: the run's fingerprint, stored in the schema metadata.
    """

    def __init__(self, sink: str | Path | IO[bytes] | pa.NativeFile, fingerprint: str) -> None:
        self._file: IO[bytes] | None = None
        self._hashing: _HashingSink | None = None
        if isinstance(sink, (str, Path)):
            self._file = open(sink, "wb")  # noqa: SIM115 - closed in close()
            self._hashing = _HashingSink(self._file)
            target = pa.PythonFile(self._hashing, mode="w")
        else:
            target = sink
        self._writer = pa.ipc.new_stream(target, shard_schema(fingerprint))
        self.stats = ShardStats(sha256="", rows=0, documents=0, tokens=0, supervised_tokens=0)

    def write_batch(self, batch: pa.RecordBatch) -> None:
        """Append a batch of rows with `SHARD_SCHEMA` columns (in slices of `BATCH_ROWS`)."""
        for start in range(0, batch.num_rows, BATCH_ROWS):
            part = batch.slice(start, BATCH_ROWS)
            self._writer.write_batch(part)
        # `.flatten()`, not `.values`: on a sliced batch `.values` is the whole parent buffer
        labels = numpy_values(batch.column("labels").flatten())
        self.stats.rows += batch.num_rows
        self.stats.documents += len(batch.column("doc_ids").flatten())
        self.stats.tokens += len(batch.column("input_ids").flatten())
        self.stats.supervised_tokens += int(np.count_nonzero(labels != -100))

    def close(self) -> ShardStats:
        """Finish the stream; for a path, fsync the file. Returns the shard's figures."""
        self._writer.close()
        if self._file is not None and self._hashing is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self.stats.sha256 = self._hashing.hash.hexdigest()
        return self.stats

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()


def write_parts(folder: Path, fingerprint: str, window: int, rows_per_shard: int, plan: list[list[int]],
                ids: np.ndarray, labels: np.ndarray, lengths: np.ndarray, doc_ids: list[str]) -> list[PartEntry]:
    """Materialise one window's planned rows and write them as shard parts; returns each part's journal entry.

    Each part is written to a temp name (`NAME.PID.tmp`), fsynced and renamed: a file named
    `part-…arrow` is always whole, and a task left over from a killed run can only replace a part with
    the same bytes.

    Args:
        folder: the run's `OUT.incomplete/`.
        fingerprint: the run's fingerprint (in each shard's schema metadata).
        window: the window's number (names its parts).
        rows_per_shard: the most rows a part holds.
        plan: rows of document indices, in written order.
        ids, labels: the window's documents' tokens back to back (int32).
        lengths: tokens per document.
        doc_ids: id of each document.
    """
    batch = build_rows(ids, labels, np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]), doc_ids, plan)
    shards = []
    for j, (lo, hi) in enumerate(shard_slices(len(plan), rows_per_shard)):
        name = part_name(window, j)
        tmp = Path(folder) / f"{name}.{os.getpid()}{TMP_SUFFIX}"
        writer = ShardWriter(tmp, fingerprint)
        writer.write_batch(batch.slice(lo, hi - lo))
        stats = writer.close()
        os.replace(tmp, Path(folder) / name)
        fault_point("part.done")
        shards.append(PartEntry(part=name, sha256=stats.sha256, rows=stats.rows, documents=stats.documents,
                                tokens=stats.tokens, supervised_tokens=stats.supervised_tokens))
    return shards
