"""Arrow IPC *stream* shards: the format (schema + metadata) and the one memory-mapping reader.

Why the stream format: `datasets.Dataset.from_file` reads only IPC streams (the IPC *file* format fails
with ArrowInvalid in datasets 5.2), pyarrow memory-maps them, and polars reads them with
`pl.read_ipc_stream`. Columns are `SHARD_SCHEMA` (`sftdata.manifest`); the schema metadata key
`sftdata` holds `{"format_version", "fingerprint"}` so a shard found alone still says what made it.

The writer is `sftdata.pipeline.write.ShardWriter` (the write step of `prepare`), so the audit and the
trainer, which read shards, never import the code that writes them; the audit re-hashes files with
`sftdata.fingerprint.file_sha256`.

`read_shard` is the one reader: the trainer (`train.data.ShardSet`), the audit (`audit.tables`, which
also reads other tools' `.arrow` files, hence the IPC-file fallback), `sftdata inspect` and the tests
all read through it, so what the audit checks is byte for byte what the trainer sees. A read is a
memory map plus the stream's record-batch headers: no copy, pages load when touched (a row is then
two numpy views into the map), so opening a folder costs the same whatever its size.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from sftdata.errors import InputError
from sftdata.manifest import FORMAT_VERSION, SHARD_SCHEMA


def shard_schema(fingerprint: str) -> pa.Schema:
    """`SHARD_SCHEMA` with the `sftdata` metadata that ties a shard to its manifest."""
    meta = json.dumps({"format_version": FORMAT_VERSION, "fingerprint": fingerprint}, sort_keys=True)
    return SHARD_SCHEMA.with_metadata({"sftdata": meta})


_NUMPY_TYPES = {pa.int8(): np.int8, pa.int16(): np.int16, pa.int32(): np.int32, pa.int64(): np.int64,
                pa.uint8(): np.uint8, pa.uint16(): np.uint16, pa.uint32(): np.uint32, pa.uint64(): np.uint64,
                pa.float32(): np.float32, pa.float64(): np.float64}


def numpy_values(array: pa.Array) -> np.ndarray:
    """A numeric Arrow array as numpy, zero-copy (other types and nulls: Arrow's own conversion).

    Not `Array.to_numpy`: its first call imports pandas, only to ask whether it was given a pandas object
    (0.2 s and ~60 MB in every process that reads or writes a shard, none of which uses pandas).
    """
    dtype = _NUMPY_TYPES.get(array.type)
    if dtype is None or array.null_count:
        return array.to_numpy(zero_copy_only=False)
    if len(array) == 0:
        return np.zeros(0, dtype=dtype)
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array),
                         offset=array.offset * np.dtype(dtype).itemsize)


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
