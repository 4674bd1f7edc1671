"""Readers: every row of every supported input comes out, parsed or with a reason; unreadable inputs raise."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from sftdata import readers
from sftdata.errors import InputError
from sftdata.readers import RawRow, read_rows
from sftdata.reasons import Reason

ROWS = [{"instruction": "Say hi", "input": "", "output": "Hi!"}, {"instruction": "2+2?", "output": "4"}]


def write_jsonl(path: Path, lines: list[bytes | str]) -> Path:
    path.write_bytes(b"".join((x.encode() if isinstance(x, str) else x) + b"\n" for x in lines))
    return path


def test_jsonl_keeps_line_numbers_and_turns_bad_lines_into_problems(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [json.dumps(ROWS[0]), "", "{broken", b'{"a": "\xff"}', "[1, 2]",
                                              json.dumps(ROWS[1])])
    rows = list(read_rows(str(path)))
    assert [r.index for r in rows] == [0, 2, 3, 4, 5]  # the blank line is not a row but keeps its number
    assert rows[0].data == ROWS[0] and rows[0].problem is None
    assert rows[1].data is None and rows[1].problem.code is Reason.invalid_json and rows[1].raw == "{broken"
    assert "line 3" in rows[1].problem.message
    assert rows[2].problem.code is Reason.invalid_utf8 and "\\xff" in rows[2].raw
    assert rows[3].problem.code is Reason.not_an_object and rows[3].raw == "[1, 2]"
    assert rows[4].data == ROWS[1]


def test_deep_nesting_is_a_problem_not_a_crash(tmp_path):
    path = write_jsonl(tmp_path / "deep.jsonl", ["[" * 100_000 + "]" * 100_000])
    (row,) = read_rows(str(path))
    assert row.problem.code in (Reason.too_deep, Reason.invalid_json)


def test_jsonl_gz(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write("\n".join(json.dumps(r) for r in ROWS) + "\n")
    assert [r.data for r in read_rows(str(path))] == ROWS


def test_json_array_object_and_json_lines_in_a_json_file(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(ROWS + [3]))
    rows = list(read_rows(str(tmp_path / "a.json")))
    assert [r.data for r in rows[:2]] == ROWS and rows[2].problem.code is Reason.not_an_object
    (tmp_path / "o.json").write_text(json.dumps(ROWS[0]))
    assert [r.data for r in read_rows(str(tmp_path / "o.json"))] == [ROWS[0]]
    (tmp_path / "l.json").write_text("\n".join(json.dumps(r) for r in ROWS))
    assert [r.data for r in read_rows(str(tmp_path / "l.json"))] == ROWS
    (tmp_path / "e.json").write_text("  \n")
    assert list(read_rows(str(tmp_path / "e.json"))) == []


def test_large_json_arrays_stream_element_by_element(tmp_path, monkeypatch):
    (tmp_path / "a.json").write_text(json.dumps(ROWS + [{"x": 1.5}]))
    monkeypatch.setattr(readers, "JSON_WHOLE_LIMIT", 10)
    rows = list(read_rows(str(tmp_path / "a.json")))
    assert [r.data for r in rows] == [*ROWS, {"x": 1.5}]


def test_json_errors_name_the_file_and_position(tmp_path):
    (tmp_path / "bad.json").write_text('[{"a": 1},\n {"b": ]')
    with pytest.raises(InputError, match=r"bad\.json: not valid JSON .* line 2"):
        list(read_rows(str(tmp_path / "bad.json")))
    (tmp_path / "num.json").write_text("42")
    with pytest.raises(InputError, match="holds a JSON number; expected an array of objects"):
        list(read_rows(str(tmp_path / "num.json")))
    (tmp_path / "latin.json").write_bytes(b'[{"a": "\xe9"}]')
    with pytest.raises(InputError, match="not valid UTF-8 at byte 8"):
        list(read_rows(str(tmp_path / "latin.json")))


def test_parquet_streams_nested_columns(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
            for i in range(2500)]
    pq.write_table(pa.Table.from_pylist(data), tmp_path / "d.parquet", row_group_size=1000)
    rows = list(read_rows(str(tmp_path / "d.parquet")))
    assert len(rows) == 2500 and rows[-1].index == 2499 and rows[1234].data == data[1234]


def test_csv_rows_are_text_and_json_columns_are_decoded(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('instruction,input,output\n"Say ""hi""",,"multi\nline"\n\nshort,row\n'
                    'x,y,z\n', encoding="utf-8")
    rows = list(read_rows(str(path)))
    assert rows[0].data == {"instruction": 'Say "hi"', "input": "", "output": "multi\nline"}
    assert rows[1].problem.code is Reason.invalid_json and "2 cells" in rows[1].problem.message
    assert rows[2].data == {"instruction": "x", "input": "y", "output": "z"}
    conv = tmp_path / "c.csv"
    conv.write_text('messages\n"[{""role"": ""user"", ""content"": ""hi""}]"\n')
    assert next(read_rows(str(conv))).data == {"messages": [{"role": "user", "content": "hi"}]}


