"""Read raw rows from files and Hugging Face datasets, one `RawRow` at a time.

Every row that exists in the input comes out as a `RawRow`: either parsed (`data` is a dict) or not
(`data` is None, `problem` says why, `raw` keeps the text). One bad line never fails a file; only an
input that cannot be opened at all raises `InputError`.

Formats and how they are read (all streamed; nothing holds a row longer than `max_row_bytes`):

| input | reader | memory |
|---|---|---|
| `.jsonl`, `.ndjson`, `.jsonl.gz` | binary `readline(max_row_bytes + 2)`, strict UTF-8, `json.loads` | one line |
| `.json` array up to `max_row_bytes` (and `JSON_WHOLE_LIMIT`) | whole-file `json.loads` | the file |
| larger `.json` / `.json.gz` array | chunked `JSONDecoder.raw_decode`, one element at a time | one element |
| `.json` holding JSON lines | detected from "Extra data" after the first object, then read as JSONL | one line |
| `.parquet` | `pyarrow.parquet.ParquetFile.iter_batches` (1,024 rows), row sizes from Arrow | one batch |
| `.csv`, `.tsv` | the `csv` module over bounded lines (all cells are text; JSON cells decoded) | one row |
| folder / name | `datasets.load_from_disk` or `datasets.load_dataset(..., split=)` | Arrow memory-map |

Bounded rows. A JSONL line, a JSON array element, a Parquet row or a CSV record longer than
`max_row_bytes` (default `DEFAULT_MAX_ROW_BYTES`, 32 MiB) is never held whole: the reader streams past
it (1 MiB at a time; gzip decompression is streamed too) and yields an `oversize_row` problem with its
position and size, not its text; the rows after it are read normally. A 1.5 GB line in a 1.5 MB
`.jsonl.gz` is skipped in ~2 s at the reader's ordinary memory. Limits of the approach: a Parquet row is
measured after pyarrow has decoded its page (the row is skipped before it becomes Python objects, but its
row group is in Arrow memory once); a `.json` element is measured in decoded characters (at most 4x
fewer than its UTF-8 bytes); Hugging Face datasets are memory-mapped Arrow and are not measured.

Measured on the 20k-row benchmark corpus (17 MB): JSONL read + `json.loads` is 0.25 s of the
~1 s a whole `sftdata validate` process takes; the bounded `readline` costs the same as iterating the
file. The chunked JSON array reader runs at `json.loads` speed (the same C scanner, one call per
element); ijson, which it replaces, is ~10x slower and holds a long string whole. Blank lines in JSONL are
not rows; row indices still count them, so `index + 1` is always the line number an editor shows.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sftdata.errors import InputError
from sftdata.reasons import Reason
from sftdata.records import Problem

DEFAULT_MAX_ROW_BYTES = 32 * 2**20
"""Largest row (a JSONL line, a JSON array element, a Parquet row, a CSV record) read, in bytes."""

JSON_WHOLE_LIMIT = 256 * 1024 * 1024
"""JSON files up to this size (and up to `max_row_bytes`) are parsed whole; larger ones element by element."""

SKIP_CHUNK = 1 << 20
"""Bytes (or characters) read at a time while streaming past an oversized row."""

PARQUET_BATCH_ROWS = 1024

CSV_JSON_COLUMNS = frozenset({"messages", "conversations", "history", "tools", "prompt", "completion", "replies"})
"""CSV cells of these columns that hold a JSON list/object are decoded (CSV has no nested types)."""

FILE_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz", ".json", ".json.gz", ".parquet", ".csv", ".tsv")


@dataclass(frozen=True, slots=True)
class RawRow:
    """One row of an input, parsed or not.

    `data` is the parsed object, or None when the row could not be read; then `problem` says why and
    `raw` holds the raw text (or the parsed non-object value).
    """

    source: str
    index: int
    data: dict[str, Any] | None
    raw: Any = None
    problem: Problem | None = None


def read_rows(source: str, *, split: str | None = None, max_row_bytes: int = DEFAULT_MAX_ROW_BYTES
              ) -> Iterator[RawRow]:
    """Stream the rows of one input: a file (by extension) or a Hugging Face dataset (folder or name).

    Args:
        source: A path to `.jsonl`/`.json`/`.parquet`/`.csv` (also `.jsonl.gz`), a dataset folder,
            or a Hugging Face dataset name.
        split: The dataset split for Hugging Face inputs (default `train`); ignored for files.
        max_row_bytes: A longer row is streamed past and comes out as an `oversize_row` problem.

    Raises:
        InputError: The input does not exist, has an unsupported extension, or cannot be opened.
    """
    path = Path(source)
    if path.is_file():
        name = path.name.lower()
        if name.endswith((".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")):
            return _read_jsonl(source, path, max_row_bytes)
        if name.endswith((".json", ".json.gz")):
            return _read_json(source, path, max_row_bytes)
        if name.endswith(".parquet"):
            return _read_parquet(source, path, max_row_bytes)
        if name.endswith((".csv", ".tsv")):
            return _read_csv(source, path, "\t" if name.endswith(".tsv") else ",", max_row_bytes)
        raise InputError(f"{source}: unsupported file extension {path.suffix!r}; expected one of "
                         f"{', '.join(FILE_SUFFIXES)} (or a Hugging Face dataset folder or name)")
    if path.is_dir() or not _looks_like_file(source):
        return _read_hf(source, split or "train")
    raise InputError(f"{source}: no such file; check the path (relative paths are relative to "
                     f"{os.getcwd()})")


def _looks_like_file(source: str) -> bool:
    return source.lower().endswith(FILE_SUFFIXES) or source.startswith((".", "/", "~"))


def _open_binary(path: Path) -> io.BufferedIOBase:
    try:
        return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")  # noqa: SIM115
    except OSError as err:
        raise InputError(f"{path}: cannot open ({err.strerror or err})") from None


def parse_line(source: str, index: int, line: bytes) -> RawRow:
    """Turn one JSONL line into a `RawRow` (never raises)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        return RawRow(source, index, None, line.rstrip(b"\r\n").decode("utf-8", "backslashreplace"),
                      Problem(Reason.invalid_utf8, f"line {index + 1} is not valid UTF-8 ({err.reason} at byte "
                              f"{err.start})"))
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        return RawRow(source, index, None, text.rstrip("\r\n"),
                      Problem(Reason.invalid_json, f"line {index + 1} is not valid JSON: {err.msg} at column "
                              f"{err.colno}"))
    except ValueError as err:  # an integer longer than Python's 4,300-digit conversion limit
        return RawRow(source, index, None, text.rstrip("\r\n"),
                      Problem(Reason.invalid_json, f"line {index + 1} is not usable JSON: {err}"))
    except RecursionError:
        return RawRow(source, index, None, text.rstrip("\r\n"),
                      Problem(Reason.too_deep, f"line {index + 1} is nested too deeply to parse"))
    return value_row(source, index, value, text.rstrip("\r\n"))


