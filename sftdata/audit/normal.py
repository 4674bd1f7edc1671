"""The audit's own reading of a raw row: the conversations it holds, and every text it gives.

Written from the documented formats (README, `sftdata validate --help`), not from the writer's
adapters, so that an adapter bug shows up as a difference. For one raw row (after the recorded
column map) it gives:

- `records`: the conversations the row holds, as chat-template messages *as the user stored them*
  (content exactly as written, a leading `<think>` block included; reasoning fields kept), with the
  id the writer gives the document (`id` of the row, `SOURCE:ROW`, or `TREE:LEAF` for OASST paths);
- `leaves`: every text of the row that must reach the documents, each with its field path and its
  kind (`content`, `reasoning`, `system`, `tools`, `tool_calls`, `name`). Left out on purpose:
  metadata keys (`META_KEYS`: ids, roles, types, weights...), top-level columns the format does not
  read (`USED_COLUMNS`: what a column map leaves unused), OASST branches that `oasst_paths: top`
  does not take, deleted or rejected OASST messages, and unanswered prompts at the end of a path
  (a path ends on its last assistant reply).

Rules as documented: alpaca is `[history...] user(instruction + "\\n\\n" + input) assistant(output)`
with an optional `system` column; ShareGPT speakers map onto roles (`function_call` turns are
assistant tool calls, the following `observation` a tool result carrying the function name);
messages take `content` as text or parts (text parts joined, reasoning parts as reasoning),
`reasoning` / `reasoning_content` / `thinking`, `tool_calls` (OpenAI or flat) and a top-level
`system`; prompt/completion is `[system] user assistant` (or lists of messages); OASST gives one
conversation per root-to-leaf path ending on an assistant reply.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

META_KEYS = frozenset({
    "id", "role", "from", "type", "tool_call_id", "train", "loss_weight", "weight", "message_id", "message_tree_id",
    "parent_id", "user_id", "lang", "created_date", "rank", "review_result", "review_count", "deleted", "synthetic",
    "model_name", "emojis", "labels", "detoxify", "metadata", "tree_state", "required", "call_id", "index",
})
"""Keys whose values are identifiers or structure, never text a template must render."""

USED_COLUMNS = {
    "alpaca": ("system", "history", "instruction", "input", "output"),
    "sharegpt": ("system", "tools", "conversations", "messages"),
    "messages": ("system", "tools", "messages"),
    "prompt_completion": ("system", "prompt", "completion", "response"),
    "oasst": ("prompt",),
}
"""Top-level columns each format reads; any other column is left out by design."""

ROLE_ALIASES = {"human": "user", "gpt": "assistant", "model": "assistant", "function": "tool", "ipython": "tool",
                "developer": "system", "prompter": "user", "chatgpt": "assistant", "bard": "assistant",
                "bing": "assistant", "observation": "tool"}
REASONING_KEYS = ("reasoning", "reasoning_content", "thinking")
TEXT_PARTS = frozenset({"text", "input_text", "output_text"})
REASONING_PARTS = frozenset({"reasoning", "thinking", "think"})
CALL_PARTS = frozenset({"tool_call", "function_call"})


@dataclass(frozen=True, slots=True)
class Leaf:
    """One text of a raw row that must be in the row's documents."""

    path: str
    """Field path in the raw row, e.g. `messages[2].content`."""
    text: str
    kind: str
    """content | reasoning | system | tools | tool_calls | name."""
    turn: int | None = None
    """Message index of the assistant turn it belongs to (reasoning), else None."""


@dataclass(slots=True)
class SourceRecord:
    """One conversation of a raw row, ready to render."""

    doc_id: str
    source: str
    index: int
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    train: list[bool | None]


@dataclass(slots=True)
class RawRecord:
    """A raw row: its conversations, their size, and its texts.

    The texts (`leaves`) are read from the row when first asked for: only conservation needs them, and
    the main process leaves most rows' conservation to the conservation process (`audit.prelude`)."""

    source: str
    index: int
    records: list[SourceRecord] = field(default_factory=list)
    chars: int = 0
    """About how many characters the row's documents render from: what a worker holds for the row."""
    texts: list[Leaf] | None = None
    row: tuple[dict[str, Any], str] | None = None
    """The column-mapped row and its format, until `leaves` reads its texts."""

    @property
    def leaves(self) -> list[Leaf]:
        """Every text of the row that must reach its documents."""
        if self.texts is None:
            self.texts = _texts(*self.row, self.records) if self.row is not None else []
            self.row = None
        return self.texts


