"""Formats: each real fixture dataset is detected and counted right; each mapping rule shown on a small row."""

from __future__ import annotations

import json
import re

import pytest
from conftest import DATASETS, SHARED, requires_shared

from sftdata.errors import ConfigError, InputError
from sftdata.formats import FormatOptions, apply_column_map, detect_format, parse_column_map, resolve_format
from sftdata.readers import RawRow, read_rows
from sftdata.reasons import Reason
from sftdata.records import Conversation, Record, Reject, Role
from sftdata.validate import to_records, validate_inputs

LF = DATASETS / "llama_factory"

# (file, column map, format, rows, accepted, {reason: count}) -- every reject is explained in notes/issue-2.md
FIXTURES = [
    ("llama_factory/alpaca_en_demo.json", None, "alpaca", 999, 999, {}),
    ("llama_factory/alpaca_zh_demo.json", None, "alpaca", 1000, 1000, {}),
    ("llama_factory/identity.json", None, "alpaca", 91, 91, {}),
    ("llama_factory/glaive_toolcall_en_demo.json", None, "sharegpt", 300, 300, {}),
    # rows 197 and 293 answer an `observation` that follows a call written as prose, not a function_call turn
    ("llama_factory/glaive_toolcall_zh_demo.json", None, "sharegpt", 300, 298, {"tool_result_without_call": 2}),
    ("llama_factory/v1_sft_demo.jsonl", None, "messages", 500, 500, {}),
    ("llama_factory/reason_tool_use_demo_50.jsonl", None, "messages", 50, 50, {}),
    ("fastchat/dummy_conversation.json", None, "sharegpt", 500, 500, {}),
    ("dolly/databricks-dolly-15k.sample.jsonl", ["context=input,response=output"], "alpaca", 7, 7, {}),
    ("axolotl_fixtures/conversation.json", None, "sharegpt", 1, 1, {}),
    ("axolotl_fixtures/alpaca_alpaca.json", None, "alpaca", 2, 2, {}),
]


def records(source, fmt="auto", column_map=None, **kw):
    items = list(to_records(read_rows(str(source)), fmt, column_map, **kw))
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Reject)]


def rows_of(*data: dict, source="mem") -> list[RawRow]:
    return [RawRow(source, i, d, d) for i, d in enumerate(data)]


def one(data: dict, fmt="auto", **kw) -> Conversation:
    (item,) = to_records(rows_of(data), fmt, **kw)
    assert isinstance(item, Record), item
    return item.conversation


@requires_shared
@pytest.mark.parametrize(("name", "cmap", "fmt", "rows", "accepted", "reasons"), FIXTURES, ids=[f[0] for f in FIXTURES])
def test_fixture_datasets(name, cmap, fmt, rows, accepted, reasons):
    report = validate_inputs([str(DATASETS / name)], column_map=cmap)
    assert (report.format, report.rows, report.accepted) == (fmt, rows, accepted)
    assert dict(report.reasons) == reasons
    assert report.rows == report.accepted + report.rejected


@requires_shared
def test_glaive_tool_calls_become_structured_calls_and_tool_messages():
    accepted, _ = records(LF / "glaive_toolcall_en_demo.json")
    raw = json.loads((LF / "glaive_toolcall_en_demo.json").read_text())
    calls = [m for r in accepted for m in r.conversation.messages if m.tool_calls]
    assert len(calls) == sum(t["from"] == "function_call" for r in raw for t in r["conversations"]) == 211
    first = next(r for r in accepted if any(m.tool_calls for m in r.conversation.messages)).conversation
    i = next(i for i, m in enumerate(first.messages) if m.tool_calls)
    call = first.messages[i].tool_calls[0].function
    assert call.name == "search_recipes" and call.arguments == {"ingredients": ["chicken", "bell peppers", "rice"]}
    assert first.messages[i].content == ""
    assert first.messages[i + 1].role is Role.tool and first.messages[i + 1].name == "search_recipes"
    assert json.loads(first.messages[i + 1].content)["recipes"][0]["name"] == "Chicken and Bell Pepper Stir Fry"
    assert first.tools[0]["type"] == "function" and first.tools[0]["function"]["name"] == "search_recipes"


@requires_shared
def test_v1_sft_demo_maps_loss_weight_to_train():
    accepted, _ = records(LF / "v1_sft_demo.jsonl")
    assert {(m.role, m.train) for r in accepted for m in r.conversation.messages} == {
        (Role.user, False), (Role.assistant, True)}
    assert accepted[0].conversation.messages[0].content == "hi"


@requires_shared
def test_reason_tool_use_keeps_reasoning_and_tool_calls():
    accepted, _ = records(LF / "reason_tool_use_demo_50.jsonl")
    assistants = [m for r in accepted for m in r.conversation.messages if m.role is Role.assistant]
    assert all(m.reasoning for m in assistants)
    assert sum(len(m.tool_calls or []) for m in assistants) == 68
    assert all("tool_call" not in m.content for m in assistants)


