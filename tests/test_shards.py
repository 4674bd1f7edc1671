"""Shards: written to a stream or a path, the same bytes either way, read back memory-mapped."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from sftdata.manifest import SHARD_SCHEMA
from sftdata.pipeline.rows import build_rows, shard_slices, shuffle_rows
from sftdata.shards import ShardWriter, file_sha256, read_shard, shard_metadata


def sample_batch() -> pa.RecordBatch:
    ids = np.arange(10, 20, dtype=np.int32)  # three documents: 3, 4 and 3 tokens
    labels = np.where(np.arange(10) % 2 == 0, -100, ids).astype(np.int32)
    offsets = np.array([0, 3, 7, 10])
    return build_rows(ids, labels, offsets, ["a", "b", "c"], [[2, 0], [1]])


def test_build_rows_concatenates_documents_and_masks_each_first_token() -> None:
    rows = sample_batch().to_pylist()
    assert rows[0]["input_ids"] == [17, 18, 19, 10, 11, 12]
    assert rows[0]["doc_lens"] == [3, 3] and rows[0]["doc_ids"] == ["c", "a"]
    assert rows[0]["labels"][0] == -100 and rows[0]["labels"][3] == -100  # each document's first label
    assert rows[0]["labels"][1] == 18 or rows[0]["labels"][1] == -100
    assert rows[1]["input_ids"] == [13, 14, 15, 16] and rows[1]["labels"][0] == -100


def test_stream_and_path_give_the_same_bytes_and_figures(tmp_path: Path) -> None:
    batch = sample_batch()
    sink = pa.BufferOutputStream()
    to_stream = ShardWriter(sink, "f" * 64)
    to_stream.write_batch(batch)
    to_stream.close()
    path = tmp_path / "s.arrow"
    writer = ShardWriter(path, "f" * 64)
    writer.write_batch(batch)
    stats = writer.close()
    in_memory = sink.getvalue().to_pybytes()
    assert in_memory == path.read_bytes()
    assert stats.sha256 == hashlib.sha256(in_memory).hexdigest() == file_sha256(path)
    labels = np.concatenate([np.asarray(r) for r in batch.column("labels").to_pylist()])
    assert (stats.rows, stats.documents, stats.tokens) == (2, 3, 10)
    assert stats.supervised_tokens == int((labels != -100).sum())


def test_reader_memory_maps_and_keeps_schema_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "s.arrow"
    writer = ShardWriter(path, "ab" * 32)
    writer.write_batch(sample_batch())
    writer.close()
    table = read_shard(path)
    assert table.schema.remove_metadata() == SHARD_SCHEMA
    assert shard_metadata(path) == {"format_version": 1, "fingerprint": "ab" * 32}
    assert json.loads(table.schema.metadata[b"sftdata"])["fingerprint"] == "ab" * 32
    assert table.column("input_ids").to_pylist() == sample_batch().column("input_ids").to_pylist()


def test_shard_slices_and_shuffle_are_deterministic() -> None:
    assert shard_slices(0, 5) == []
    assert shard_slices(10, 5) == [(0, 5), (5, 10)]
    assert shard_slices(11, 5) == [(0, 4), (4, 7), (7, 11)]
    plan = [[i] for i in range(50)]
    assert shuffle_rows(plan, 0, 0) == shuffle_rows(plan, 0, 0) != shuffle_rows(plan, 0, 1)
    assert sorted(shuffle_rows(plan, 3, 0)) == plan
