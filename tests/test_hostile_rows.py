"""Hostile input files: a GB-scale line is streamed past under a memory ceiling, and the rows around it are kept."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest

from sftdata.readers import RawRow, read_rows
from sftdata.reasons import Reason
from tests.conftest import PEAK_MIB

ROOT = Path(__file__).resolve().parents[1]
GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def write_gzip_with_long_line(path: Path, line_bytes: int) -> None:
    """A `.jsonl.gz`: a good row, one JSON line of just over `line_bytes` bytes, a good row. Built streaming and fast:
    after a full flush deflate restarts, so the compressed form of each identical 1 MiB block is written once
    per block without compressing it again (the file is a few MB)."""
    block = b"a" * (1 << 20)
    head = json.dumps(GOOD).encode() + b"\n" + b'{"messages": [{"role": "user", "content": "'
    tail = b'"}, {"role": "assistant", "content": "x"}]}\n' + json.dumps(GOOD).encode() + b"\n"
    blocks = (line_bytes >> 20) + 1  # the line is a little longer than `line_bytes`
    comp = zlib.compressobj(1, zlib.DEFLATED, -15)
    crc, size = 0, 0
    with open(path, "wb") as f:
        f.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")  # gzip header, no name, no mtime
        f.write(comp.compress(head) + comp.flush(zlib.Z_FULL_FLUSH))
        crc, size = zlib.crc32(head, crc), size + len(head)
        packed = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
        for _ in range(blocks):
            f.write(packed)
            crc, size = zlib.crc32(block, crc), size + len(block)
        f.write(comp.compress(tail) + comp.flush())
        crc, size = zlib.crc32(tail, crc), size + len(tail)
        f.write(struct.pack("<II", crc, size & 0xFFFFFFFF))


def test_the_fast_gzip_builder_writes_a_valid_file(tmp_path):
    import gzip

    path = tmp_path / "small.jsonl.gz"
    write_gzip_with_long_line(path, 3 << 20)
    lines = gzip.decompress(path.read_bytes()).splitlines()
    assert len(lines) == 3 and json.loads(lines[0]) == GOOD and json.loads(lines[2]) == GOOD
    assert json.loads(lines[1])["messages"][1]["content"] == "x" and len(lines[1]) > 3 << 20


@pytest.mark.slow
def test_a_gigabyte_line_in_a_small_gzip_is_skipped_under_a_memory_ceiling(tmp_path):
    path = tmp_path / "bomb.jsonl.gz"
    write_gzip_with_long_line(path, 1 << 30)
    assert path.stat().st_size < 8 << 20  # tiny on disk, a GiB when read
    ceiling = 1 << 30  # the address space of the whole process: the line alone would not fit
    code = textwrap.dedent(f"""
        import json, resource, time
        resource.setrlimit(resource.RLIMIT_AS, ({ceiling}, {ceiling}))
        {PEAK_MIB}
        from sftdata.readers import read_rows
        start = time.perf_counter()
        rows = [(r.index, r.data is not None, r.problem and r.problem.code.value, r.problem and r.problem.message)
                for r in read_rows({str(path)!r})]
        print(json.dumps({{"rows": rows, "s": time.perf_counter() - start,
                          "peak_mib": peak_mib()}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    (i0, ok0, _, _), (i1, ok1, code1, message1), (i2, ok2, _, _) = result["rows"]
    assert (i0, ok0, i2, ok2) == (0, True, 2, True)
    assert (i1, ok1, code1) == (1, False, "oversize_row")
    assert re.match(r"line 2 is 1,07\d,\d{3},\d{3} bytes", message1)
    assert "more than max_row_bytes=33,554,432" in message1
    assert result["peak_mib"] < 300, result


def test_the_ray_range_reader_bounds_rows_as_read_rows_does(tmp_path):
    from sftdata.pipeline.ray_read import plan_ranges, range_rows, to_raw_row

    lines = [json.dumps(GOOD), json.dumps({"messages": "z" * 5000}), "", json.dumps(GOOD), "{bad", json.dumps(GOOD)]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n")
    want = list(read_rows(str(path), max_row_bytes=1000))
    assert [r.problem.code for r in want if r.problem] == [Reason.oversize_row, Reason.invalid_json]
    for range_bytes in (1, 100, 1 << 20):
        ranges = plan_ranges([str(path)], range_bytes=range_bytes, max_row_bytes=1000)
        got = [to_raw_row(str(path), i, kind, payload) for r in ranges for i, kind, payload in range_rows(r)]
        assert got == want


def test_the_ray_parquet_reader_bounds_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sftdata.pipeline.ray_read import plan_ranges, range_rows, to_raw_row

    data = [GOOD, {"messages": [{"role": "user", "content": "u" * 5000}]}, GOOD]
    pq.write_table(pa.Table.from_pylist(data), tmp_path / "d.parquet", row_group_size=1)
    ranges = plan_ranges([str(tmp_path / "d.parquet")], max_row_bytes=1000)
    got: list[RawRow] = [to_raw_row(r.source, i, k, p) for r in ranges for i, k, p in range_rows(r)]
    assert got == list(read_rows(str(tmp_path / "d.parquet"), max_row_bytes=1000))
    assert got[1].problem.code is Reason.oversize_row and got[0].data is not None and got[2].data is not None
