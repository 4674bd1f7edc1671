"""`oasst`: OpenAssistant message trees (`{"message_tree_id", "prompt": {..., "replies": [...]}}`).

One conversation per root-to-leaf path, as in Open-Assistant's own SFT export: a path whose leaf is
an unanswered user message ends at the assistant reply before it, and paths that end at the same
reply are emitted once. With `oasst_paths="top"` only one path per tree is kept: from each node the
reply with the lowest `rank` (0 is best; unranked last, then file order). Messages marked `deleted`
or with `review_result: false` are dropped with their subtrees. A single message row
(`{"message_id", "role", "text", "replies"}`, the `*_message.jsonl` export) is read as a tree root.
Ids are `TREEID:LEAFID` (the last message kept). On the 100-tree fixture: 1,167 messages,
400 assistant leaves and 226 unanswered user leaves: 400 + 164 = 564 conversations (`top`: 100).
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
    """One candidate per kept path; a path through a malformed message is a reject, the others survive."""
    root = row.get("prompt") if "prompt" in row else row
    tree_id = row.get("message_tree_id") or (root.get("message_id") if isinstance(root, Mapping) else None)
    tree_id = str(tree_id) if tree_id is not None else None
    if not isinstance(root, Mapping):
        return [Candidate(None, [Problem(Reason.wrong_type, "`prompt` must be a message object with `replies`",
                                         "prompt")], tree_id)]
    out: list[Candidate] = []
    seen: set[int] = set()
    for path in _paths(root, [], "prompt", options.oasst_paths == "top"):
        bad = path[-1].get("problem")
        while bad is None and path and path[-1]["role"] != "assistant":
            path = path[:-1]
        if not path or path[-1]["node"] in seen:  # node identity: ids in the data may repeat
            continue
        seen.add(path[-1]["node"])
        cid = ":".join(str(x) for x in (tree_id, path[-1]["id"]) if x is not None) or None
        if bad is not None:
            out.append(Candidate(None, [bad], cid))
            continue
        messages = [{"role": n["role"], "content": n["text"]} for n in path]
        data = {"id": cid, "messages": messages, "metadata": {"tree_id": tree_id}}
        out.append(Candidate(data, [], cid, raw=data))
    if not out:  # a prompt nobody answered: nothing to learn from, but never a silent drop
        return [Candidate(None, [Problem(Reason.no_assistant_turn, "the tree has no assistant reply", "prompt")],
                          tree_id)]
    return out


def _paths(node: Mapping[str, Any], prefix: list[dict[str, Any]], where: str,
           top: bool) -> Iterator[list[dict[str, Any]]]:
    """Root-to-leaf paths; a malformed node ends its path with a `{"problem": ...}` entry."""
    problem = _node_problem(node, where, len(prefix))
    if problem is not None:
        yield [*prefix, {"problem": problem, "node": id(node), "id": node.get("message_id")}]
        return
    here = [*prefix, {"role": ROLES[node["role"]], "text": node["text"], "id": node.get("message_id"),
                      "node": id(node)}]
    replies = node.get("replies") or []
    kept = [(i, r) for i, r in enumerate(replies) if not r.get("deleted") and r.get("review_result") is not False]
    if top and kept:
        kept = [min(kept, key=lambda ir: (_rank(ir[1]) is None, _rank(ir[1]) or 0, ir[0]))]
    if not kept:
        yield here
        return
    for i, child in kept:
        yield from _paths(child, here, f"{where}.replies[{i}]", top)


def _node_problem(node: Mapping[str, Any], where: str, depth: int) -> Problem | None:
    if depth >= MAX_DEPTH:
        return Problem(Reason.too_deep, f"tree deeper than {MAX_DEPTH} messages", where)
    role, text, replies = node.get("role"), node.get("text"), node.get("replies") or []
    if not isinstance(role, str) or role not in ROLES:
        return Problem(Reason.unknown_role, f"unknown role {role!r}; expected prompter or assistant", f"{where}.role")
    if not isinstance(text, str):
        return Problem(Reason.wrong_type if text is not None else Reason.missing_field,
                       f"`text` must be text, got {type(text).__name__}", f"{where}.text")
    if not isinstance(replies, list):
        return Problem(Reason.wrong_type, f"`replies` must be a list, got {type(replies).__name__}",
                       f"{where}.replies")
    for i, reply in enumerate(replies):
        if not isinstance(reply, Mapping):
            return Problem(Reason.wrong_type, f"reply is a {type(reply).__name__}, expected a message object",
                           f"{where}.replies[{i}]")
    return None


def _rank(node: Mapping[str, Any]) -> float | None:
    rank = node.get("rank")
    return rank if isinstance(rank, (int, float)) and not isinstance(rank, bool) else None
