"""`alpaca`: `{"instruction", "input"?, "output", "system"?, "history"?}` (Stanford Alpaca, LLaMA-Factory).

The user turn is `instruction`, then a blank line and `input` when `input` is not empty (the same
join as the benchmark corpus; LLaMA-Factory joins with one newline, Stanford Alpaca wraps both in
its own prompt text: the join is a choice, recorded here). `history` is a list of earlier
`[user, assistant]` pairs, placed before the last exchange. An empty `system` means none.
Dolly (`instruction`, `context`, `response`) is this format with `--column-map context=input,response=output`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sftdata.formats.base import Candidate, FormatOptions, id_field, require_text, row_id, system_message
from sftdata.reasons import Reason
from sftdata.records import Problem

NAME = "alpaca"
INPUT_JOIN = "\n\n"


def matches(row: Mapping[str, Any]) -> bool:
    """`instruction` and `output` present."""
    return "instruction" in row and "output" in row


def convert(row: Mapping[str, Any], options: FormatOptions) -> list[Candidate]:
    """One conversation per row."""
    problems: list[Problem] = []
    messages = system_message(row, problems)
    messages.extend(_history(row.get("history"), problems))
    instruction = require_text(row, "instruction", problems)
    extra = require_text(row, "input", problems, required=False)
    output = require_text(row, "output", problems)
    user = instruction + INPUT_JOIN + extra if instruction and extra else instruction or extra
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    rid = row_id(row)
    return [Candidate(None if problems else {"id": id_field(row), "messages": messages}, problems, rid)]


def _history(history: Any, problems: list[Problem]) -> list[dict[str, Any]]:
    if history is None:
        return []
    if not isinstance(history, list):
        problems.append(Problem(Reason.wrong_type, f"`history` must be a list of [user, assistant] pairs, got "
                                f"{type(history).__name__}", "history"))
        return []
    out: list[dict[str, Any]] = []
    for i, pair in enumerate(history):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(t, str) for t in pair)):
            problems.append(Problem(Reason.wrong_type, "each `history` item must be a [user, assistant] pair of "
                                    "texts", f"history[{i}]"))
            continue
        out += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    return out