def value_row(source: str, index: int, value: Any, text: Any = None) -> RawRow:
    """The `RawRow` of a parsed value: the row when it is an object, else a `not_an_object` problem."""
    if isinstance(value, dict):
        return RawRow(source, index, value, value)
    return RawRow(source, index, None, value if text is None else text,
                  Problem(Reason.not_an_object, f"row {index} is a JSON {_json_kind(value)}, expected an object "
                          "with the fields of a conversation"))


def _json_kind(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def oversize_row(source: str, index: int, size: int, max_row_bytes: int, what: str) -> RawRow:
    """The reject of a row longer than `max_row_bytes`: its position and size, never its text."""
    return RawRow(source, index, None, None,
                  Problem(Reason.oversize_row, f"{what} is {size:,} bytes, more than max_row_bytes={max_row_bytes:,}; "
                          "it was skipped without being read whole (raise --max-row-bytes to read it)"))


def read_lines(f: io.BufferedIOBase, max_row_bytes: int, length: int | None = None) -> Iterator[bytes | int]:
    """The lines of a binary stream, each as bytes, or as its size (an int) when longer than `max_row_bytes`.

    A long line is never held: `readline` is capped at `max_row_bytes + 2` bytes (room for `\\r\\n`), and
    the rest of a longer line is read and dropped `SKIP_CHUNK` bytes at a time. `length` stops after that
    many bytes (a range that ends at a line end). A line's size excludes its line break.
    """
    readline = f.readline
    cap = max_row_bytes + 2
    if length is None:  # the hot path: C-level iteration, one length test per line
        for line in iter(functools.partial(readline, cap), b""):
            if len(line) <= max_row_bytes:
                yield line
            else:
                yield _long_line(readline, line, cap, max_row_bytes, -1)[0]
        return
    left = length
    while left > 0:
        line = readline(min(cap, left))
        if not line:
            return
        left -= len(line)
        if len(line) <= max_row_bytes:
            yield line
        else:
            got, left = _long_line(readline, line, cap, max_row_bytes, left)
            yield got


def _long_line(readline: Any, head: bytes, cap: int, max_row_bytes: int, left: int) -> tuple[bytes | int, int]:
    """A line whose first `readline` passed `max_row_bytes`: the line when its text is within the limit after
    all (the excess was its line break), else its size, the rest read past. Also the bytes left (-1: no bound)."""
    size, tail = len(head), head
    if len(head) == cap and head[-1:] != b"\n":
        while tail[-1:] != b"\n" and left != 0:
            tail = readline(SKIP_CHUNK if left < 0 else min(SKIP_CHUNK, left))
            if not tail:
                break
            size += len(tail)
            if left > 0:
                left -= len(tail)
    size -= 2 if tail.endswith(b"\r\n") else 1 if tail.endswith(b"\n") else 0
    return (head if size <= max_row_bytes else size), left


def _read_jsonl(source: str, path: Path, max_row_bytes: int) -> Iterator[RawRow]:
    f = _open_binary(path)  # opened eagerly so that a missing file raises on the call, not on iteration
    return _jsonl_lines(source, f, 0, max_row_bytes)


def _jsonl_lines(source: str, f: io.BufferedIOBase, start: int, max_row_bytes: int) -> Iterator[RawRow]:
    with f:
        for index, line in enumerate(read_lines(f, max_row_bytes), start):
            if type(line) is int:
                yield oversize_row(source, index, line, max_row_bytes, f"line {index + 1}")
            elif line.strip():
                yield parse_line(source, index, line)


def _read_json(source: str, path: Path, max_row_bytes: int) -> Iterator[RawRow]:
    """Parsed on first use, so that several inputs given together are not all held in memory at once."""
    _open_binary(path).close()  # fail now, naming the file, when it cannot be opened
    whole = min(JSON_WHOLE_LIMIT, max_row_bytes)
    if not path.name.lower().endswith(".gz") and path.stat().st_size > whole:
        return _LazyRows(lambda: _json_stream(source, path, max_row_bytes))
    return _LazyRows(lambda: _json_small_or_stream(source, path, whole, max_row_bytes))


class _LazyRows(Iterator[RawRow]):
    def __init__(self, make: Any) -> None:
        self._make = make
        self._rows: Iterator[RawRow] | None = None

    def __next__(self) -> RawRow:
        if self._rows is None:
            self._rows = self._make()
        return next(self._rows)


def _json_small_or_stream(source: str, path: Path, whole: int, max_row_bytes: int) -> Iterator[RawRow]:
    with _open_binary(path) as f:
        data = f.read(whole + 1)  # a .gz says nothing of its size: read at most the limit to find out
    if len(data) > whole:
        return _json_stream(source, path, max_row_bytes)
    return _json_rows(source, data, max_row_bytes)


def _json_rows(source: str, data: bytes, max_row_bytes: int) -> Iterator[RawRow]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{source}: not valid UTF-8 at byte {err.start} ({err.reason}); re-encode the file as "
                         "UTF-8 or convert it to JSONL so that one bad row becomes a reject") from None
    if not text.strip():
        return iter(())
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data":  # JSON lines in a .json file (common on the Hugging Face hub)
            return _jsonl_lines(source, io.BytesIO(data), 0, max_row_bytes)  # type: ignore[arg-type]
        raise InputError(f"{source}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); a .json "
                         "input must be one array of objects (or JSON lines)") from None
    except RecursionError:
        raise InputError(f"{source}: nested too deeply to parse") from None
    except ValueError as err:
        raise InputError(f"{source}: not usable JSON ({err})") from None
    if isinstance(value, dict):
        return iter([value_row(source, 0, value, None)])
    if not isinstance(value, list):
        raise InputError(f"{source}: holds a JSON {_json_kind(value)}; expected an array of objects")
    return (value_row(source, i, v, None) for i, v in enumerate(value))


