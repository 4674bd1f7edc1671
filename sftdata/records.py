"""The one normal form: every input format becomes a `Conversation` before anything else.

Format adapters (`sftdata.formats`) map their fields onto plain dicts of this shape and do nothing
more; `parse_conversation` turns such a dict into a validated `Conversation` or into the complete
list of `Problem`s, each with a `Reason` code. A bad record is data, not an exception.

Content parts (OpenAI / LLaMA-Factory style `[{"type": "text", "text": ...}, ...]`) are flattened
by one documented rule, `flatten_content`: text parts are concatenated in order with no separator
(what chat templates that loop over parts render), reasoning/thinking parts become the message's
`reasoning`, and any other part type (image, audio, file) is a `bad_content_part` problem.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from sftdata.reasons import Reason

MAX_FIELD_CHARS = 1_000_000
"""Default limit for one text field (1 M characters, ~250 k tokens): larger is an `oversize_field`."""

TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text"})
REASONING_PART_TYPES = frozenset({"reasoning", "thinking", "think"})


class Role(StrEnum):
    """Who speaks. Formats map their own names (`human`, `gpt`, `model`, `prompter`...) onto these."""

    system = "system"
    user = "user"
    assistant = "assistant"
    tool = "tool"


class FunctionCall(BaseModel):
    """The function an assistant calls; `arguments` is always a parsed JSON object."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)

    @field_validator("arguments", mode="before")
    @classmethod
    def _parse_arguments(cls, value: Any) -> Any:
        """Accept a JSON string holding an object (OpenAI's wire form) as well as the object itself."""
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as err:
                raise PydanticCustomError(
                    Reason.bad_tool_arguments.value,
                    "tool-call arguments are not valid JSON ({error}); expected a JSON object",
                    {"error": str(err)},
                ) from None
        if not isinstance(value, dict):
            raise PydanticCustomError(
                Reason.bad_tool_arguments.value,
                "tool-call arguments must be a JSON object, got {kind}",
                {"kind": type(value).__name__},
            )
        return value


class ToolCall(BaseModel):
    """One tool call made by an assistant message (OpenAI shape)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(BaseModel):
    """One turn. `train` overrides the masking strategy for this message when set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Role
    content: str = ""
    reasoning: str | None = None
    """Think text of an assistant turn; rendered by templates that support it (e.g. Qwen3)."""
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None
    """Tool name on a tool result, or a speaker name where a template uses it."""
    train: bool | None = Field(default=None, strict=True)
    """True/False forces this message into/out of the loss; None follows the masking strategy."""

    @field_validator("content", mode="before")
    @classmethod
    def _null_content(cls, value: Any) -> Any:
        """OpenAI writes `content: null` on assistant tool-call messages: that is the empty string here."""
        return "" if value is None else value


class Conversation(BaseModel):
    """A validated record: what the mask engine renders and the trainer ultimately learns from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = None
    messages: list[Message]
    tools: list[dict[str, Any]] | None = None
    """JSON-schema tool definitions, passed to the template as `tools=`."""
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("tools", mode="before")
    @classmethod
    def _parse_tools(cls, value: Any) -> Any:
        """Accept a JSON string holding the list (LLaMA-Factory and ShareGPT store it that way)."""
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                value = json.loads(value)
            except json.JSONDecodeError as err:
                raise PydanticCustomError(
                    Reason.bad_tools.value, "`tools` is not valid JSON ({error})", {"error": str(err)}
                ) from None
        if value is not None and (not isinstance(value, list) or not all(isinstance(t, dict) for t in value)):
            raise PydanticCustomError(Reason.bad_tools.value, "`tools` must be a list of JSON-schema objects", {})
        if value:  # bare function schemas (glaive) -> the OpenAI wrapping every template understands
            value = [{"type": "function", "function": t} if "name" in t and "function" not in t else t for t in value]
        return value or None

    def to_template_messages(self) -> list[dict[str, Any]]:
        """Messages as the plain dicts chat templates expect (no None values, no `train`).

        The same dicts as `model_dump(exclude_none=True, exclude={"train"}, mode="json")`, keys in field order;
        built directly for a message without tool calls (a pydantic dump per message was ~10% of the engine's
        Python work per record).
        """
        return [_template_message(m) if m.tool_calls is None else
                m.model_dump(exclude_none=True, exclude={"train"}, mode="json") for m in self.messages]


def _template_message(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role.value, "content": m.content}
    for key in ("reasoning", "tool_call_id", "name"):
        value = getattr(m, key)
        if value is not None:
            out[key] = value
    return out


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a record cannot be used, with a message a person can act on."""

    code: Reason
    message: str
    path: str | None = None
    """Where in the record, e.g. `messages[2].content`."""

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code.value, "message": self.message, "path": self.path}


