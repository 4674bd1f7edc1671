"""Conservation: every text the user gave must be in the rendered document (the engine's own check).

A correct mask over the wrong text is still wrong, and templates drop text quietly: Qwen2.5 and Llama
have no reasoning slot, Gemma no tools, Mistral v0.3 prints the system prompt only before a final user
turn, Llama 3.1 drops assistant text beside a tool call, and almost no template prints a `name`. The
engine checks each record's texts against its render and rejects with a code naming what the template
drops (`template_drops_*`), unless an option explains the drop (`--allow-drop KIND`, counted).

What is checked, per record (`record_texts`): system content (`system`); user, tool and assistant
content, an assistant reply without its leading think block (`content`); each `name` not already
printed as a tool call's name (`name`); each tool call's function name, argument keys and argument
values (`tool_calls`); every string value and parameter name of the `tools` definitions except the
values of `type` (schema keywords such as `function` / `object`, not text the user wrote) (`tools`).
Reasoning is checked by the engine per document, because where it must appear depends on which
document supervises the turn (`ID#K` splits).

Comparison (`Haystack.has`): a plain `in` first (C speed; almost every text passes here). Only when
it fails are both sides normalised: Unicode NFC and runs of whitespace collapsed to one space (the
render's normal form is computed once per document, lazily); then the forms a template may print a
text in are tried: JSON-escaped (`tojson`, DeepSeek's string arguments) and Python `repr` (templates
that print a dict). Tool-call arguments are compared as parsed JSON values: keys and string leaves as
text, other scalars as their JSON or Python text (`1`, `true`, `True`), whether the record gave them as
an object or as a JSON string (records parse them once). A text that occurs elsewhere in the render
(the same sentence in two turns) passes: the check is about loss, not about position.

Cost: on the 20k-row bench corpus (plain chats) the check is one `in` per message, about 1% of
`prepare` (see notes/issue-10.md for the measured ratio).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sftdata.records import Conversation, Role, split_think

_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """NFC, whitespace runs collapsed to one space, ends stripped (the comparison's normal form)."""
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    return _SPACE.sub(" ", text).strip()


def _forms(text: str) -> Iterator[str]:
    """Other exact forms a template may print a text in (tried only after the plain forms fail)."""
    escaped = json.dumps(text, ensure_ascii=False)[1:-1]
    if escaped != text:
        yield escaped
    ascii_escaped = json.dumps(text)[1:-1]
    if ascii_escaped not in (escaped, text):
        yield ascii_escaped
    quoted = repr(text)[1:-1]
    if quoted not in (escaped, text):
        yield quoted


class Haystack:
    """One rendered document, searched for texts; normalised only when a plain `in` fails."""

    __slots__ = ("_norm", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._norm: str | None = None

    def has(self, needle: str) -> bool:
        """Whether `needle` (as written, normalised, or JSON / repr escaped) occurs in the document."""
        if needle in self.text:
            return True
        want = normalise(needle)
        if not want:
            return True
        if self._norm is None:
            self._norm = normalise(self.text)
        if want in self._norm:
            return True
        return any(form in self.text or normalise(form) in self._norm for form in _forms(needle))


@dataclass(frozen=True, slots=True)
class Text:
    """One text of a record that must reach the document."""

    kind: str
    """`system`, `content`, `name`, `tool_calls` or `tools` (a `DropKind`)."""
    text: str
    path: str
    """Where in the record, e.g. `messages[2].content`."""


def _scalar_forms(value: Any) -> list[str]:
    if isinstance(value, bool):
        return ["true" if value else "false", str(value)]
    if value is None:
        return ["null", "None"]
    return [json.dumps(value), str(value)]


def _json_texts(value: Any, kind: str, path: str, keys: bool) -> Iterator[Text | tuple[str, list[str], str]]:
    """Texts of a JSON value: strings as `Text`, other scalars as (kind, alternatives, path)."""
    if isinstance(value, str):
        if value.strip():
            yield Text(kind, value, path)
    elif isinstance(value, dict):
        for k, v in value.items():
            if keys and isinstance(k, str) and k.strip():
                yield Text(kind, k, f"{path}.{k}")
            yield from _json_texts(v, kind, f"{path}.{k}", keys)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _json_texts(v, kind, f"{path}[{i}]", keys)
    else:
        yield (kind, _scalar_forms(value), path)


def _tool_texts(tools: list[dict[str, Any]]) -> Iterator[Text]:
    """String values of the tool definitions, and parameter names (keys under `properties`)."""

    def walk(value: Any, path: str) -> Iterator[Text]:
        if isinstance(value, str):
            if value.strip():
                yield Text("tools", value, path)
        elif isinstance(value, dict):
            for k, v in value.items():
                if k == "type":  # a schema keyword (`function`, `object`, `string`), not text the user wrote
                    continue
                if k == "properties" and isinstance(v, dict):
                    for name in v:
                        if isinstance(name, str) and name.strip():
                            yield Text("tools", name, f"{path}.properties.{name}")
                yield from walk(v, f"{path}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                yield from walk(v, f"{path}[{i}]")

    yield from walk(tools, "tools")


def record_texts(conv: Conversation) -> Iterator[Text | tuple[str, list[str], str]]:
    """Every text of a record except reasoning, in record order (see the module docstring)."""
    call_names: set[str] = set()
    for i, m in enumerate(conv.messages):
        where = f"messages[{i}]"
        content = m.content
        if m.role is Role.assistant and "<think>" in content:
            content = split_think(content)[0]
        if content.strip():
            yield Text("system" if m.role is Role.system else "content", content, f"{where}.content")
        if m.name and not (m.role is Role.tool and m.name in call_names):
            yield Text("name", m.name, f"{where}.name")
        for j, call in enumerate(m.tool_calls or ()):
            call_names.add(call.function.name)
            yield Text("tool_calls", call.function.name, f"{where}.tool_calls[{j}].function.name")
            yield from _json_texts(call.function.arguments, "tool_calls", f"{where}.tool_calls[{j}].function.arguments",
                                   keys=True)
    if conv.tools:
        yield from _tool_texts(conv.tools)


def missing_texts(conv: Conversation, doc: Haystack) -> list[Text]:
    """The record's texts (reasoning aside) that `doc` lacks; [] when everything is there.

    Plain messages (no name, no tool calls) take a fast path: one `in` per content, and a `Text` (with its
    path string) is only built for a text that fails it; the general walk (`record_texts`) runs only for
    records with names, tool calls or tool definitions.
    """
    text = doc.text
    missing: list[Text] = []
    general = conv.tools is not None
    for i, m in enumerate(conv.messages):
        if m.name is not None or m.tool_calls:
            general = True
            break
        content = m.content
        if content in text:
            continue
        if m.role is Role.assistant and "<think>" in content:
            content = split_think(content)[0]
        if content.strip() and not doc.has(content):
            missing.append(Text("system" if m.role is Role.system else "content", content, f"messages[{i}].content"))
    if not general:
        return missing
    missing = []
    for item in record_texts(conv):
        if isinstance(item, Text):
            if not doc.has(item.text):
                missing.append(item)
        else:
            kind, forms, path = item
            if not any(f in text for f in forms):
                missing.append(Text(kind, forms[0], path))
    return missing