def test_csv_invalid_utf8_is_a_row_problem(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"instruction,output\nok,fine\nbad \xff,x\n")
    rows = list(read_rows(str(path)))
    assert rows[0].data == {"instruction": "ok", "output": "fine"}
    assert rows[1].problem.code is Reason.invalid_utf8


def test_hugging_face_dataset_folder_and_saved_dataset(tmp_path):
    import datasets

    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS))
    rows = list(read_rows(str(folder), split="train"))
    assert [r.data["output"] for r in rows] == ["Hi!", "4"]
    saved = tmp_path / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS[:1])}).save_to_disk(str(saved))
    assert [r.data["output"] for r in read_rows(str(saved))] == ["Hi!"]
    with pytest.raises(InputError, match="no split 'test'; it has train"):
        list(read_rows(str(saved), split="test"))


def test_unreadable_inputs_raise_naming_the_input(tmp_path):
    with pytest.raises(InputError, match=r"missing\.jsonl: no such file"):
        read_rows(str(tmp_path / "missing.jsonl"))
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(InputError, match=r"d\.txt: unsupported file extension '\.txt'; expected one of \.jsonl"):
        read_rows(str(tmp_path / "d.txt"))
    with pytest.raises(InputError, match="no-such-dataset-xyz: not a file and not a loadable Hugging Face dataset"):
        list(read_rows("no-such-dataset-xyz"))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match=r"bad\.parquet: not a readable Parquet file"):
        read_rows(str(tmp_path / "bad.parquet"))


def test_raw_row_is_frozen():
    row = RawRow("s", 0, {"a": 1}, {"a": 1})
    with pytest.raises(AttributeError):
        row.index = 3  # type: ignore[misc]


# -- bounded rows: a row longer than max_row_bytes is streamed past, rejected with its position and size

def oversize(row: RawRow) -> bool:
    return row.data is None and row.problem is not None and row.problem.code is Reason.oversize_row


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_an_oversize_jsonl_line_is_skipped_and_the_rows_after_it_are_read(tmp_path, monkeypatch, suffix):
    monkeypatch.setattr(readers, "SKIP_CHUNK", 7)  # cross many chunk edges while skipping
    long_line = json.dumps({"instruction": "x" * 500, "output": "y"})
    exact = json.dumps({"instruction": "z" * (100 - len(json.dumps({"instruction": "", "output": "o"}))),
                        "output": "o"})
    assert len(exact) == 100
    lines = [json.dumps(ROWS[0]), long_line, exact, "", json.dumps(ROWS[1])]
    path = tmp_path / f"d{suffix}"
    body = "\r\n".join(lines).encode() + b"\n"
    path.write_bytes(gzip.compress(body) if suffix.endswith(".gz") else body)
    rows = list(read_rows(str(path), max_row_bytes=100))
    assert [r.index for r in rows] == [0, 1, 2, 4]
    assert rows[0].data == ROWS[0] and rows[2].data == json.loads(exact) and rows[3].data == ROWS[1]
    assert oversize(rows[1]) and rows[1].raw is None
    assert rows[1].problem.message.startswith(f"line 2 is {len(long_line):,} bytes, more than max_row_bytes=100;")
    assert "x" * 20 not in rows[1].problem.message  # the size, never the text