_WS = re.compile(r"[ \t\n\r]*")
_OUTSIDE = re.compile(r'["\[\]{},]')
_INSIDE = re.compile(r'["\\]')


class _Skip:
    """Finds where one JSON value ends in text fed piece by piece, holding nothing (strings, brackets, escapes)."""

    def __init__(self) -> None:
        self.depth, self.in_string, self.escaped = 0, False, False

    def feed(self, s: str, i: int) -> int | None:
        """Index in `s` just past the value's end (a scalar ends before its `,`/`]`), or None: not in `s`."""
        n = len(s)
        if self.escaped:
            i, self.escaped = i + 1, False
        while i < n:
            if self.in_string:
                m = _INSIDE.search(s, i)
                if m is None:
                    return None
                j = m.start()
                if s[j] == "\\":
                    if j + 1 >= n:
                        self.escaped = True
                        return None
                    i = j + 2
                    continue
                self.in_string, i = False, j + 1
                if self.depth == 0:
                    return i
                continue
            m = _OUTSIDE.search(s, i)
            if m is None:
                return None
            j, c = m.start(), s[m.start()]
            if c == '"':
                self.in_string, i = True, j + 1
            elif c in "[{":
                self.depth, i = self.depth + 1, j + 1
            elif c in "]}":
                if self.depth == 0:
                    return j  # a scalar element ended by the array's `]`
                self.depth, i = self.depth - 1, j + 1
                if self.depth == 0:
                    return i
            else:  # a comma
                if self.depth == 0:
                    return j
                i = j + 1
        return None