@requires_shared
def test_oasst_trees_give_every_path_and_top_paths():
    tree = DATASETS / "oasst" / "en_100_tree.jsonl"
    accepted, rejected = records(tree)
    assert not rejected and len(accepted) == 564  # 400 assistant leaves + 164 replies whose children are unanswered
    assert len({r.doc_id for r in accepted}) == 564
    assert all(r.conversation.messages[-1].role is Role.assistant for r in accepted)
    first = json.loads(tree.read_text().splitlines()[0])
    assert accepted[0].doc_id.startswith(first["message_tree_id"] + ":")
    top, _ = records(tree, oasst_paths="top")
    assert len(top) == 100 and len({r.index for r in top}) == 100
    assert top[0].conversation.messages[1].content == first["prompt"]["replies"][0]["text"]  # rank 0
    single, _ = records(DATASETS / "oasst" / "en_100_message.jsonl")
    assert len(single) == 564


@requires_shared
def test_seed_document_example_validates_and_round_trips():
    text = (SHARED / "seed" / "000_fdabca6020f221ee.txt").read_text(encoding="utf-8")
    prompt, response = re.search(r"<\|prompt\|>(.*?)<\|response\|>(.*?)<\|endoftext\|>", text).groups()
    row = {"prompt": prompt.strip(), "response": response.strip()}
    assert row == {"prompt": "马来西亚的首都在哪里?", "response": "马来西亚的首都是吉隆坡。"}
    conv = one(row)
    assert [(m.role, m.content) for m in conv.messages] == [(Role.user, row["prompt"]),
                                                            (Role.assistant, row["response"])]
    assert Conversation.model_validate_json(conv.model_dump_json()) == conv
    assert Conversation.model_validate(json.loads(conv.model_dump_json())) == conv


@requires_shared
def test_dolly_without_a_column_map_says_how_to_fix_it():
    with pytest.raises(InputError, match=r"cannot detect the format .* use --column-map context=input,response=output"):
        records(DATASETS / "dolly" / "databricks-dolly-15k.sample.jsonl")


def test_alpaca_rules():
    conv = one({"instruction": "Translate", "input": "chat", "output": "cat", "system": "Be brief.",
                "history": [["hi", "hello"]], "id": 7})
    assert conv.id == "7"
    assert [(m.role.value, m.content) for m in conv.messages] == [
        ("system", "Be brief."), ("user", "hi"), ("assistant", "hello"), ("user", "Translate\n\nchat"),
        ("assistant", "cat")]
    assert [m.role for m in one({"instruction": "q", "input": "", "output": "a", "system": ""}).messages] == [
        Role.user, Role.assistant]


def test_sharegpt_rules():
    conv = one({"conversations": [
        {"from": "system", "value": "sys"}, {"from": "human", "value": "weather?"},
        {"from": "function_call", "value": json.dumps([{"name": "a", "arguments": {"x": 1}},
                                                        {"name": "b", "arguments": "{\"y\": 2}"}])},
        {"from": "observation", "value": "[1, 2]"}, {"from": "gpt", "value": "<think>\nhmm\n</think>\n\nSunny."}]})
    assert [m.role.value for m in conv.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert [c.function.arguments for c in conv.messages[2].tool_calls] == [{"x": 1}, {"y": 2}]
    assert conv.messages[3].name is None  # two calls: the result's function is ambiguous
    # a leading think block stays in the reply as written (the engine decides per template)
    assert (conv.messages[4].content, conv.messages[4].reasoning) == ("<think>\nhmm\n</think>\n\nSunny.", None)


def test_messages_rules():
    conv = one({"messages": [
        {"role": "developer", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "loss_weight": 0},
        {"role": "assistant", "content": None, "reasoning_content": "think",
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"q\": 1}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        {"role": "assistant", "content": "<think>r</think>done", "weight": 1}]})
    m = conv.messages
    assert m[0].role is Role.system and m[1].content == "ab" and m[1].train is False
    assert m[2].reasoning == "think" and m[2].tool_calls[0].id == "c1"
    assert m[2].tool_calls[0].function.arguments == {"q": 1}
    assert (m[4].content, m[4].reasoning, m[4].train) == ("<think>r</think>done", None, True)


def test_prompt_completion_rules():
    conv = one({"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}],
                "completion": [{"role": "assistant", "content": "a"}]})
    assert [m.role.value for m in conv.messages] == ["system", "user", "assistant"]
    conv = one({"prompt": "q", "completion": " a"})
    assert conv.messages[1].content == " a"  # text is never stripped


@pytest.mark.parametrize(
    ("data", "fmt", "reason", "path"),
    [
        ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "loss_weight": 0.5}]},
         "messages", Reason.bad_loss_weight, "messages[1].loss_weight"),
        ({"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": "{not json"}]},
         "sharegpt", Reason.bad_tool_arguments, "conversations[1].value"),
        ({"conversations": "nope"}, "sharegpt", Reason.wrong_type, "conversations"),
        ({"instruction": "q"}, "alpaca", Reason.missing_field, "output"),
        ({"instruction": ["q"], "output": "a"}, "alpaca", Reason.wrong_type, "instruction"),
        ({"prompt": 3, "completion": "a"}, "prompt_completion", Reason.wrong_type, "prompt"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]},
                       {"role": "assistant", "content": "a"}]}, "messages", Reason.bad_content_part,
         "messages[0].content[0]"),
        ({"prompt": {"text": "q", "role": "prompter", "replies": []}}, "oasst", Reason.no_assistant_turn, "prompt"),
        ({"prompt": {"text": "q", "role": "bot", "replies": []}}, "oasst", Reason.unknown_role, "prompt.role"),
    ],
)
def test_adapter_problems_carry_reason_and_path(data, fmt, reason, path):
    (item,) = to_records(rows_of(data), fmt)
    assert isinstance(item, Reject)
    assert (item.problems[0].code, item.problems[0].path) == (reason, path)


