"""Shards: written to a stream or a path, the same bytes either way, read back memory-mapped."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from sftdata.fingerprint import file_sha256
from sftdata.manifest import FORMAT_VERSION, SHARD_SCHEMA
from sftdata.pipeline.plan import shuffle_rows
from sftdata.pipeline.write import ShardWriter, build_rows, shard_slices
from sftdata.shards import read_shard, shard_metadata


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
    assert shard_metadata(path) == {"format_version": FORMAT_VERSION, "fingerprint": "ab" * 32}
    assert json.loads(table.schema.metadata[b"sftdata"])["fingerprint"] == "ab" * 32
    assert table.column("input_ids").to_pylist() == sample_batch().column("input_ids").to_pylist()


def test_shard_slices_and_shuffle_are_deterministic() -> None:
    assert shard_slices(0, 5) == []
    assert shard_slices(10, 5) == [(0, 5), (5, 10)]
    assert shard_slices(11, 5) == [(0, 4), (4, 7), (7, 11)]
    plan = [[i] for i in range(50)]
    assert shuffle_rows(plan, 0, 0) == shuffle_rows(plan, 0, 0) != shuffle_rows(plan, 0, 1)
    assert sorted(shuffle_rows(plan, 3, 0)) == plan


def test_one_reader_for_streams_files_and_truncated_shards(tmp_path: Path) -> None:
    import pytest

    from sftdata.errors import InputError
    from sftdata.shards import iter_rows, shard_paths

    path = tmp_path / "shard-00001-of-00002.arrow"
    with ShardWriter(path, "ab" * 32) as writer:
        writer.write_batch(sample_batch())
        writer.close()
    other = tmp_path / "shard-00000-of-00002.arrow"  # an IPC *file*, as other tools write
    table = pa.Table.from_batches([sample_batch()])
    with pa.OSFile(str(other), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
        w.write_table(table)
    assert [p.name for p in shard_paths(tmp_path)] == [other.name, path.name]
    assert read_shard(other).column("input_ids").to_pylist() == read_shard(path).column("input_ids").to_pylist()
    assert len(list(iter_rows(tmp_path))) == 4
    cut = tmp_path / "cut.arrow"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(InputError, match=r"cut\.arrow: not a readable Arrow IPC stream .* truncated or not a shard"):
        read_shard(cut)


def test_audit_and_trainer_read_shards_with_the_one_reader() -> None:
    import inspect as pyinspect

    import sftdata.audit.foreign as foreign
    import sftdata.audit.tables as tables
    import sftdata.train.data as data

    for module in (tables, foreign, data):
        source = pyinspect.getsource(module)
        assert "read_shard(" in source and "pa.ipc.open_stream(" not in source and "pa.memory_map(" not in source


def test_writing_and_reading_a_shard_never_imports_pandas(tmp_path):
    """`pa.array` and `Array.to_numpy` import pandas on first use (0.2 s, ~60 MB): the writer builds rows from
    buffers and every reader goes through `numpy_values`, so neither `prepare` nor the audit pays it."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, pathlib\n"
        "from sftdata.pipeline.write import write_parts\n"
        "from sftdata.audit.tables import shard_view\n"
        "folder = pathlib.Path(sys.argv[1])\n"
        "ids = np.arange(12, dtype=np.int32)\n"
        "parts = write_parts(folder, 'fp', 0, 10, [[0, 1], [2]], ids, ids.copy(), np.array([4, 4, 4]),\n"
        "                    ['a', 'b', 'é'])\n"
        "view = shard_view(folder / parts[0].part)\n"
        "assert view.doc_ids == ['a', 'b', 'é'] and view.ids.tolist() == list(range(12)), view\n"
        "print('pandas' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