def _utf8_len(s: str, start: int, stop: int) -> int:
    piece = s[start:stop]
    return len(piece) if piece.isascii() else len(piece.encode("utf-8", "surrogatepass"))


def _json_stream(source: str, path: Path, max_row_bytes: int) -> Iterator[RawRow]:
    """A large JSON array, one element at a time: `raw_decode` on a growing text window, oversized ones skipped."""
    decode = json.JSONDecoder().raw_decode
    with _open_binary(path) as raw, io.TextIOWrapper(raw, encoding="utf-8") as f:
        buf, pos, eof, index, lines = "", 0, False, 0, 0

        def more(n: int) -> bool:
            nonlocal buf, pos, eof, lines
            lines += buf.count("\n", 0, pos)
            buf, pos = buf[pos:], 0
            try:
                piece = f.read(n)
            except UnicodeDecodeError as err:
                raise InputError(f"{source}: not valid UTF-8 after row {index} ({err.reason}); re-encode the file "
                                 "as UTF-8 or convert it to JSONL so that one bad row becomes a reject") from None
            eof = not piece
            buf += piece
            return not eof

        def skip_ws() -> None:
            nonlocal pos
            while True:
                pos = _WS.match(buf, pos).end()
                if pos < len(buf) or not more(SKIP_CHUNK):
                    return

        def fail(what: str) -> InputError:
            line = lines + buf.count("\n", 0, pos) + 1
            return InputError(f"{source}: not valid JSON after row {index} ({what} at line {line}); a .json input "
                              "must be one array of objects (or convert it to JSONL so that one bad row becomes a "
                              "reject)")

        skip_ws()
        if buf[pos:pos + 1] == "{":  # JSON lines (a single object this large is itself oversize)
            yield from _jsonl_lines(source, _open_binary(path), 0, max_row_bytes)
            return
        if buf[pos:pos + 1] != "[":
            raise fail("expected an array")
        pos += 1
        skip_ws()
        if buf[pos:pos + 1] == "]":
            return
        while True:
            skip_ws()
            value, end = None, -1
            while True:  # the element, growing the window until it parses or passes the row limit
                try:
                    value, end = decode(buf, pos)
                    if end < len(buf) or eof:
                        break
                except json.JSONDecodeError as err:
                    if _Skip().feed(buf, pos) is not None:  # the element ends in the window: really invalid
                        raise fail(err.msg) from None
                    if eof:
                        raise fail(f"{err.msg}, at the end of the file") from None
                except (ValueError, RecursionError) as err:
                    raise fail(str(err) or type(err).__name__) from None
                held = len(buf) - pos
                if held > max_row_bytes:
                    end = -1
                    break
                more(min(max(SKIP_CHUNK, held), max_row_bytes + 1 - held))  # doubling, never past the limit
            if end < 0:  # stream past it: the scanner needs no more than one piece at a time
                skip, size = _Skip(), 0
                stop = skip.feed(buf, pos)
                while stop is None:
                    size += _utf8_len(buf, pos, len(buf))
                    pos = len(buf)
                    if not more(SKIP_CHUNK):
                        raise fail("an element runs to the end of the file")
                    stop = skip.feed(buf, 0)
                size += _utf8_len(buf, pos, stop)
                pos = stop
                yield oversize_row(source, index, size, max_row_bytes, f"array element {index}")
            elif end - pos > max_row_bytes and _utf8_len(buf, pos, end) > max_row_bytes:  # in the first window
                yield oversize_row(source, index, _utf8_len(buf, pos, end), max_row_bytes, f"array element {index}")
                pos = end
            else:
                yield value_row(source, index, value)
                pos = end
            index += 1
            skip_ws()
            c = buf[pos:pos + 1]
            if c == ",":
                pos += 1
            elif c == "]":
                return
            else:
                raise fail("expected `,` or `]` after an element")


