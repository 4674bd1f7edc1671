"""`sharegpt`: `{"conversations": [{"from", "value"}], "system"?, "tools"?}` (FastChat, LLaMA-Factory, glaive).

Speaker names map onto roles: human/user -> user; gpt/assistant/model/chatgpt/bard/bing -> assistant;
system -> system; observation/tool/function/ipython -> tool. A `function_call` turn (LLaMA-Factory,
glaive) holds a JSON object `{"name", "arguments"}` or a list of them and becomes an assistant message
with structured `tool_calls` and empty content, so that each template renders calls its own way; the
following `observation` becomes a `tool` message carrying the called function's `name` (when the
call was a single one). Turns may also use `role`/`content` keys. A `system` turn or column becomes a
leading system message. `tools` may be a list or a JSON string holding one (glaive stores a string).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sftdata.formats.base import (
    Candidate,
    FormatOptions,
    id_field,
    row_id,
    system_message,
    weight_to_train,
)
from sftdata.formats.messages import normalize_tool_call
from sftdata.reasons import Reason
from sftdata.records import Problem, flatten_content

NAME = "sharegpt"
SPEAKERS = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "model": "assistant", "chatgpt": "assistant", "bard": "assistant",
    "bing": "assistant",
    "system": "system",
    "observation": "tool", "tool": "tool", "function": "tool", "ipython": "tool",
    "function_call": "function_call",
}


def matches(row: Mapping[str, Any]) -> bool:
    """A `conversations` list (or a `messages` list of `from`/`value` turns)."""
    turns = _turns_field(row)[1]
    return isinstance(turns, list) and (not turns or (isinstance(turns[0], Mapping) and
                                                      ("from" in turns[0] or "value" in turns[0] or
                                                       "role" in turns[0])))


def _turns_field(row: Mapping[str, Any]) -> tuple[str, Any]:
    if "conversations" in row:
        return "conversations", row["conversations"]
    msgs = row.get("messages")
    if isinstance(msgs, list) and msgs and isinstance(msgs[0], Mapping) and "from" in msgs[0]:
        return "messages", msgs
    return "conversations", None


def convert(row: Mapping[str, Any], options: FormatOptions) -> list[Candidate]:
    """One conversation per row."""
    rid = row_id(row)
    key, turns = _turns_field(row)
    if turns is None:
        return [Candidate(None, [Problem(Reason.missing_field, "required field `conversations` is missing or null",
                                         key)], rid)]
    if not isinstance(turns, list):
        return [Candidate(None, [Problem(Reason.wrong_type, f"`{key}` must be a list of turns, got "
                                         f"{type(turns).__name__}", key)], rid)]
    problems: list[Problem] = []
    messages = system_message(row, problems)
    last_call_name: str | None = None
    for i, turn in enumerate(turns):
        where = f"{key}[{i}]"
        if not isinstance(turn, Mapping):
            problems.append(Problem(Reason.wrong_type, f"turn is a {type(turn).__name__}, expected an object with "
                                    "`from` and `value`", where))
            continue
        speaker = turn.get("from", turn.get("role"))
        value = turn.get("value", turn.get("content"))
        if speaker is None:
            problems.append(Problem(Reason.missing_field, "turn has no `from`", f"{where}.from"))
            continue
        role = SPEAKERS.get(speaker, speaker) if isinstance(speaker, str) else speaker
        if role == "function_call":
            calls = _parse_calls(value, f"{where}.value", problems)
            messages.append({"role": "assistant", "content": "", "tool_calls": calls})
            last_call_name = calls[0]["function"]["name"] if len(calls) == 1 and calls[0] else None
            continue
        text, reasoning, part_problems = flatten_content(value, f"{where}.value")
        problems.extend(part_problems)
        message: dict[str, Any] = {"role": role, "content": text}
        if reasoning is not None:
            message["reasoning"] = reasoning
        if role == "tool" and last_call_name:
            message["name"] = last_call_name
        for weight_key in ("loss_weight", "weight"):
            if weight_key in turn:
                train = weight_to_train(turn[weight_key], f"{where}.{weight_key}", problems)
                if train is not None:
                    message["train"] = train
        messages.append(message)
    data = {"id": id_field(row), "messages": messages, "tools": row.get("tools")}
    return [Candidate(None if problems else data, problems, rid)]


def _parse_calls(value: Any, where: str, problems: list[Problem]) -> list[dict[str, Any]]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            problems.append(Problem(Reason.bad_tool_arguments, f"function_call value is not valid JSON ({err.msg}); "
                                    'expected {"name": ..., "arguments": {...}}', where))
            return []
    calls = value if isinstance(value, list) else [value]
    return [normalize_tool_call(c, f"{where}[{i}]" if isinstance(value, list) else where, problems)
            for i, c in enumerate(calls)]