def apply_column_map(row: Mapping[str, Any], mapping: Mapping[str, str] | None) -> dict[str, Any]:
    """Rename top-level fields `{old: new}`; a field already named like a target is replaced by the renamed one."""
    if not mapping:
        return dict(row)
    targets = set(mapping.values())
    return {mapping.get(k, k): v for k, v in row.items() if k in mapping or k not in targets}


def row_id(row: Mapping[str, Any], source: str, index: int) -> str:
    value = row.get("id")
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{source}:{index}"


def read_row(row: dict[str, Any], fmt: str, source: str, index: int, oasst_top: bool = False) -> RawRecord:
    """The conversations and texts of one raw row (already column-mapped) in format `fmt`."""
    out = RawRecord(source, index)
    if fmt == "oasst":
        _oasst(row, source, index, oasst_top, out)
    else:
        messages, tools = _conversation(row, fmt)
        if messages is not None:
            out.records.append(SourceRecord(row_id(row, source, index), source, index,
                                            [{k: v for k, v in m.items() if k != "train"} for m in messages],
                                            tools, [m.get("train") for m in messages]))
        out.row = (row, fmt)
    out.chars = _size(out.records)
    return out


def _size(records: list[SourceRecord]) -> int:
    """Characters of the strings, tool calls and tools the records render from (cheap: a bound, not texts)."""
    size = 0
    for record in records:
        if record.tools:
            size += len(str(record.tools))
        for m in record.messages:
            for key, value in m.items():
                if isinstance(value, str):
                    size += len(value)
                elif key == "tool_calls":
                    size += len(str(value))
    return size


# -- texts --------------------------------------------------------------------------------------------
def _texts(row: dict[str, Any], fmt: str, records: list[SourceRecord]) -> list[Leaf]:
    """The texts of a row in a conversation format (OASST rows list theirs while walking their paths)."""
    leaves: list[Leaf] = []
    for key in USED_COLUMNS.get(fmt, ()):
        if key in row:
            leaves.extend(_leaves(row[key], key, _kind_of(key), None))
    return _mark_turns(row, fmt, records, leaves)


def _kind_of(key: str) -> str:
    return {"system": "system", "tools": "tools"}.get(key, "content")


def _leaves(value: Any, path: str, kind: str, role: str | None) -> Iterator[Leaf]:
    """String leaves under `value`, metadata keys left out; tool-call arguments parsed as JSON."""
    if isinstance(value, str):
        if kind == "tools" and path == "tools" and value.strip()[:1] == "[":
            try:
                yield from _leaves(json.loads(value), path, kind, role)
                return
            except ValueError:
                pass
        yield from _split_think(value, path, kind, role)
    elif isinstance(value, Mapping):
        here_role = value.get("role", value.get("from"))
        here_role = ROLE_ALIASES.get(here_role, here_role) if isinstance(here_role, str) else role
        for key, item in value.items():
            if key in META_KEYS or item is None:
                continue
            sub = f"{path}.{key}"
            if key in ("tool_calls", "function_call"):
                yield from _leaves(item, sub, "tool_calls", here_role)
            elif key == "arguments" or (here_role == "function_call" and key == "value"):
                yield from _arguments(item, sub)
            elif key == "name":
                yield from _leaves(item, sub, "tool_calls" if kind == "tool_calls" else kind if kind == "tools"
                                   else "name", here_role)
            elif key in REASONING_KEYS:
                yield from _leaves(item, sub, "reasoning", here_role)
            elif here_role == "system" and key in ("content", "value"):
                yield from _leaves(item, sub, "system", here_role)
            else:
                yield from _leaves(item, sub, kind, here_role)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, Mapping) and item.get("type") in REASONING_PARTS:
                yield from _leaves({k: v for k, v in item.items() if k != "type"}, f"{path}[{i}]", "reasoning", role)
            else:
                yield from _leaves(item, f"{path}[{i}]", kind, role)