def _read_parquet(source: str, path: Path, max_row_bytes: int) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for a corrupt footer
        raise InputError(f"{source}: not a readable Parquet file ({err})") from None
    return parquet_rows(source, pf.iter_batches(batch_size=PARQUET_BATCH_ROWS), 0, max_row_bytes)


def parquet_rows(source: str, batches: Any, start: int, max_row_bytes: int) -> Iterator[RawRow]:
    """The rows of Arrow record batches from `start`; a row over `max_row_bytes` of Arrow data is an
    `oversize_row` and never becomes Python objects (a batch within the limit is converted whole: fast)."""
    index = start
    for batch in batches:
        if batch.nbytes <= max_row_bytes:
            for value in batch.to_pylist():
                yield value_row(source, index, value)
                index += 1
            continue
        for i in range(batch.num_rows):
            row = batch.slice(i, 1)
            size = row.nbytes
            if size > max_row_bytes:
                yield oversize_row(source, index, size, max_row_bytes, f"Parquet row {index}")
            else:
                yield value_row(source, index, row.to_pylist()[0])
            index += 1


def _read_csv(source: str, path: Path, delimiter: str, max_row_bytes: int) -> Iterator[RawRow]:
    f = _open_binary(path)
    return _csv_rows(source, f, delimiter, max_row_bytes)


