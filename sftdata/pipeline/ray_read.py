"""Ray Data reading of `prepare` inputs, with every row's source position exactly as the local reader gives it.

Ray's own readers (`read_json`, `read_parquet`) cannot be used as they are: `read_json` parses with
pyarrow, which fails a whole file on one broken line and fills missing keys with nulls (so records and
rejects would differ from the local engine), and no Ray reader keeps the row's index in its file, which
`FILE:ROW` doc ids and rejects need. So this is a small `Datasource` whose read tasks run the local
reader's own functions over *ranges* of each input:

| input | ranges | a row travels as |
|---|---|---|
| `.jsonl`, `.ndjson` | byte ranges of ~`RANGE_BYTES`, cut at newlines | its bytes (`parse_line` in the worker) |
| `.parquet` | groups of row groups | the pickled `RawRow` |
| anything else (`.json`, `.csv`, `.gz`, HF datasets) | the whole input, one task | the pickled `RawRow` |

Rows are bounded as in the local reader: a range is read line by line with `readers.read_lines` (never
a whole range, never a whole line longer than `max_row_bytes`), and an over-long line or Parquet row
travels as the local reader's `oversize_row` reject.

The driver plans JSONL ranges in one sequential pass that counts newlines (the first row index of each
range is the number of newlines before it); it reads each input once, like the sha256 that
`prepare` already computes over every input, at about 1-2 GB/s. Parquet ranges come from the footer.
Each block carries `input` (position of the input on the command line), `index` (row index in that
input, as `RawRow.index`), `kind` and `payload`, so the order of blocks does not matter: the driver
sorts outcomes by (input, index) later.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from sftdata.readers import (
    DEFAULT_MAX_ROW_BYTES,
    PARQUET_BATCH_ROWS,
    RawRow,
    oversize_row,
    parquet_rows,
    parse_line,
    read_lines,
    read_rows,
)

RANGE_BYTES = 16 * 1024 * 1024
"""Target size of one JSONL read task (~20k rows of the benchmark corpus)."""

PARQUET_RANGE_ROWS = 32768
"""Rows of row groups gathered into one Parquet read task (at least one row group)."""

BLOCK_ROWS = 4096
"""Rows per block a read task emits (the encode step takes them in batches of `chunk_size`)."""

LINE, PICKLED = 0, 1
"""`kind` of a row's payload: a JSONL line to parse, or a pickled `RawRow`."""

_SCAN_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class InputRange:
    """One read task: a part of one input and the index of its first row."""

    input: int
    """Position of the input on the command line."""
    source: str
    """The input as given (what `RawRow.source` and doc ids say)."""
    kind: str
    """`jsonl` (byte range), `parquet` (row groups) or `whole` (the local reader over the whole input)."""
    start: int = 0
    """First row index (jsonl, parquet)."""
    lo: int = 0
    """First byte (jsonl) or first row group (parquet)."""
    hi: int = 0
    """End byte (jsonl) or end row group (parquet), exclusive."""
    split: str | None = None
    size: int = 0
    """Estimated bytes (for Ray's block metadata)."""
    max_row_bytes: int = DEFAULT_MAX_ROW_BYTES
    """A longer row is streamed past and travels as an `oversize_row` reject (as in `read_rows`)."""