def test_an_oversize_last_line_without_newline(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(json.dumps(ROWS[0]).encode() + b"\n" + b'{"a": "' + b"q" * 1000 + b'"}')
    rows = list(read_rows(str(path), max_row_bytes=200))
    assert rows[0].data == ROWS[0] and oversize(rows[1]) and f"{1009:,} bytes" in rows[1].problem.message


def test_a_huge_integer_is_invalid_json_not_a_crash(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ['{"a": ' + "9" * 5000 + "}", json.dumps(ROWS[0])])
    bad, good = read_rows(str(path))
    assert bad.problem.code is Reason.invalid_json and good.data == ROWS[0]


def json_array_text() -> tuple[str, list]:
    """An array with tricky strings (escaped quotes and backslashes, brackets, unicode) and scalars."""
    items = [ROWS[0], {"s": 'a "quoted" ] } [ { , \\ back\\\\slash \u00e9\u4e16 \U0001F600'}, 3, "str", None,
             {"nested": [[1, 2, {"k": "v]"}], []], "empty": {}}, ROWS[1], 1.5, True]
    return json.dumps(items, ensure_ascii=False, indent=1), items


@pytest.mark.parametrize("chunk", [1, 3, 64, 1 << 20])
def test_streamed_json_arrays_read_what_json_loads_reads(tmp_path, monkeypatch, chunk):
    text, items = json_array_text()
    (tmp_path / "a.json").write_text(text, encoding="utf-8")
    monkeypatch.setattr(readers, "SKIP_CHUNK", chunk)
    monkeypatch.setattr(readers, "JSON_WHOLE_LIMIT", 10)  # force the streaming reader
    rows = list(read_rows(str(tmp_path / "a.json")))
    assert [r.index for r in rows] == list(range(len(items)))
    assert [r.data for r in rows if r.data is not None] == [v for v in items if isinstance(v, dict)]
    assert [r.raw for r in rows if r.data is None] == [v for v in items if not isinstance(v, dict)]


@pytest.mark.parametrize("chunk", [5, 1 << 20])
@pytest.mark.parametrize("big", [{"messages": "x" * 3000}, "y" * 3000, [[["z" * 1000] * 3]],
                                 {"s": '\\"]}' * 800}, 10 ** 100])
def test_an_oversize_json_array_element_is_skipped(tmp_path, monkeypatch, chunk, big):
    monkeypatch.setattr(readers, "SKIP_CHUNK", chunk)
    items = [ROWS[0], big, ROWS[1]]
    (tmp_path / "a.json").write_text(json.dumps(items))
    limit = 60 if isinstance(big, int) else 2000
    rows = list(read_rows(str(tmp_path / "a.json"), max_row_bytes=limit))
    assert [r.index for r in rows] == [0, 1, 2]
    assert rows[0].data == ROWS[0] and rows[2].data == ROWS[1]
    assert oversize(rows[1]) and rows[1].raw is None
    assert f"array element 1 is {len(json.dumps(big)):,} bytes" in rows[1].problem.message


def test_a_json_gz_is_measured_while_decompressing(tmp_path):
    items = [ROWS[0], {"instruction": "w" * 5000, "output": "x"}, ROWS[1]]
    path = tmp_path / "a.json.gz"
    path.write_bytes(gzip.compress(json.dumps(items).encode()))
    rows = list(read_rows(str(path), max_row_bytes=1000))
    assert rows[0].data == ROWS[0] and oversize(rows[1]) and rows[2].data == ROWS[1]
    assert [r.data for r in read_rows(str(path))] == items  # within the default limit: parsed whole


def test_streamed_json_errors_name_the_file_and_row(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "JSON_WHOLE_LIMIT", 10)
    (tmp_path / "bad.json").write_text('[{"a": 1},\n {"b": ]}, {"c": 2}]')
    with pytest.raises(InputError, match=r"bad\.json: not valid JSON after row 1 \(Expecting value at line 2\)"):
        list(read_rows(str(tmp_path / "bad.json")))
    (tmp_path / "cut.json").write_text('[{"a": 1}, {"b": "unterminated')
    with pytest.raises(InputError, match=r"cut\.json: not valid JSON after row 1"):
        list(read_rows(str(tmp_path / "cut.json")))
    (tmp_path / "lines.json").write_text("\n".join(json.dumps(r) for r in ROWS))
    assert [r.data for r in read_rows(str(tmp_path / "lines.json"))] == ROWS


def test_an_oversize_parquet_row_never_becomes_python_objects(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
            for i in range(3000)]
    data[1500]["messages"][0]["content"] = "h" * 100_000
    pq.write_table(pa.Table.from_pylist(data), tmp_path / "d.parquet", row_group_size=1000)
    rows = list(read_rows(str(tmp_path / "d.parquet"), max_row_bytes=10_000))
    assert len(rows) == 3000 and [r.index for r in rows] == list(range(3000))
    assert oversize(rows[1500]) and "Parquet row 1500 is 100," in rows[1500].problem.message
    assert [r.data for r in rows[:1500]] == data[:1500] and [r.data for r in rows[1501:]] == data[1501:]


def test_an_oversize_csv_record_is_skipped_single_or_multi_line(tmp_path):
    path = tmp_path / "d.csv"
    long_cell = "v" * 500
    many_lines = "\n".join(["m" * 40] * 20)  # a quoted cell over many short lines, 819 bytes in all
    path.write_text(f'instruction,output\nok,fine\n{long_cell},x\n"{many_lines}",y\nafter,"two\nlines"\n'
                    f'"quoted ""{long_cell}""",z\nlast,row\n', encoding="utf-8")
    rows = list(read_rows(str(path), max_row_bytes=300))
    assert [r.index for r in rows] == [0, 1, 2, 3, 4, 5]
    assert rows[0].data == {"instruction": "ok", "output": "fine"}
    assert oversize(rows[1]) and "CSV row 1 is 502 bytes" in rows[1].problem.message
    assert oversize(rows[2]) and oversize(rows[4])
    assert rows[3].data == {"instruction": "after", "output": "two\nlines"}
    assert rows[5].data == {"instruction": "last", "output": "row"}
    assert [r.data for r in read_rows(str(path))][2]["instruction"] == many_lines  # default limit: all read
