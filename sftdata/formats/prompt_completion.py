"""`prompt_completion`: `{"prompt", "completion"}` or `{"prompt", "response"}`, as texts or message lists.

Texts become one user and one assistant message (TRL would concatenate them without a template; here
the chat template is always applied, because the same ids are what the model sees at inference).
Conversational lists (TRL's conversational prompt-completion) are normalised message by message
with the `messages` rules and joined: prompt messages, then completion messages. A text completion
after a list prompt is one assistant message. An empty `system` column means none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sftdata.formats.base import Candidate, FormatOptions, id_field, row_id, system_message
from sftdata.formats.messages import normalize_message
from sftdata.reasons import Reason
from sftdata.records import Problem

NAME = "prompt_completion"
COMPLETION_KEYS = ("completion", "response")


def matches(row: Mapping[str, Any]) -> bool:
    """`prompt` with `completion` or `response`."""
    return "prompt" in row and any(k in row for k in COMPLETION_KEYS)


def convert(row: Mapping[str, Any], options: FormatOptions) -> list[Candidate]:
    """One conversation per row."""
    problems: list[Problem] = []
    messages = system_message(row, problems)
    messages += _side(row, "prompt", "user", problems)
    key = next((k for k in COMPLETION_KEYS if k in row), "completion")
    messages += _side(row, key, "assistant", problems)
    rid = row_id(row)
    return [Candidate(None if problems else {"id": id_field(row), "messages": messages}, problems, rid)]


def _side(row: Mapping[str, Any], key: str, role: str, problems: list[Problem]) -> list[dict[str, Any]]:
    value = row.get(key)
    if value is None:
        problems.append(Problem(Reason.missing_field, f"required field `{key}` is missing or null", key))
        return []
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list):
        return [normalize_message(m, f"{key}[{i}]", problems) for i, m in enumerate(value)]
    problems.append(Problem(Reason.wrong_type, f"`{key}` must be text or a list of messages, got "
                            f"{type(value).__name__}", key))
    return []