@dataclass(slots=True)
class Reject:
    """A record that was not written: where it came from, every problem, and the raw row."""

    source: str
    """The input as given on the command line (file path or dataset name)."""
    index: int
    """0-based row index in that input (line number - 1 for JSONL)."""
    problems: list[Problem]
    id: str | None = None
    raw: Any = None
    """The raw row, or the raw text where it was not valid JSON."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def codes(self) -> list[Reason]:
        return [p.code for p in self.problems]

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "index": self.index,
            "id": self.id,
            "reasons": [p.to_json() for p in self.problems],
            "raw": self.raw,
            **self.extra,
        }


def flatten_content(content: Any, path: str) -> tuple[str, str | None, list[Problem]]:
    """Apply the content-part rule: returns (text, reasoning or None, problems).

    A plain string is returned as is; None is the empty string. A list of parts gives its text parts
    concatenated with no separator and its reasoning parts concatenated as `reasoning`. The part's text
    is read from `text`, then `value` (LLaMA-Factory), then `content`.
    """
    if content is None:
        return "", None, []
    if isinstance(content, str):
        return content, None, []
    if not isinstance(content, list):
        return "", None, [Problem(Reason.wrong_type, f"content must be text or a list of parts, got "
                                  f"{type(content).__name__}", path)]
    texts: list[str] = []
    thoughts: list[str] = []
    problems: list[Problem] = []
    for i, part in enumerate(content):
        where = f"{path}[{i}]"
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, Mapping):
            problems.append(Problem(Reason.bad_content_part, f"content part is a {type(part).__name__}, "
                                    "expected an object with `type` and `text`", where))
            continue
        kind = part.get("type", "text")
        if not isinstance(kind, str):
            problems.append(Problem(Reason.bad_content_part, f"content part `type` must be text, got "
                                    f"{type(kind).__name__}", where))
            continue
        text = next((part[k] for k in ("text", "value", "content") if part.get(k) is not None), None)
        if kind in TEXT_PART_TYPES or kind in REASONING_PART_TYPES:
            if not isinstance(text, str):
                problems.append(Problem(Reason.bad_content_part, f"{kind!r} part has no text", where))
            else:
                (texts if kind in TEXT_PART_TYPES else thoughts).append(text)
        else:
            problems.append(Problem(Reason.bad_content_part, f"content part of type {kind!r} is not supported "
                                    "(only text and reasoning parts can be trained)", where))
    return "".join(texts), ("".join(thoughts) if thoughts else None), problems


THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def split_think(content: str) -> tuple[str, str | None]:
    """A leading `<think>...</think>` block of a reply, split off: (reply, reasoning or None).

    Qwen3's own split rule (reasoning stripped of newlines at both ends, the reply after `</think>` with
    leading newlines removed). Readers never apply it: content stays as written, and the engine uses it
    only to locate the thought, or to hand it to a template that renders reasoning itself.
    """
    if THINK_OPEN not in content:  # C-speed fast path: most replies hold no think block
        return content, None
    stripped = content.lstrip()
    if not stripped.startswith(THINK_OPEN):
        return content, None
    end = stripped.find(THINK_CLOSE)
    if end < 0:
        return content, None
    reasoning = stripped[len(THINK_OPEN):end].strip("\n")
    return stripped[end + len(THINK_CLOSE):].lstrip("\n"), reasoning


def thought_of(message: Message) -> str | None:
    """An assistant message's reasoning: its `reasoning` field, else a leading think block of its content."""
    if message.reasoning is not None:
        return message.reasoning
    if message.role is Role.assistant:
        return split_think(message.content)[1]
    return None


_PYDANTIC_TO_REASON = {
    "missing": Reason.missing_field,
    "enum": Reason.unknown_role,
    "extra_forbidden": Reason.wrong_type,
    "string_too_short": Reason.missing_field,
}