def _is_plain_jsonl(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith((".jsonl", ".ndjson"))


def plan_ranges(inputs: list[str], split: str | None = None, range_bytes: int | None = None, *,
                max_row_bytes: int = DEFAULT_MAX_ROW_BYTES) -> list[InputRange]:
    """The read tasks for these inputs, in input order (the driver's only pass over the data).

    Args:
        inputs: the inputs as given.
        split: the split of Hugging Face dataset inputs.
        range_bytes: target bytes of one JSONL read task (default `RANGE_BYTES`).
        max_row_bytes: the row limit every range reads with (`read_rows`' keyword).

    Raises:
        InputError: an input is missing or cannot be opened (the local reader's message).
    """
    range_bytes = range_bytes or RANGE_BYTES
    ranges: list[InputRange] = []
    for n, source in enumerate(inputs):
        path = Path(source)
        if _is_plain_jsonl(path):
            ranges.extend(_jsonl_ranges(n, source, path, range_bytes))
        elif path.is_file() and path.name.lower().endswith(".parquet"):
            ranges.extend(_parquet_ranges(n, source, path))
        else:
            read_rows(source, split=split)  # raises InputError now for a missing or unreadable input
            ranges.append(InputRange(n, source, "whole", split=split,
                                     size=path.stat().st_size if path.is_file() else 0))
    return [dataclasses.replace(r, max_row_bytes=max_row_bytes) for r in ranges]


def _jsonl_ranges(n: int, source: str, path: Path, range_bytes: int) -> list[InputRange]:
    """Byte ranges ending at newlines; a range's first row index is the newlines before it."""
    out: list[InputRange] = []
    lo = pos = lines_before = lines = 0
    with open(path, "rb") as f:
        while block := f.read(_SCAN_BYTES):
            start = 0  # first byte of `block` not yet counted
            while lo + range_bytes < pos + len(block):
                nl = block.find(b"\n", max(lo + range_bytes - pos, start))
                if nl < 0:
                    break  # the range ends in a later block
                lines += block.count(b"\n", start, nl + 1)
                out.append(InputRange(n, source, "jsonl", start=lines_before, lo=lo, hi=pos + nl + 1,
                                      size=pos + nl + 1 - lo))
                lo, lines_before, start = pos + nl + 1, lines, nl + 1
            lines += block.count(b"\n", start)
            pos += len(block)
    if pos > lo or not out:
        out.append(InputRange(n, source, "jsonl", start=lines_before, lo=lo, hi=pos, size=pos - lo))
    return out


def _parquet_ranges(n: int, source: str, path: Path) -> list[InputRange]:
    import pyarrow.parquet as pq

    read_rows(source)  # the local reader's checks and error message for a corrupt footer
    meta = pq.ParquetFile(path).metadata
    out: list[InputRange] = []
    lo, start, rows = 0, 0, 0
    for g in range(meta.num_row_groups):
        rows += meta.row_group(g).num_rows
        if rows - start >= PARQUET_RANGE_ROWS or g == meta.num_row_groups - 1:
            out.append(InputRange(n, source, "parquet", start=start, lo=lo, hi=g + 1, size=path.stat().st_size))
            lo, start = g + 1, rows
    return out or [InputRange(n, source, "parquet", size=0)]


def range_rows(r: InputRange) -> Iterator[tuple[int, int, bytes]]:
    """(index, kind, payload) of every row in a range, read with the local reader's functions."""
    if r.kind == "jsonl":
        with open(r.source, "rb") as f:
            f.seek(r.lo)
            for index, line in enumerate(read_lines(f, r.max_row_bytes, r.hi - r.lo), r.start):  # as read_rows
                if type(line) is int:
                    row = oversize_row(r.source, index, line, r.max_row_bytes, f"line {index + 1}")
                    yield index, PICKLED, pickle.dumps(row, pickle.HIGHEST_PROTOCOL)
                elif line.strip():
                    yield index, LINE, line
    elif r.kind == "parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(r.source)
        batches = pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=list(range(r.lo, r.hi)))
        for row in parquet_rows(r.source, batches, r.start, r.max_row_bytes):
            yield row.index, PICKLED, pickle.dumps(row, pickle.HIGHEST_PROTOCOL)
    else:
        for row in read_rows(r.source, split=r.split, max_row_bytes=r.max_row_bytes):
            yield row.index, PICKLED, pickle.dumps(row, pickle.HIGHEST_PROTOCOL)


def range_blocks(r: InputRange, block_rows: int = BLOCK_ROWS) -> Iterator[pa.Table]:
    """The rows of a range as Arrow blocks of `input`, `index`, `kind`, `payload`."""
    buf: list[tuple[int, int, bytes]] = []

    def block() -> pa.Table:
        index, kind, payload = zip(*buf, strict=True)
        return pa.table({"input": pa.array([r.input] * len(buf), pa.int32()), "index": pa.array(index, pa.int64()),
                         "kind": pa.array(kind, pa.int8()), "payload": pa.array(payload, pa.large_binary())})

    for row in range_rows(r):
        buf.append(row)
        if len(buf) == block_rows:
            yield block()
            buf = []
    if buf:
        yield block()


def to_raw_row(source: str, index: int, kind: int, payload: bytes) -> RawRow:
    """The `RawRow` the local reader gives for this row (in the worker)."""
    if kind == LINE:
        return parse_line(source, index, payload)
    return pickle.loads(payload)


def datasource(ranges: list[InputRange]) -> Any:
    """A Ray Data `Datasource` with one read task per range (imports Ray: call only on the Ray engine)."""
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class InputsDatasource(Datasource):
        def __init__(self) -> None:
            super().__init__()

        def get_name(self) -> str:
            return "SftdataInputs"

        def estimate_inmemory_data_size(self) -> int | None:
            return sum(r.size for r in ranges) or None

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                           data_context: Any = None) -> list[Any]:
            return [ReadTask(_reader(r), BlockMetadata(num_rows=None, size_bytes=r.size or None, exec_stats=None,
                                                       input_files=(r.source,)))
                    for r in ranges]

    return InputsDatasource()


def _reader(r: InputRange) -> Any:
    return lambda: range_blocks(r)
