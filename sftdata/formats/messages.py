"""`messages`: OpenAI-style chat rows, `{"messages": [{"role", "content", ...}], "tools": [...]}`.

Accepted per message: `content` as text or typed parts (LLaMA-Factory v1 `{"type", "value"}` parts
included), `tool_calls` (OpenAI shape, or flat `{"name", "arguments"}`), legacy `function_call`,
`tool_call_id`, `name`, reasoning as `reasoning` / `reasoning_content` / `thinking` / reasoning parts, and
`train` or `loss_weight` / `weight` (0/1). A leading `<think>` block stays in the content as written. A
top-level `system` field (as the other formats read it) becomes a leading system message. Unknown per-message keys
(e.g. `lang`) are ignored; unknown roles are kept so that the record is rejected as `unknown_role`.

Speed: rows whose messages are plain `{"role", "content": str}` pairs (the common case, and the whole
benchmark corpus) skip normalisation and go to the model as they are: this adapter then costs
~1 us per message against ~10 us for pydantic's own validation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sftdata.formats.base import Candidate, FormatOptions, id_field, row_id, system_message, weight_to_train
from sftdata.reasons import Reason
from sftdata.records import Problem, flatten_content

NAME = "messages"
ROLES = frozenset({"system", "user", "assistant", "tool"})
ROLE_ALIASES = {"human": "user", "gpt": "assistant", "model": "assistant", "function": "tool", "ipython": "tool",
                "developer": "system"}
REASONING_KEYS = ("reasoning", "reasoning_content", "thinking")
TOOL_CALL_PART_TYPES = frozenset({"tool_call", "function_call"})
_PLAIN_KEYS = frozenset({"role", "content"})
_ROW_KEYS = frozenset({"id", "messages", "tools", "metadata"})


def matches(row: Mapping[str, Any]) -> bool:
    """A `messages` list whose first item has a `role`."""
    msgs = row.get("messages")
    return isinstance(msgs, list) and bool(msgs) and isinstance(msgs[0], Mapping) and "role" in msgs[0]


def convert(row: Mapping[str, Any], options: FormatOptions) -> list[Candidate]:
    """One conversation per row."""
    rid = row_id(row)
    msgs = row.get("messages")
    if msgs is None:
        return [Candidate(None, [Problem(Reason.missing_field, "required field `messages` is missing or null",
                                         "messages")], rid)]
    if not isinstance(msgs, list):
        return [Candidate(None, [Problem(Reason.wrong_type, f"`messages` must be a list, got {type(msgs).__name__}",
                                         "messages")], rid)]
    if _is_plain(row, msgs):
        return [Candidate(row if isinstance(row.get("id"), (str, type(None))) else {**row, "id": id_field(row)}, [],
                          rid)]
    problems: list[Problem] = []
    out = system_message(row, problems) + [normalize_message(m, f"messages[{i}]", problems)
                                           for i, m in enumerate(msgs)]
    data = {"id": id_field(row), "messages": out, "tools": row.get("tools")}
    if isinstance(row.get("metadata"), Mapping):
        data["metadata"] = row["metadata"]
    return [Candidate(None if problems else data, problems, rid)]


def _is_plain(row: Mapping[str, Any], msgs: list[Any]) -> bool:
    if not row.keys() <= _ROW_KEYS:
        return False
    for m in msgs:
        role = m.get("role") if type(m) is dict else None
        if type(role) is not str or role not in ROLES or not m.keys() <= _PLAIN_KEYS:
            return False
        content = m.get("content")
        if type(content) is not str:
            return False
    return True


def normalize_message(m: Any, where: str, problems: list[Problem]) -> dict[str, Any]:
    """One message of any supported shape -> a normal-form message dict (problems appended)."""
    if not isinstance(m, Mapping):
        problems.append(Problem(Reason.wrong_type, f"message is a {type(m).__name__}, expected an object with "
                                "`role` and `content`", where))
        return {}
    role = m.get("role")
    if role is None:
        problems.append(Problem(Reason.missing_field, "required field `role` is missing or null", f"{where}.role"))
    elif isinstance(role, str):
        role = ROLE_ALIASES.get(role, role)
    out: dict[str, Any] = {"role": role}
    content = m.get("content")
    calls: list[Any] = []
    if isinstance(content, list):
        calls = [p.get("value", p.get("text")) for p in content if _is_call_part(p)]
        if calls:
            content = [p for p in content if not _is_call_part(p)]
    text, reasoning, part_problems = flatten_content(content, f"{where}.content")
    problems.extend(part_problems)
    for key in REASONING_KEYS:
        value = m.get(key)
        if isinstance(value, str):
            reasoning = value if reasoning is None else reasoning + value
        elif value is not None:
            problems.append(Problem(Reason.wrong_type, f"`{key}` must be text, got {type(value).__name__}",
                                    f"{where}.{key}"))
    out["content"] = text
    if reasoning is not None:
        out["reasoning"] = reasoning
    raw_calls = m.get("tool_calls")
    if raw_calls is None and m.get("function_call") is not None:
        raw_calls = [m["function_call"]]
    if raw_calls is not None:
        if not isinstance(raw_calls, list):
            problems.append(Problem(Reason.wrong_type, f"`tool_calls` must be a list, got {type(raw_calls).__name__}",
                                    f"{where}.tool_calls"))
        else:
            calls = list(raw_calls) + calls
    if calls:
        out["tool_calls"] = [normalize_tool_call(c, f"{where}.tool_calls[{i}]", problems) for i, c in enumerate(calls)]
    for key in ("tool_call_id", "name"):
        if m.get(key) is not None:
            out[key] = m[key]
    if "train" in m and m["train"] is not None:
        out["train"] = m["train"]
    else:
        for key in ("loss_weight", "weight"):
            if key in m:
                train = weight_to_train(m[key], f"{where}.{key}", problems)
                if train is not None:
                    out["train"] = train
                break
    return out


def _is_call_part(part: Any) -> bool:
    return isinstance(part, Mapping) and isinstance(part.get("type"), str) and part["type"] in TOOL_CALL_PART_TYPES


def normalize_tool_call(call: Any, where: str, problems: list[Problem]) -> dict[str, Any]:
    """OpenAI `{"id", "type", "function": {"name", "arguments"}}`, flat `{"name", "arguments"}` or a JSON string
    holding either -> the OpenAI shape (arguments are parsed by the model; bad JSON is `bad_tool_arguments`)."""
    if isinstance(call, str):
        try:
            call = json.loads(call)
        except json.JSONDecodeError as err:
            problems.append(Problem(Reason.bad_tool_arguments, f"tool call is not valid JSON ({err.msg}); expected "
                                    '{"name": ..., "arguments": {...}}', where))
            return {}
    if not isinstance(call, Mapping):
        problems.append(Problem(Reason.bad_tool_arguments, f"tool call is a {type(call).__name__}, expected an object "
                                'with "name" and "arguments"', where))
        return {}
    fn = call.get("function") if isinstance(call.get("function"), Mapping) else call
    out: dict[str, Any] = {"type": "function", "function": {"name": fn.get("name"),
                                                            "arguments": fn.get("arguments", fn.get("parameters", {}))}}
    if call.get("id") is not None:
        out["id"] = str(call["id"])
    return out