def _arguments(value: Any, path: str) -> Iterator[Leaf]:
    """Tool-call arguments compare as JSON values: a JSON string is parsed; the strings inside are texts."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            yield Leaf(path, value, "tool_calls")
            return
        if isinstance(value, str):
            yield Leaf(path, value, "tool_calls")
            return
    for leaf in _leaves(value, path, "tool_calls", None):
        yield Leaf(leaf.path, leaf.text, "tool_calls")


def _split_think(text: str, path: str, kind: str, role: str | None) -> Iterator[Leaf]:
    """A reply's leading `<think>...</think>` is two texts: the thought and the reply (the tags are markup)."""
    stripped = text.lstrip()
    if role == "assistant" and kind == "content" and stripped.startswith("<think>") and "</think>" in stripped:
        end = stripped.index("</think>")
        yield Leaf(path + "<think>", stripped[len("<think>"):end], "reasoning")
        yield Leaf(path, stripped[end + len("</think>"):], kind)
        return
    yield Leaf(path, text, kind)


def _mark_turns(row: dict[str, Any], fmt: str, records: list[SourceRecord], leaves: list[Leaf]) -> list[Leaf]:
    """Attach the message index of the record to each reasoning leaf (for `masking: last` drops)."""
    if not records or not any(leaf.kind == "reasoning" for leaf in leaves):
        return leaves
    messages = records[0].messages
    offset = 1 if messages and messages[0].get("role") == "system" and row.get("system") else 0
    marked = []
    for leaf in leaves:
        if leaf.kind == "reasoning" and leaf.turn is None:
            head = leaf.path.split(".")[0]
            if "[" in head:
                try:
                    k = int(head[head.index("[") + 1:head.index("]")]) + offset
                except ValueError:
                    k = None
                leaf = Leaf(leaf.path, leaf.text, leaf.kind, k)
            elif fmt in ("alpaca", "prompt_completion"):
                leaf = Leaf(leaf.path, leaf.text, leaf.kind, len(messages) - 1)
        marked.append(leaf)
    return marked


# -- conversations ------------------------------------------------------------------------------------
def _system(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    value = row.get("system")
    return [{"role": "system", "content": value}] if isinstance(value, str) and value else []


def _tools(value: Any) -> list[dict[str, Any]] | None:
    if isinstance(value, str):
        if not value.strip():
            return None
        value = json.loads(value)
    if not value:
        return None
    return [{"type": "function", "function": t} if "name" in t and "function" not in t else t for t in value]


def _conversation(row: dict[str, Any], fmt: str) -> tuple[list[dict[str, Any]] | None, Any]:
    try:
        if fmt == "alpaca":
            messages = _system(row)
            for user, reply in row.get("history") or []:
                messages += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
            instruction, extra = row.get("instruction") or "", row.get("input") or ""
            user = instruction + "\n\n" + extra if instruction and extra else instruction or extra
            return messages + [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}], None
        if fmt == "prompt_completion":
            messages = _system(row)
            for key, role in (("prompt", "user"), (next((k for k in ("completion", "response") if k in row),
                                                         "completion"), "assistant")):
                value = row[key]
                messages += ([{"role": role, "content": value}] if isinstance(value, str)
                             else [_message(m) for m in value])
            return messages, None
        if fmt == "sharegpt":
            return _sharegpt(row), _tools(row.get("tools"))
        if fmt == "messages":
            return _system(row) + [_message(m) for m in row["messages"]], _tools(row.get("tools"))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None, None
    return None, None


def _message(m: Mapping[str, Any]) -> dict[str, Any]:
    role = m.get("role")
    role = ROLE_ALIASES.get(role, role)
    content = m.get("content")
    calls: list[Any] = []
    reasoning = None
    if isinstance(content, list):
        texts, thoughts = [], []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
                continue
            kind = part.get("type", "text")
            text = next((part[k] for k in ("text", "value", "content") if part.get(k) is not None), None)
            if kind in CALL_PARTS:
                calls.append(part.get("value", part.get("text")))
            elif kind in TEXT_PARTS:
                texts.append(text)
            elif kind in REASONING_PARTS:
                thoughts.append(text)
        content = "".join(texts)
        reasoning = "".join(thoughts) if thoughts else None
    out: dict[str, Any] = {"role": role, "content": content if content is not None else ""}
    for key in REASONING_KEYS:
        if isinstance(m.get(key), str):
            reasoning = m[key] if reasoning is None else reasoning + m[key]
    if reasoning is not None:
        out["reasoning"] = reasoning
    raw_calls = m.get("tool_calls")
    if raw_calls is None and m.get("function_call") is not None:
        raw_calls = [m["function_call"]]
    calls = list(raw_calls or []) + calls
    if calls:
        out["tool_calls"] = [_tool_call(c) for c in calls]
    for key in ("tool_call_id", "name"):
        if m.get(key) is not None:
            out[key] = m[key]
    train = m.get("train")
    if train is None:
        weight = m.get("loss_weight", m.get("weight"))
        train = bool(weight) if weight in (0, 1) and not isinstance(weight, bool) else None
    out["train"] = train
    return out