def test_detection_takes_the_majority_and_reports_unknown_keys():
    rows = [{"instruction": "q", "output": "a"}] * 3 + [{"prompt": "q", "completion": "a"}]
    assert detect_format(rows) == "alpaca"
    assert detect_format([{"text": "x"}]) is None
    assert resolve_format("f", [], "auto") is None
    with pytest.raises(InputError, match=r"f: cannot detect the format .*keys seen: text.*pretraining data"):
        resolve_format("f", [{"text": "x"}])
    with pytest.raises(ConfigError, match="unknown format 'chatml'; expected one of auto, oasst, messages"):
        list(to_records([], "chatml"))


def test_detection_is_per_input_and_later_misfits_are_rejects():
    a = rows_of({"instruction": "q", "output": "a"}, {"instruction": "q2", "output": "a2"},
                {"messages": [{"role": "user", "content": "q"}]}, source="a")
    b = rows_of({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}, source="b")
    stream = to_records(a + b)
    items = list(stream)
    assert stream.formats == {"a": "alpaca", "b": "messages"}
    assert [type(i).__name__ for i in items] == ["Record", "Record", "Reject", "Record"]
    assert items[2].problems[0].code is Reason.missing_field


def test_column_map():
    assert parse_column_map(["context=input,response=output", "q = instruction"]) == {
        "context": "input", "response": "output", "q": "instruction"}
    assert apply_column_map({"context": "c", "input": "old", "x": 1}, {"context": "input"}) == {"input": "c", "x": 1}
    with pytest.raises(ConfigError, match="column map item 'context' is not OLD=NEW"):
        parse_column_map(["context"])
    with pytest.raises(ConfigError, match="sends two fields to 'input'"):
        parse_column_map(["a=input,b=input"])


def test_format_options_default():
    assert FormatOptions().oasst_paths == "all"


def test_arrow_style_rows_with_null_optional_fields():
    """Parquet / datasets give every struct field, null where absent: nulls mean 'not set'."""
    nulls = {"tool_calls": None, "tool_call_id": None, "name": None, "reasoning": None, "loss_weight": None}
    conv = one({"id": None, "tools": None, "messages": [{"role": "user", "content": "q", **nulls},
                                                        {"role": "assistant", "content": "a", **nulls}]})
    assert [(m.content, m.train, m.tool_calls, m.reasoning) for m in conv.messages] == [
        ("q", None, None, None), ("a", None, None, None)]


def test_oasst_bad_reply_rejects_only_its_paths():
    tree = {"message_tree_id": "t", "prompt": {"message_id": "p", "role": "prompter", "text": "q", "replies": [
        {"message_id": "a1", "role": "assistant", "text": "good", "rank": 1},
        {"message_id": "a2", "role": "robot", "text": "bad", "rank": 0}]}}
    items = list(to_records(rows_of(tree), "oasst"))
    assert [(type(i).__name__, i.conversation.id if isinstance(i, Record) else i.id) for i in items] == [
        ("Record", "t:a1"), ("Reject", "t:a2")]
    assert items[1].problems[0].path == "prompt.replies[1].role"
    (top,) = to_records(rows_of(tree), "oasst", oasst_paths="top")
    assert isinstance(top, Reject)  # the best-ranked reply is the malformed one: said, not skipped


def test_an_id_of_the_wrong_type_is_a_reject_not_a_lost_id():
    (item,) = to_records(rows_of({"id": ["x"], "instruction": "q", "output": "a"}))
    assert isinstance(item, Reject) and (item.problems[0].code, item.problems[0].path) == (Reason.wrong_type, "id")
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    assert one({"id": 12, "messages": msgs}).id == "12"
