"""Token tables as flat numpy arrays: the one shape every check and statistic works on.

A shard (or any tokenized dataset) is a list column of ids, a list column of labels and, per row, the
lengths of the documents packed into it. Arrow stores a list column as one flat values buffer plus
row offsets, so `TokenView` keeps exactly that: `ids` and `labels` flat (zero-copy from a
memory-mapped stream where the types allow), `row_offsets`, and the flat `doc_lens` with their own
row offsets. Every check is then a handful of vectorised numpy operations over millions of tokens
(milliseconds per check) instead of a Python loop over rows.

Documents are located once (`doc_starts`, `doc_rows`) from `doc_lens`; rows whose `doc_lens` do not
add up to the row length are reported by the invariants and their documents left out of the per-document
checks, so one bad row cannot shift the positions reported for the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa

from sftdata.errors import InputError
from sftdata.shards import numpy_values, read_shard


def list_column(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(flat values, row offsets from 0) of a list column, zero-copy where Arrow allows."""
    column = table.column(name).combine_chunks() if table.num_rows else pa.array([], pa.list_(pa.int32()))
    if isinstance(column, pa.ChunkedArray):  # an empty table combines to a chunked array
        column = column.combine_chunks()
    if column.null_count:
        raise InputError(f"column {name!r} has {column.null_count} null rows; expected a list in every row")
    offsets = numpy_values(column.offsets)
    flat = column.flatten()
    values = np.asarray(flat.to_pylist(), dtype=object) if pa.types.is_string(flat.type) else numpy_values(flat)
    return values, (offsets - offsets[0]).astype(np.int64)


@dataclass
class TokenView:
    """One shard (or dataset file) as flat arrays. Positions are flat indexes unless named otherwise."""

    name: str
    """Shard file name as reported in findings."""
    ids: np.ndarray
    labels: np.ndarray
    row_offsets: np.ndarray
    """n_rows + 1 offsets into `ids`."""
    doc_lens: np.ndarray
    doc_offsets: np.ndarray
    """n_rows + 1 offsets into `doc_lens`."""
    doc_ids: list[str]
    table: pa.Table | None = field(default=None, repr=False)

    @property
    def n_rows(self) -> int:
        return len(self.row_offsets) - 1

    @property
    def n_docs(self) -> int:
        return len(self.doc_lens)

    @cached_property
    def row_lens(self) -> np.ndarray:
        return np.diff(self.row_offsets)

    @cached_property
    def doc_rows(self) -> np.ndarray:
        """Row index of every document."""
        return np.repeat(np.arange(self.n_rows, dtype=np.int64), np.diff(self.doc_offsets))

    @cached_property
    def rows_consistent(self) -> np.ndarray:
        """Per row: do its `doc_lens` add up to its length (and are all positive)?"""
        sums = np.zeros(self.n_rows, dtype=np.int64)
        np.add.at(sums, self.doc_rows, self.doc_lens.astype(np.int64))
        positive = np.ones(self.n_rows, dtype=bool)
        np.logical_and.at(positive, self.doc_rows, self.doc_lens > 0)
        return (sums == self.row_lens) & positive

    @cached_property
    def doc_starts(self) -> np.ndarray:
        """Flat position of each document's first token."""
        lens = self.doc_lens.astype(np.int64)
        exclusive = np.cumsum(lens) - lens
        first = self.doc_offsets[:-1][self.doc_rows]  # the first document of each document's row
        return self.row_offsets[:-1][self.doc_rows] + exclusive - exclusive[first]

    @cached_property
    def doc_valid(self) -> np.ndarray:
        """Documents of consistent rows: the ones the per-document checks look at."""
        return self.rows_consistent[self.doc_rows] if self.n_docs else np.zeros(0, dtype=bool)

    @cached_property
    def supervised(self) -> np.ndarray:
        return self.labels != -100

    @cached_property
    def token_rows(self) -> np.ndarray:
        return np.repeat(np.arange(self.n_rows, dtype=np.int64), self.row_lens)

    def doc_of(self, position: int) -> int | None:
        """Index of the document holding flat `position` (None in an inconsistent row)."""
        row = int(self.token_rows[position])
        lo, hi = int(self.doc_offsets[row]), int(self.doc_offsets[row + 1])
        if lo == hi or not self.rows_consistent[row]:
            return None
        k = lo + int(np.searchsorted(self.doc_starts[lo:hi], position, side="right")) - 1
        return k if k >= lo else None

    def locate(self, position: int) -> dict:
        """Where a flat position is: row, position in row, document id, position in document."""
        row = int(self.token_rows[position])
        where = {"shard": self.name, "row": row, "position": position - int(self.row_offsets[row])}
        doc = self.doc_of(position)
        if doc is not None:
            where["doc_id"] = self.doc_ids[doc] if doc < len(self.doc_ids) else None
            where["doc_position"] = position - int(self.doc_starts[doc])
        return where

    def doc_tokens(self, doc: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, labels) of one document."""
        start = int(self.doc_starts[doc])
        end = start + int(self.doc_lens[doc])
        return self.ids[start:end], self.labels[start:end]


def view_from_columns(name: str, table: pa.Table, *, ids: str, labels: np.ndarray | None = None,
                      label_column: str | None = "labels", doc_lens: tuple[np.ndarray, np.ndarray] | None = None,
                      doc_ids: list[str] | None = None) -> TokenView:
    """Build a view from a table's list columns; `labels`/`doc_lens` may be given already derived."""
    flat_ids, row_offsets = list_column(table, ids)
    if labels is None:
        flat_labels, label_offsets = list_column(table, label_column or "labels")
        if not np.array_equal(label_offsets, row_offsets):
            bad = int(np.flatnonzero(np.diff(label_offsets) != np.diff(row_offsets))[0])
            raise InputError(
                f"{name}: row {bad} has {int(np.diff(label_offsets)[bad])} labels for "
                f"{int(np.diff(row_offsets)[bad])} input_ids; labels must be aligned with input_ids"
            )
        labels = flat_labels
    if doc_lens is None:  # one document per row
        doc_lens = (np.diff(row_offsets), np.arange(len(row_offsets), dtype=np.int64))
    n_docs = len(doc_lens[0])
    return TokenView(
        name=name, ids=flat_ids, labels=labels,
        row_offsets=row_offsets, doc_lens=doc_lens[0].astype(np.int64, copy=False), doc_offsets=doc_lens[1],
        doc_ids=doc_ids if doc_ids is not None else [f"{name}:{i}" for i in range(n_docs)], table=table,
    )


def shard_view(path: Path) -> TokenView:
    """A prepared shard (SHARD_SCHEMA) as a view."""
    table = read_shard(path)
    missing = {"input_ids", "labels", "doc_lens", "doc_ids"} - set(table.column_names)
    if missing:
        raise InputError(f"{path}: missing columns {sorted(missing)}; not an sftdata shard")
    doc_lens = list_column(table, "doc_lens")
    doc_id_values, _ = list_column(table, "doc_ids")
    return view_from_columns(path.name, table, ids="input_ids", doc_lens=doc_lens,
                             doc_ids=[str(x) for x in doc_id_values])