def _problems_from_validation_error(err: ValidationError) -> list[Problem]:
    problems = []
    for e in err.errors(include_url=False):
        path = _format_loc(e["loc"])
        kind = e["type"]
        code = Reason(kind) if kind in Reason.__members__ else _PYDANTIC_TO_REASON.get(kind, Reason.wrong_type)
        message = e["msg"]
        if code is Reason.unknown_role:
            message = f"unknown role {e.get('input')!r}; expected one of system, user, assistant, tool"
        elif code is Reason.missing_field:
            message = f"required field `{path}` is missing or empty"
        elif kind == "extra_forbidden":
            message = f"unexpected field `{path}`"
        elif code is Reason.wrong_type:
            message = f"`{path}`: {message[:1].lower()}{message[1:]}, got {type(e.get('input')).__name__}"
        problems.append(Problem(code, message, path))
    return problems


def _format_loc(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def check_text(text: str, path: str, max_chars: int = MAX_FIELD_CHARS) -> list[Problem]:
    """Hygiene rules for one string: NUL, lone surrogates, size."""
    problems = []
    if "\x00" in text:
        problems.append(Problem(Reason.nul_byte, "text contains a NUL character", path))
    if len(text) > max_chars:
        problems.append(Problem(Reason.oversize_field, f"text has {len(text):,} characters, more than the "
                                f"limit of {max_chars:,}", path))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        problems.append(Problem(Reason.lone_surrogate, "text contains an unpaired surrogate (broken Unicode)", path))
    return problems


def check_conversation(conv: Conversation, max_chars: int = MAX_FIELD_CHARS) -> list[Problem]:
    """The conversation rules (not types): every problem, in message order."""
    problems: list[Problem] = []
    if not conv.messages:
        return [Problem(Reason.empty_conversation, "the record has no messages", "messages")]
    seen_call = False
    trainable = False
    for i, m in enumerate(conv.messages):
        where = f"messages[{i}]"
        content, reasoning = m.content, m.reasoning
        # fast path: ASCII text within the limit cannot hold a surrogate; `in` and `len` are C-speed
        if "\x00" in content or len(content) > max_chars or not content.isascii():
            problems.extend(check_text(content, f"{where}.content", max_chars))
        if reasoning:
            problems.extend(check_text(reasoning, f"{where}.reasoning", max_chars))
        if m.role is Role.system and i > 0:
            problems.append(Problem(Reason.system_not_first, f"system message at index {i}; a system message "
                                    "may only come first", where))
        elif m.role is Role.assistant:
            if not m.content.strip() and not (m.reasoning or "").strip() and not m.tool_calls:
                problems.append(Problem(Reason.empty_reply, "assistant reply is empty or whitespace only",
                                        f"{where}.content"))
            elif m.train is not False:
                trainable = True
            seen_call = seen_call or bool(m.tool_calls)
        elif m.role is not Role.system and not m.content.strip():
            problems.append(Problem(Reason.empty_message, f"{m.role.value} message is empty or whitespace only",
                                    f"{where}.content"))
        if m.role is Role.tool and not seen_call:
            problems.append(Problem(Reason.tool_result_without_call, f"tool result at index {i} has no assistant "
                                    "tool call before it (a call written as prose is not a tool call)", where))
    if not trainable and not any(p.code is Reason.empty_reply for p in problems):
        problems.append(Problem(Reason.no_assistant_turn, "no assistant turn to learn from (none, or all marked "
                                "train=false)", "messages"))
    return problems


def parse_conversation(data: Mapping[str, Any], max_chars: int = MAX_FIELD_CHARS) -> Conversation | list[Problem]:
    """Validate a normal-form dict: a `Conversation`, or every problem found (types first, then rules)."""
    try:
        conv = Conversation.model_validate(data)
    except ValidationError as err:
        return _problems_from_validation_error(err)
    problems = check_conversation(conv, max_chars)
    return problems or conv


@dataclass(frozen=True, slots=True)
class Record:
    """A validated conversation with its source position (what flows from validation to encoding)."""

    source: str
    index: int
    conversation: Conversation

    @property
    def doc_id(self) -> str:
        """The record's own `id`, or `SOURCE:ROW` where it has none."""
        return self.conversation.id if self.conversation.id is not None else f"{self.source}:{self.index}"
