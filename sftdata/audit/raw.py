"""The audit's own reading of the inputs a manifest names: raw rows, as the user stored them.

The audit must see the writer's reading bugs, so it shares no code with `sftdata.readers` (nor with
the format adapters or validation): it opens the files itself with the standard library and
pyarrow. A row comes out as `(index, dict)` with the index the writer uses for `SOURCE:ROW` ids and
rejects: the 0-based line number for JSON lines (blank lines count, and are not rows), the position
in a JSON array, the row number for Parquet, the data-row number for CSV. Rows that are not JSON
objects are skipped here: the writer rejects them, and `rejects.jsonl` accounts for them.

| input | read with |
|---|---|
| `.jsonl`, `.ndjson` (also `.gz`) | binary lines, `json.loads` |
| `.json` (also `.gz`) | `json.loads` of the whole file: an array, one object, or JSON lines |
| `.parquet` | `pyarrow.parquet.ParquetFile.iter_batches` |
| `.csv`, `.tsv` | `csv`; a cell holding a JSON list or object is decoded (CSV has no nested types) |
| dataset folder | `datasets.load_from_disk` (the split the manifest names) |

An input of any other kind (a hub dataset name) cannot be read back without the network: the audit
reports it as unavailable, which fails the audit unless `--shards-only` is asked for.

Cost on the 20k bench corpus (17 MB JSONL): ~0.25 s, the `json.loads` of every line.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sftdata.errors import InputError

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
JSON_SUFFIXES = (".json", ".json.gz")
CSV_SUFFIXES = (".csv", ".tsv")


def _open(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")  # noqa: SIM115


def raw_rows(path: Path, split: str | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Every JSON-object row of one input with its row index (see the module docstring).

    Raises:
        InputError: the input is of a kind the audit cannot read back.
    """
    name = path.name.lower()
    if path.is_dir():
        return _dataset_rows(path, split or "train")
    if name.endswith(JSONL_SUFFIXES):
        return _jsonl(path)
    if name.endswith(JSON_SUFFIXES):
        return _json(path)
    if name.endswith(".parquet"):
        return _parquet(path)
    if name.endswith(CSV_SUFFIXES):
        return _csv(path, "\t" if name.endswith(".tsv") else ",")
    raise InputError(f"{path}: the audit cannot read inputs of this kind back")


def _jsonl_lines(f: io.BufferedIOBase) -> Iterator[tuple[int, dict[str, Any]]]:
    for index, line in enumerate(f):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):  # invalid UTF-8 or JSON: a reject of the writer
            continue
        if isinstance(value, dict):
            yield index, value


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with _open(path) as f:
        yield from _jsonl_lines(f)


def _json(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with _open(path) as f:
        data = f.read()
    if not data.strip():
        return
    try:
        value = json.loads(data)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data":
            yield from _jsonl_lines(io.BytesIO(data))
        return
    items = [value] if isinstance(value, dict) else value if isinstance(value, list) else []
    for index, item in enumerate(items):
        if isinstance(item, dict):
            yield index, item


def _parquet(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow.parquet as pq

    index = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for value in batch.to_pylist():
            yield index, value
            index += 1


def _csv(path: Path, delimiter: str) -> Iterator[tuple[int, dict[str, Any]]]:
    csv.field_size_limit(1 << 30)
    with _open(path) as f, io.TextIOWrapper(f, encoding="utf-8", errors="replace", newline="") as text:
        reader = csv.reader(text, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return
        for index, cells in enumerate(reader):
            if not any(cells) or len(cells) != len(header):
                continue
            row: dict[str, Any] = {}
            for key, value in zip(header, cells, strict=True):
                if value[:1] in ("[", "{"):
                    try:
                        row[key] = json.loads(value)
                        continue
                    except (ValueError, RecursionError):
                        pass
                row[key] = value
            yield index, row


def _dataset_rows(path: Path, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
    import datasets

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        ds = ds[split]
    yield from enumerate(ds)
