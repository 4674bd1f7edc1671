"""Bad input never crashes and never vanishes: generated rows (thousands per run) of every kind of damage.

Each example is a small input (up to 40 rows) written as JSONL bytes: valid rows of every format, rows
with wrong types and missing keys, broken JSON, invalid UTF-8, NUL bytes, lone surrogates, oversize
strings, deep nesting, non-objects and blank lines. The invariants: every row is counted, every
record is accepted or rejected, every reject carries at least one reason with a message, and every
reject can be written as a JSON line.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sftdata.config import ReadOptions
from sftdata.errors import InputError
from sftdata.formats import FORMATS
from sftdata.formats.base import FormatOptions
from sftdata.formats.messages import convert as messages_convert
from sftdata.readers import parse_line
from sftdata.reasons import Reason
from sftdata.records import Reject, parse_conversation
from sftdata.rejects import RejectLine, reject_line
from sftdata.validate import count_records

MAX_CHARS = 200
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                          HealthCheck.data_too_large])

nasty_text = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "   ", "a\x00b", "bad \ud800 half", "x" * (MAX_CHARS + 1), "<think>r</think>ok",
                     "<think>\n\n</think>\n\n", "你好", "<|im_end|>", "{\"name\": \"f\"}"]),
)
junk = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | nasty_text,
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=8)
role = st.sampled_from(["user", "assistant", "system", "tool", "human", "gpt", "narrator", "developer"]) | junk
part = st.fixed_dictionaries({"type": st.sampled_from(["text", "reasoning", "tool_call", "image_url"]) | junk},
                             optional={"text": nasty_text | junk, "value": nasty_text | junk})
content = nasty_text | st.none() | st.lists(part | nasty_text, max_size=3) | junk
call = st.fixed_dictionaries({"function": st.fixed_dictionaries(
    {"name": nasty_text | junk, "arguments": st.sampled_from(["{\"a\": 1}", "{bad", "[1]", ""]) | junk})},
    optional={"id": nasty_text | st.integers()}) | junk
message = st.fixed_dictionaries({"role": role, "content": content}, optional={
    "tool_calls": st.lists(call, max_size=2) | junk, "loss_weight": st.sampled_from([0, 1, 0.5, 1.0, "1"]) | junk,
    "reasoning": nasty_text | junk, "train": st.booleans() | junk, "tool_call_id": nasty_text | junk})
turn = st.fixed_dictionaries({"from": st.sampled_from(["human", "gpt", "system", "function_call", "observation",
                                                       "bot"]) | junk, "value": content})
oasst_node = st.recursive(
    st.fixed_dictionaries({"role": st.sampled_from(["prompter", "assistant"]) | junk, "text": nasty_text | junk,
                           "message_id": st.text(max_size=4)}, optional={"rank": st.integers(0, 3) | st.none()}),
    lambda inner: st.fixed_dictionaries({"role": st.sampled_from(["prompter", "assistant"]), "text": nasty_text,
                                         "message_id": st.text(max_size=4), "replies": st.lists(inner, max_size=3)}),
    max_leaves=6)
rows = {
    "messages": st.fixed_dictionaries({"messages": st.lists(message, max_size=5) | junk},
                                      optional={"id": nasty_text | st.integers(), "tools": junk}),
    "sharegpt": st.fixed_dictionaries({"conversations": st.lists(turn, max_size=5) | junk},
                                      optional={"system": nasty_text | junk, "tools": junk}),
    "alpaca": st.fixed_dictionaries({"instruction": nasty_text | junk, "output": nasty_text | junk},
                                    optional={"input": nasty_text | junk, "history": junk, "system": junk}),
    "prompt_completion": st.fixed_dictionaries({"prompt": nasty_text | st.lists(message, max_size=2) | junk,
                                                "completion": nasty_text | st.lists(message, max_size=2) | junk}),
    "oasst": st.fixed_dictionaries({"message_tree_id": st.text(max_size=4), "prompt": oasst_node | junk}),
}
damaged_line = st.one_of(
    st.binary(max_size=30),
    st.sampled_from([b"{broken", b"[1, 2]", b"42", b'"text"', b"null", b'{"a": "\xff\xfe"}', b"[" * 5000 + b"]" * 5000,
                     b'{"messages": ' + b"[" * 3000 + b"]" * 3000 + b"}", b"\x00", b'{"a": "\\ud800"}']),
)


def lines_for(fmt: str) -> st.SearchStrategy[list[bytes]]:
    good = rows[fmt].map(lambda r: json.dumps(r, ensure_ascii=bool(hash(str(r)) % 2)).encode("utf-8", "surrogatepass"))
    other = st.sampled_from(sorted(rows)).flatmap(lambda f: rows[f]).map(lambda r: json.dumps(r).encode())
    return st.lists(st.one_of(good, good, damaged_line, other, st.just(b"")), max_size=40)


def check(fmt: str, lines: list[bytes]) -> None:
    raw_rows = [parse_line("gen.jsonl", i, line) for i, line in enumerate(lines) if line.strip()]
    rejects: list[Reject] = []
    report = count_records(raw_rows, ReadOptions(format=fmt, max_chars=MAX_CHARS), on_reject=rejects.append)
    assert report.rows == len(raw_rows)
    assert report.records == report.accepted + report.rejected == report.accepted + len(rejects)
    if report.format != "oasst":  # an OASST tree gives one record per path
        assert report.rows == report.accepted + report.rejected
    for reject in rejects:
        assert reject.problems and all(isinstance(p.code, Reason) and p.message for p in reject.problems)
        RejectLine.model_validate(json.loads(reject_line(reject)))


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@SETTINGS
@given(data=st.data())
def test_every_row_is_accepted_or_rejected_with_a_reason(fmt, data):
    check(fmt, data.draw(lines_for(fmt)))


@SETTINGS
@given(lines=st.lists(st.sampled_from(sorted(rows)).flatmap(lambda f: rows[f]).map(lambda r: json.dumps(r).encode())
                      | damaged_line, max_size=30))
def test_auto_detection_either_decides_or_raises_a_clear_error(lines):
    try:
        check("auto", lines)
    except InputError as err:
        assert "cannot detect the format" in str(err) and "Fix:" in str(err)


@SETTINGS
@given(msgs=st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "tool"]),
                                            "content": nasty_text}), max_size=5))
def test_fast_path_equals_normalised_path(msgs):
    plain = messages_convert({"messages": msgs}, FormatOptions())[0]
    slow = messages_convert({"messages": msgs, "other": 1}, FormatOptions())[0]
    fast_result = parse_conversation(plain.data, MAX_CHARS)
    slow_result = parse_conversation(slow.data, MAX_CHARS)
    assert fast_result == slow_result or (isinstance(fast_result, list) and
                                          [p.code for p in fast_result] == [p.code for p in slow_result])


def test_empty_inputs_count_nothing():
    report = count_records([], ReadOptions())
    assert (report.rows, report.records, report.accepted, report.rejected, report.format) == (0, 0, 0, 0, None)
