"""`oasst`: OpenAssistant message trees (`{"message_tree_id", "prompt": {..., "replies": [...]}}`).

One conversation per root-to-leaf path, as in Open-Assistant's own SFT export: a path whose leaf is
an unanswered user message ends at the assistant reply before it, and paths that end at the same
reply are emitted once. With `oasst_paths="top"` only one path per tree is kept: from each node the
reply with the lowest `rank` (0 is best; unranked last, then file order). Messages marked `deleted`
or with `review_result: false` are dropped with their subtrees. A single message row
(`{"message_id", "role", "text", "replies"}`, the `*_message.jsonl` export) is read as a tree root.
Ids are `TREEID:LEAFID` (the last message kept). On the 100-tree fixture: 1,167 messages,
400 assistant leaves and 226 user leaves, giving the conversations counted in notes/issue-2.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from sftdata.formats.base import Candidate, FormatOptions
from sftdata.reasons import Reason
from sftdata.records import Problem

NAME = "oasst"
ROLES = {"prompter": "user", "assistant": "assistant", "user": "user"}
MAX_DEPTH = 200
"""Deeper trees are rejected as `too_deep` (the deepest real OASST tree is ~20 messages)."""


def matches(row: Mapping[str, Any]) -> bool:
    """A `prompt` node with `replies`, or a message row with `message_id`, `text` and `replies`."""
    prompt = row.get("prompt")
    if isinstance(prompt, Mapping) and "replies" in prompt:
        return True
    return {"message_id", "text", "replies"} <= row.keys()


def convert(row: Mapping[str, Any], options: FormatOptions) -> list[Candidate]:
    """One candidate per kept path (or one reject for a tree that cannot be walked)."""
    root = row.get("prompt") if "prompt" in row else row
    tree_id = row.get("message_tree_id") or (root.get("message_id") if isinstance(root, Mapping) else None)
    tree_id = str(tree_id) if tree_id is not None else None
    if not isinstance(root, Mapping):
        return [Candidate(None, [Problem(Reason.wrong_type, "`prompt` must be a message object with `replies`",
                                         "prompt")], tree_id)]
    problems: list[Problem] = []
    paths = list(_paths(root, [], "prompt", problems, options.oasst_paths == "top"))
    if problems:
        return [Candidate(None, problems, tree_id)]
    out: list[Candidate] = []
    seen: set[int] = set()
    for path in paths:
        while path and path[-1]["role"] != "assistant":
            path = path[:-1]
        if not path:
            continue
        if path[-1]["node"] in seen:  # identity of the node object: ids in the data may repeat
            continue
        seen.add(path[-1]["node"])
        cid = f"{tree_id}:{path[-1]['id']}"
        messages = [{"role": n["role"], "content": n["text"]} for n in path]
        data = {"id": cid, "messages": messages, "metadata": {"tree_id": tree_id}}
        out.append(Candidate(data, [], cid, raw=data))
    if not out:  # a prompt nobody answered: nothing to learn from, but never a silent drop
        return [Candidate(None, [Problem(Reason.no_assistant_turn, "the tree has no assistant reply", "prompt")],
                          tree_id)]
    return out


def _paths(node: Mapping[str, Any], prefix: list[dict[str, Any]], where: str, problems: list[Problem],
           top: bool) -> Iterator[list[dict[str, Any]]]:
    if len(prefix) >= MAX_DEPTH:
        problems.append(Problem(Reason.too_deep, f"tree deeper than {MAX_DEPTH} messages", where))
        return
    role = node.get("role")
    text = node.get("text")
    if not isinstance(role, str) or role not in ROLES:
        problems.append(Problem(Reason.unknown_role, f"unknown role {role!r}; expected prompter or assistant",
                                f"{where}.role"))
        return
    if not isinstance(text, str):
        problems.append(Problem(Reason.wrong_type if text is not None else Reason.missing_field,
                                "`text` must be text", f"{where}.text"))
        return
    here = [*prefix, {"role": ROLES[role], "content": text, "text": text, "id": node.get("message_id"),
                       "node": id(node)}]
    replies = node.get("replies") or []
    if not isinstance(replies, list):
        problems.append(Problem(Reason.wrong_type, "`replies` must be a list", f"{where}.replies"))
        return
    for i, r in enumerate(replies):
        if not isinstance(r, Mapping):
            problems.append(Problem(Reason.wrong_type, f"reply is a {type(r).__name__}, expected a message object",
                                    f"{where}.replies[{i}]"))
            return
    kept = [(i, r) for i, r in enumerate(replies) if not r.get("deleted") and r.get("review_result") is not False]
    if top and kept:
        kept = [min(kept, key=lambda ir: (ir[1].get("rank") is None, ir[1].get("rank") or 0, ir[0]))]
    if not kept:
        yield here
        return
    for i, child in kept:
        yield from _paths(child, here, f"{where}.replies[{i}]", problems, top)
