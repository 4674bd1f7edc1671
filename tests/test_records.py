"""The normal form: every rule of `parse_conversation` is a named reason, and valid records round-trip."""

from __future__ import annotations

import json

import pytest

from sftdata.reasons import Reason
from sftdata.records import Conversation, Message, Problem, Record, Role, flatten_content, parse_conversation


def conv(*messages: dict, **extra) -> dict:
    return {"messages": list(messages), **extra}


def u(text="hi"):
    return {"role": "user", "content": text}


def a(text="hello", **kw):
    return {"role": "assistant", "content": text, **kw}


def codes(result) -> set[Reason]:
    assert isinstance(result, list), f"expected problems, got {result!r}"
    return {p.code for p in result}


def test_valid_conversation_round_trips_unchanged():
    data = conv({"role": "system", "content": ""}, u("你好 🙂"), a("  spaced reply\n"), id="x1")
    result = parse_conversation(data)
    assert isinstance(result, Conversation)
    assert result.messages[2].content == "  spaced reply\n"
    assert result.messages[0].role is Role.system and result.messages[0].content == ""
    again = Conversation.model_validate_json(result.model_dump_json())
    assert again == result


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (conv(u(), {"role": "narrator", "content": "x"}, a()), Reason.unknown_role),
        (conv(u(), a("   \n")), Reason.empty_reply),
        (conv(u(), a(None)), Reason.empty_reply),
        (conv(u()), Reason.no_assistant_turn),
        (conv(u(), a(train=False)), Reason.no_assistant_turn),
        (conv(u(), a(), {"role": "system", "content": "late"}), Reason.system_not_first),
        (conv(u(), {"role": "tool", "content": "42"}, a()), Reason.tool_result_without_call),
        (conv(u(), a("", tool_calls=[{"function": {"name": "f", "arguments": "{not json"}}])),
         Reason.bad_tool_arguments),
        (conv(u(), a("", tool_calls=[{"function": {"name": "f", "arguments": "[1, 2]"}}])), Reason.bad_tool_arguments),
        (conv(u("a\x00b"), a()), Reason.nul_byte),
        (conv(u("broken \ud800 text"), a()), Reason.lone_surrogate),
        (conv(u(), a(42)), Reason.wrong_type),
        (conv({"content": "no role"}, a()), Reason.missing_field),
        ({"id": "no-messages"}, Reason.missing_field),
        (conv(), Reason.empty_conversation),
        (conv(u("   "), a()), Reason.empty_message),
        (conv(u(), a(), tools="{oops"), Reason.bad_tools),
        (conv(u(), a(train="yes")), Reason.wrong_type),
    ],
)
def test_each_rule_has_a_reason(data, reason):
    assert reason in codes(parse_conversation(data))


def test_oversize_field_names_the_limit():
    problems = parse_conversation(conv(u("x" * 101), a()), max_chars=100)
    assert [p.code for p in problems] == [Reason.oversize_field]
    assert "101" in problems[0].message and "100" in problems[0].message
    assert problems[0].path == "messages[0].content"


def test_every_problem_is_reported_at_once():
    problems = parse_conversation(conv(u("a\x00"), {"role": "system", "content": "late"}, a("  ")))
    assert codes(problems) == {Reason.nul_byte, Reason.system_not_first, Reason.empty_reply}


def test_empty_system_message_is_legal():
    assert isinstance(parse_conversation(conv({"role": "system", "content": ""}, u(), a())), Conversation)


def test_tool_calls_parse_json_string_arguments():
    call = {"id": "c1", "function": {"name": "f", "arguments": '{"x": 1}'}}
    c = parse_conversation(conv(u(), a("", tool_calls=[call]),
                                {"role": "tool", "content": "2", "tool_call_id": "c1"}, a("done")))
    assert isinstance(c, Conversation)
    assert c.messages[1].tool_calls[0].function.arguments == {"x": 1}


def test_bare_tool_schemas_get_the_openai_wrapping():
    c = parse_conversation(conv(u(), a(), tools=json.dumps([{"name": "f", "parameters": {}}])))
    assert c.tools == [{"type": "function", "function": {"name": "f", "parameters": {}}}]


def test_template_messages_drop_none_and_train():
    c = parse_conversation(conv(u(), a(train=True)))
    assert c.to_template_messages() == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


def test_flatten_content_rule():
    parts = [{"type": "reasoning", "value": "think "}, {"type": "text", "text": "a"}, "b",
             {"type": "text", "value": "c"}]
    assert flatten_content(parts, "p") == ("abc", "think ", [])
    text, _, problems = flatten_content([{"type": "image_url", "image_url": "x"}], "p")
    assert text == "" and problems[0].code is Reason.bad_content_part and problems[0].path == "p[0]"
    assert flatten_content(None, "p") == ("", None, [])


def test_record_doc_id_falls_back_to_source_and_row():
    c = Conversation(messages=[Message(role=Role.user, content="q"), Message(role=Role.assistant, content="r")])
    assert Record("data.jsonl", 7, c).doc_id == "data.jsonl:7"
    assert Record("data.jsonl", 7, c.model_copy(update={"id": "abc"})).doc_id == "abc"


def test_problem_json_shape():
    assert Problem(Reason.nul_byte, "m", "p").to_json() == {"code": "nul_byte", "message": "m", "path": "p"}


def test_template_messages_are_the_pydantic_dump_for_every_combination_of_fields():
    """The direct build of a message without tool calls equals `model_dump(exclude_none, exclude train,
    mode=json)` (values and key order), for every combination of the optional fields; with tool calls the dump
    itself is used."""
    import itertools


    optional = {"reasoning": "think", "tool_call_id": "call_1", "name": "get_weather", "train": False}
    calls = [{"type": "function", "function": {"name": "f", "arguments": {"x": 1}}}]
    for role in ("system", "user", "assistant", "tool"):
        for picked in itertools.product([False, True], repeat=len(optional) + 1):
            fields = {k: v for (k, v), on in zip(optional.items(), picked, strict=False) if on}
            if picked[-1]:
                fields["tool_calls"] = calls
            m = Message.model_validate({"role": role, "content": "text é", **fields})
            conv = Conversation(messages=[m])
            want = m.model_dump(exclude_none=True, exclude={"train"}, mode="json")
            got = conv.to_template_messages()[0]
            assert got == want and list(got) == list(want), (role, fields)