class _CsvLines:
    """Text lines for `csv.reader`, cut off where one CSV record passes `max_row_bytes`.

    A record (a header, or a row whose quoted cells may span lines) is counted from its first line. Once
    it is too long, the rest of it is read and dropped (quotes counted, so the record's end is found as
    the csv module would find it) and the reader gets one short line that ends the record; `take()` then
    reports the record's size so that the caller rejects it.
    """

    def __init__(self, f: io.BufferedIOBase, max_row_bytes: int) -> None:
        self._lines = read_lines(f, max_row_bytes)
        self.max_row_bytes = max_row_bytes
        self._size = 0
        self._fed_quotes = 0
        self._over = False

    def __iter__(self) -> _CsvLines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        if not self._over:
            size = line if type(line) is int else len(line)
            if type(line) is bytes and self._size + size <= self.max_row_bytes:
                self._size += size
                self._fed_quotes += line.count(b'"')
                return line.decode("utf-8", "surrogateescape")
            self._over = True
            self._size += size
            quotes = self._fed_quotes + (0 if type(line) is int else line.count(b'"'))
        else:  # pragma: no cover - a record is always ended below
            quotes = self._fed_quotes
        # drop the rest of the record; a line too long to hold has unknown quotes: treat its end as the record's
        while quotes % 2 and type(line) is bytes:
            line = next(self._lines, b"")
            if not line:
                break
            self._size += line if type(line) is int else len(line)
            quotes += 0 if type(line) is int else line.count(b'"')
        return '"\n' if self._fed_quotes % 2 else "\x00\n"

    def take(self) -> int | None:
        """The size of the record just read when it was too long, else None; starts the next record."""
        over, size = self._over, self._size
        self._size, self._fed_quotes, self._over = 0, 0, False
        return size if over else None


def _csv_rows(source: str, f: io.BufferedIOBase, delimiter: str, max_row_bytes: int) -> Iterator[RawRow]:
    csv.field_size_limit(max(1 << 30, max_row_bytes + 1))  # records are bounded by `_CsvLines` already
    with f:
        lines = _CsvLines(f, max_row_bytes)
        reader = csv.reader(lines, delimiter=delimiter)
        header = next(reader, None)
        if lines.take() is not None:
            raise InputError(f"{source}: the CSV header is more than max_row_bytes={max_row_bytes:,} bytes")
        if header is None:
            return
        for index, cells in enumerate(reader):
            size = lines.take()
            if size is not None:
                yield oversize_row(source, index, size, max_row_bytes, f"CSV row {index}")
                continue
            if not any(cells):
                continue
            yield _csv_row(source, index, header, cells)


def _csv_row(source: str, index: int, header: list[str], cells: list[str]) -> RawRow:
    raw = dict(zip(header, cells, strict=False))
    if len(cells) != len(header):
        return RawRow(source, index, None, delimiter_join(cells),
                      Problem(Reason.invalid_json, f"CSV row {index} has {len(cells)} cells, the header has "
                              f"{len(header)}"))
    for key, value in raw.items():
        if any("\udc80" <= ch <= "\udcff" for ch in value):
            return RawRow(source, index, None, delimiter_join(cells).encode("utf-8", "surrogateescape")
                          .decode("utf-8", "backslashreplace"),
                          Problem(Reason.invalid_utf8, f"CSV row {index}, column {key!r} is not valid UTF-8"))
    data: dict[str, Any] = {}
    for key, value in raw.items():
        if key in CSV_JSON_COLUMNS and value[:1] in ("[", "{"):
            try:
                data[key] = json.loads(value)
                continue
            except (json.JSONDecodeError, RecursionError):
                pass
        data[key] = value
    return RawRow(source, index, data, raw)


def delimiter_join(cells: list[str]) -> str:
    """The cells of a CSV row as one line of text (for the raw field of a reject)."""
    return ",".join(cells)


def _read_hf(source: str, split: str) -> Iterator[RawRow]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - datasets is a runtime dependency
        raise InputError(f"{source}: reading Hugging Face datasets needs `datasets` ({err})") from None
    try:
        if Path(source, "dataset_info.json").is_file() or Path(source, "dataset_dict.json").is_file():
            ds = datasets.load_from_disk(source)
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise InputError(f"{source}: no split {split!r}; it has {', '.join(ds)}; pass --split")
                ds = ds[split]
        else:
            ds = datasets.load_dataset(source, split=split)
    except InputError:
        raise
    except Exception as err:  # datasets raises many types (FileNotFoundError, DatasetNotFoundError, ValueError)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{source}: not a file and not a loadable Hugging Face dataset (split {split!r}): "
                         f"{first}. Give a .jsonl/.json/.parquet/.csv path, a dataset folder, or a dataset name "
                         "available offline") from None
    return (value_row(source, i, value, None) for i, value in enumerate(ds))
