"""`validate_inputs` / `sftdata validate`: counts, the rejects file, exit codes and the one-line JSON."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sftdata.cli import app
from sftdata.errors import InputError
from sftdata.readers import read_rows
from sftdata.reasons import Reason
from sftdata.records import Problem, Reject
from sftdata.rejects import RejectLine, RejectWriter
from sftdata.validate import ValidationReport, to_records, validate_inputs

GOOD = {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}
TOOL = {"id": "t1", "tools": [{"name": "add", "parameters": {}}], "messages": [
    {"role": "user", "content": "add 2 and 2"},
    {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "add", "arguments": "{\"a\": 2}"}}]},
    {"role": "tool", "content": "4"}, {"role": "assistant", "content": "<think>easy</think>It is 4."}]}
EMPTY = {"id": "e1", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": " "}]}


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\n".join([json.dumps(GOOD).encode(), json.dumps(TOOL).encode(), b"{oops",
                                 json.dumps(EMPTY).encode(), b'{"messages": [{"role": "user", "content": "x\xff"}]}'])
                     + b"\n")
    return path


def run(*args: str):
    return CliRunner().invoke(app, ["validate", *args])


def test_report_counts_and_reasons(data, tmp_path):
    report = validate_inputs([str(data)], rejects=str(tmp_path / "rej.jsonl"))
    j = report.to_json()
    assert (j["format"], j["rows"], j["records"], j["accepted"], j["rejected"]) == ("messages", 5, 5, 2, 3)
    assert j["reasons"] == {"empty_reply": 1, "invalid_json": 1, "invalid_utf8": 1}
    assert j["roles"] == {"assistant": 3, "tool": 1, "user": 2}
    assert (j["turns"], j["tool_calls"], j["with_reasoning"], j["with_tools"]) == (
        {"min": 2, "mean": 3.0, "max": 4}, 1, 1, 1)
    assert report.reject_fraction == pytest.approx(3 / 5)
    lines = [json.loads(x) for x in (tmp_path / "rej.jsonl").read_text().splitlines()]
    assert [(x["index"], x["id"], x["reasons"][0]["code"]) for x in lines] == [
        (2, None, "invalid_json"), (3, "e1", "empty_reply"), (4, None, "invalid_utf8")]
    assert lines[0]["raw"] == "{oops" and lines[1]["raw"] == EMPTY and "\\xff" in lines[2]["raw"]
    assert all(x["source"] == str(data) and x["reasons"][0]["message"] for x in lines)
    for x in lines:
        RejectLine.model_validate(x)


def test_records_stream_exposes_formats_and_doc_ids(data):
    stream = to_records(read_rows(str(data)))
    ids = [item.doc_id for item in stream if not isinstance(item, Reject)]
    assert ids == [f"{data}:0", "t1"] and stream.formats == {str(data): "messages"}


def test_cli_json_is_one_line_on_stdout_and_exit_code_follows_the_fraction(data, tmp_path):
    result = run(str(data), "--json")
    assert result.exit_code == 1
    (line,) = result.stdout.strip().splitlines()
    out = json.loads(line)
    assert {"rows", "accepted", "rejected", "reasons", "format"} <= out.keys() and out["passed"] is False
    assert run(str(data), "--json", "--max-reject-fraction", "0.6").exit_code == 0
    assert run(str(data), "--json", "--max-reject-fraction", "0.59").exit_code == 1


def test_cli_table_and_rejects_file(data, tmp_path):
    rej = tmp_path / "out" / "rejects.jsonl"
    result = run(str(data), "--rejects", str(rej), "--max-reject-fraction", "1")
    assert result.exit_code == 0, result.output
    assert "empty_reply" in result.output and "rejects by reason" in result.output
    assert len(rej.read_text().splitlines()) == 3 and not (tmp_path / "out" / "rejects.jsonl.incomplete").exists()


def test_cli_column_map_and_format(tmp_path):
    path = tmp_path / "dolly.jsonl"
    path.write_text(json.dumps({"instruction": "q", "context": "c", "response": "r", "category": "qa"}) + "\n")
    assert run(str(path), "--json").exit_code == 2
    result = run(str(path), "--json", "--column-map", "context=input", "--column-map", "response=output")
    assert result.exit_code == 0 and json.loads(result.stdout)["format"] == "alpaca"
    assert json.loads(run(str(path), "--json", "--format", "alpaca", "--column-map",
                          "context=input,response=output").stdout)["accepted"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.jsonl"], "missing.jsonl: no such file"),
        (["{data}", "--format", "chatml"], "unknown format 'chatml'"),
        (["{data}", "--column-map", "broken"], "column map item 'broken' is not OLD=NEW"),
        (["{data}", "--oasst-paths", "best"], "oasst_paths must be 'all' or 'top'"),
    ],
)
def test_cli_exit_2_with_a_message(data, args, message):
    result = run(*[a.format(data=data) for a in args])
    assert result.exit_code == 2
    assert message in result.output.replace("\n", "")


def test_cli_bad_option_value_is_exit_2(data):
    assert run(str(data), "--max-reject-fraction", "2").exit_code == 2


def test_validate_inputs_opens_every_input_first(data, tmp_path):
    with pytest.raises(InputError, match=r"nope\.jsonl: no such file"):
        validate_inputs([str(data), str(tmp_path / "nope.jsonl")])


def test_multiple_inputs_are_detected_separately(data, tmp_path):
    alpaca = tmp_path / "a.json"
    alpaca.write_text(json.dumps([{"instruction": "q", "output": "a"}]))
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    report = validate_inputs([str(data), str(alpaca), str(empty)])
    assert report.format == "mixed"
    assert [(s.format, s.rows) for s in report.inputs.values()] == [("messages", 5), ("alpaca", 1), (None, 0)]


def test_reject_writer_never_fails_on_odd_raw_values(tmp_path):
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    with RejectWriter(tmp_path / "r.jsonl") as writer:
        writer(Reject("s", 0, [Problem(Reason.lone_surrogate, "m")], raw={"t": "\ud800"}))
        writer(Reject("s", 1, [Problem(Reason.too_deep, "m")], raw=deep))
    lines = (tmp_path / "r.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0])["raw"] == {"t": "\ud800"} and "nested too deeply" in json.loads(lines[1])["raw"]


def test_empty_report():
    assert ValidationReport().to_json()["format"] is None