def _tool_call(call: Any) -> dict[str, Any]:
    if isinstance(call, str):
        call = json.loads(call)
    fn = call.get("function") if isinstance(call.get("function"), Mapping) else call
    arguments = fn.get("arguments", fn.get("parameters", {}))
    if isinstance(arguments, str):
        arguments = json.loads(arguments) if arguments.strip() else {}
    out: dict[str, Any] = {"type": "function", "function": {"name": fn.get("name"), "arguments": arguments}}
    if call.get("id") is not None:
        out = {"id": str(call["id"]), **out}
    return out


def _sharegpt(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    turns = row["conversations"] if "conversations" in row else row["messages"]
    messages = _system(row)
    last_call: str | None = None
    for turn in turns:
        speaker = turn.get("from", turn.get("role"))
        value = turn.get("value", turn.get("content"))
        if speaker == "function_call":
            value = json.loads(value) if isinstance(value, str) else value
            calls = [_tool_call(c) for c in (value if isinstance(value, list) else [value])]
            messages.append({"role": "assistant", "content": "", "tool_calls": calls, "train": None})
            last_call = calls[0]["function"]["name"] if len(calls) == 1 else None
            continue
        message = _message({"role": speaker, "content": value, **{k: turn[k] for k in ("loss_weight", "weight")
                                                                  if k in turn}})
        if message["role"] == "tool" and last_call:
            message["name"] = last_call
        messages.append(message)
    return messages


# -- OASST trees ----------------------------------------------------------------------------------------
def _oasst(row: dict[str, Any], source: str, index: int, top: bool, out: RawRecord) -> None:
    texts: list[Leaf] = []
    out.texts = texts
    root = row.get("prompt") if "prompt" in row else row
    if not isinstance(root, Mapping):
        return
    tree = row.get("message_tree_id") or root.get("message_id")
    where = "prompt" if "prompt" in row else "(row)"
    seen: set[int] = set()
    for path in _paths(root, [], where, top):
        while path and path[-1][1].get("role") != "assistant":  # an unanswered prompt is no conversation
            path = path[:-1]
        if not path:
            continue
        texts.extend(Leaf(f"{w}.text", n["text"], "content") for w, n in path
                     if id(n) not in seen and isinstance(n.get("text"), str))
        seen.update(id(n) for _, n in path)
        leaf_id = path[-1][1].get("message_id")
        doc_id = ":".join(str(x) for x in (tree, leaf_id) if x is not None) or f"{source}:{index}"
        if any(r.doc_id == doc_id for r in out.records):
            continue
        messages = [{"role": ROLE_ALIASES.get(n["role"], n["role"]), "content": n["text"]} for _, n in path]
        out.records.append(SourceRecord(doc_id, source, index, messages, None, [None] * len(messages)))


def _paths(node: Mapping[str, Any], prefix: list[tuple[str, Mapping[str, Any]]], where: str,
           top: bool) -> Iterator[list[tuple[str, Mapping[str, Any]]]]:
    here = [*prefix, (where, node)]
    replies = [(i, r) for i, r in enumerate(node.get("replies") or [])
               if isinstance(r, Mapping) and not r.get("deleted") and r.get("review_result") is not False]
    if top and replies:
        def rank(item: tuple[int, Mapping[str, Any]]) -> tuple[bool, float, int]:
            value = item[1].get("rank")
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            return (not ok, value if ok else 0, item[0])

        replies = [min(replies, key=rank)]
    if not replies:
        yield here
        return
    for i, child in replies:
        yield from _paths(child, here, f"{where}.replies[{i}]", top)
