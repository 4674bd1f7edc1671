"""Arrow IPC *stream* shards: one writer (to a path or any stream), one memory-mapping reader.

Why the stream format: `datasets.Dataset.from_file` reads only IPC streams (the IPC *file* format fails
with ArrowInvalid in datasets 5.2), pyarrow memory-maps them, and polars reads them with
`pl.read_ipc_stream`. Columns are `SHARD_SCHEMA` (`sftdata.manifest`); the schema metadata key
`sftdata` holds `{"format_version", "fingerprint"}` so a shard found alone still says what made it.

Bytes are deterministic: no timestamps, no compression dictionaries that depend on threads, record
batches of a fixed number of rows. The sha256 is computed while writing (no second read); the audit
re-hashes files with `sftdata.fingerprint.file_sha256`.

`read_shard` is the one reader: the trainer (`train.data.ShardSet`), the audit (`audit.tables`, which
also reads other tools' `.arrow` files, hence the IPC-file fallback), `sftdata inspect` and the tests
all read through it, so what the audit checks is byte for byte what the trainer sees. A read is a
memory map plus the stream's record-batch headers: no copy, pages load when touched (a row is then
two numpy views into the map), so opening a folder costs the same whatever its size.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa

from sftdata.errors import InputError
from sftdata.faults import fault_point
from sftdata.manifest import FORMAT_VERSION, SHARD_SCHEMA

BATCH_ROWS = 1024
"""Rows per Arrow record batch: small enough for a trainer to read lazily, large enough to be cheap."""


def shard_schema(fingerprint: str) -> pa.Schema:
    """`SHARD_SCHEMA` with the `sftdata` metadata that ties a shard to its manifest."""
    meta = json.dumps({"format_version": FORMAT_VERSION, "fingerprint": fingerprint}, sort_keys=True)
    return SHARD_SCHEMA.with_metadata({"sftdata": meta})


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
        labels = batch.column("labels").flatten().to_numpy(zero_copy_only=False)
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


SHARD_GLOB = "shard-*.arrow"
"""The shard files of a prepared folder; sorted by name they are in manifest order."""


def read_shard(path: str | Path) -> pa.Table:
    """Memory-map one shard (no copy: pages load as they are touched).

    Reads the IPC stream format that `ShardWriter` writes, and the IPC file format that other tools
    write (`audit` reads their `.arrow` files too).

    Raises:
        InputError: the file is missing, truncated or not Arrow IPC (the message names the file).
    """
    try:
        try:
            return pa.ipc.open_stream(pa.memory_map(str(path), "r")).read_all()
        except pa.ArrowInvalid:
            return pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
    except (pa.ArrowInvalid, OSError) as err:
        raise InputError(
            f"{path}: not a readable Arrow IPC stream ({err}); the file is truncated or not a shard"
        ) from err


def shard_paths(folder: str | Path) -> list[Path]:
    """The shard files of a prepared folder, in order (the manifest lists the same names)."""
    return sorted(Path(folder).glob(SHARD_GLOB))


def shard_metadata(path: str | Path) -> dict:
    """The `sftdata` schema metadata of a shard (`format_version`, `fingerprint`)."""
    meta = read_shard(path).schema.metadata or {}
    return json.loads(meta.get(b"sftdata", b"{}"))


def iter_rows(folder: str | Path) -> Iterator[dict]:
    """Every row of a prepared folder, shard by shard, as Python dicts (for inspection and tests)."""
    for path in shard_paths(folder):
        yield from read_shard(path).to_pylist()
