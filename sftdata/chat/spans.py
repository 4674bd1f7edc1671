"""Character spans of the supervised text in one rendered conversation: the pure core of the engine.

Inputs: the full render `text`, the messages as the template saw them, and for each trained assistant
turn k the prefix render `P_k = render(messages[:k], add_generation_prompt=True)`. Output: the spans
to put in the loss, or a `Problem` (never a guess).

Two methods, both required to agree:

1. **Prefix render (the definition).** The supervised text of turn k starts where the generation
   prompt ends: `len(P_k)` when `P_k` is a prefix of `text`. Templates that rewrite history (Qwen3
   with `enable_thinking=false` drops the think block of earlier turns; Mistral v0.3 moves the system
   text and tool list into the *last* user turn) break the prefix property; then the tail of `P_k`
   after the previous message's text (the header `P_k` adds) is aligned with `text` at that message's
   located end.
2. **Located reply.** Each message's text is found in `text` in order (`str.find` from a moving cursor;
   the template may `trim` or JSON-escape it, so a few exact variants are tried and the earliest wins).
   The reply of turn k must be found *after* the generation prompt, with nothing but whitespace or
   markup tags (`<think>`) between them, and the template's end-of-turn text must follow the reply
   before the next turn's prompt. Otherwise: `reply_not_located` or `mask_methods_disagree`.

The span of a trained turn is `[generation prompt end, end-of-turn end)`, so it holds the reasoning,
content, tool calls and any closing text the template writes, but no role header. Then:
- an empty think block the template injects (`<think>\n\n</think>\n\n`, Qwen3) is never trained: when
  the turn has no located reasoning and such a block sits between the generation prompt and the reply,
  the span starts after the block and the whitespace that follows it (a tool call's scaffolding, such as
  `<tool_call>\n{"name": "`, is the reply's and trained); other markup there (gpt-oss
  `<|channel|>final<|message|>`) is trained;
- `train_reasoning=False` starts the span after the think block's closing tag;
- `train_eot=False` ends it where the end-of-turn text begins.
The engine maps spans to tokens (`engine.py`) and checks the last supervised token *is* the end-of-turn
control token, a third, token-level proof.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sftdata.reasons import Reason
from sftdata.records import Problem

_GAP_OK = re.compile(r"(?:\s|<[^<>\s]{1,40}>|\w{1,16}(?=\s*<))*")
"""What may separate the end of the generation prompt from a located reply: whitespace, tags, and a short
word right before a tag (gpt-oss writes `<|channel|>final<|message|>` before the reply; Gemma 4's
generation prompt ends in an empty `<|channel>thought\n<channel|>` the full render lacks)."""
_EMPTY_THINK = re.compile(r"<(think|thinking|reasoning|thought)>\s*</\1>\s*")
"""An empty think block and the whitespace after it (the end of the match is where the reply's text begins)."""
_THINK_CLOSE = re.compile(r"\s*</[^<>\s]{1,40}>\s*")


@dataclass
class TurnSpan:
    """One supervised region and the end-of-turn text inside it (for the token-level check)."""

    start: int
    end: int
    eot: tuple[int, int] | None = None
    """Character range of the end-of-turn control text when it ends the span."""


@dataclass
class Plan:
    """What the engine supervises in one rendered conversation."""

    spans: list[TurnSpan] = field(default_factory=list)
    exclude: list[tuple[int, int]] = field(default_factory=list)
    """Ranges forced out of the loss (masking `all` with `train=false` messages)."""
    everything: bool = False
    """Masking `all`: every token but the first is in the loss, minus `exclude`."""


def variants(s: str) -> list[str]:
    """Exact forms a template may render a text in: as is, trimmed (JSON-escaped forms: `escaped`)."""
    out = [s]
    for v in (s.strip(), s.rstrip(), s.lstrip(), s.strip("\n")):
        if v and v not in out:
            out.append(v)
    return out


def locate(text: str, s: str, start: int, end: int | None = None) -> tuple[int, int] | None:
    """Earliest occurrence of any variant of `s` in text[start:end]; the longest wins a tie.

    The JSON-escaped form (templates that `tojson` a message) is tried only when no plain form occurs.
    """
    best: tuple[int, int] | None = None
    stop = len(text) if end is None else end
    for v in variants(s):
        p = text.find(v, start, stop)
        if p >= 0 and (best is None or p < best[0] or (p == best[0] and p + len(v) > best[1])):
            best = (p, p + len(v))
    if best is None:
        escaped = json.dumps(s, ensure_ascii=False)[1:-1]
        if escaped != s:
            p = text.find(escaped, start, stop)
            if p >= 0:
                best = (p, p + len(escaped))
    return best


def _prefix_start(text: str, prefix: str, anchor: tuple[int, int] | None) -> int | None:
    """End of the generation prompt in `text` from the prefix render (method 1).

    When `prefix` is not a prefix of `text`, its tail after the previous message's text is aligned at
    that message's located end. A generation prompt may end with markup the full render lacks (DeepSeek
    adds `<think>\n`, Qwen3 with thinking off an empty think block): the aligned part may stop short of
    the tail's end only where the rest is whitespace and tags.
    """
    if text.startswith(prefix):
        return len(prefix)
    if anchor is None:
        base, tail = 0, prefix
    else:
        a, b = anchor
        pos = prefix.rfind(text[a:b])
        if pos < 0:
            return None
        base, tail = b, prefix[pos + (b - a):]
    n = 0
    limit = min(len(tail), len(text) - base)
    while n < limit and tail[n] == text[base + n]:
        n += 1
    while n > 0 and not _GAP_OK.fullmatch(tail, n):
        n -= 1
    if n == 0 and tail and not _GAP_OK.fullmatch(tail):
        return None
    return base + n


@dataclass
class _Reply:
    first: int
    last: int
    reasoning: tuple[int, int] | None
    content: tuple[int, int] | None
    first_is_call: bool


def _locate_reply(text: str, msg: dict[str, Any], start: int, stop: int, calls_rendered: bool) -> _Reply | None:
    content = msg.get("content") or ""
    calls = (msg.get("tool_calls") or []) if calls_rendered else []
    reasoning = msg.get("reasoning_content") or ""
    c_span = locate(text, content, start, stop) if content.strip() else None
    names: list[tuple[int, int]] = []
    cursor = c_span[1] if c_span else start
    for call in calls:
        name = (call.get("function") or {}).get("name") or call.get("name") or ""
        found = text.find(name, cursor, stop) if name else -1
        if found < 0 and c_span is not None:  # content rendered after the calls (or dropped): search again
            found = text.find(name, start, stop)
        if found < 0:
            return None
        names.append((found, found + len(name)))
        cursor = found + len(name)
    if content.strip() and c_span is None and not names:
        return None
    pieces = ([c_span] if c_span else []) + names
    if not pieces:
        return None
    first = min(p[0] for p in pieces)
    r_span = locate(text, reasoning, start, first) if reasoning.strip() else None
    if r_span:
        pieces.append(r_span)
    return _Reply(first=min(p[0] for p in pieces), last=max(p[1] for p in pieces), reasoning=r_span,
                  content=c_span, first_is_call=bool(names) and names[0][0] == first and not r_span)


def plan_spans(text: str, messages: Sequence[dict[str, Any]], trained: Sequence[bool | None],
               prefixes: dict[int, str], eot_texts: Sequence[str], *, calls_rendered: bool, train_eot: bool,
               train_reasoning: bool, everything: bool = False) -> Plan | Problem:
    """Supervised character spans for one render, proven by prefix renders and located replies.

    Args:
        text: the full render (no generation prompt).
        messages: the messages exactly as passed to the template.
        trained: per message, True (in the loss), False (forced out) or None (not in the loss).
        prefixes: `P_k` for every assistant index k with `trained[k]` True.
        eot_texts: the template's end-of-turn text(s), from the template profile.
        calls_rendered: whether the template renders tool calls at all.
        train_eot / train_reasoning: options; `everything` is masking `all`.
    """
    plan = Plan(everything=everything)
    starts = {k: _prefix_start(text, p, None) for k, p in prefixes.items()}
    cursor = 0
    prev: tuple[int, int] | None = None
    for i, msg in enumerate(messages):
        role = msg.get("role")
        if role == "system":  # some templates move it (Mistral v0.3: into the last user turn): not a landmark
            continue
        if role != "assistant":
            found = locate(text, msg.get("content") or "", cursor) if (msg.get("content") or "").strip() else None
            if found is not None:
                prev, cursor = found, found[1]
                if trained[i]:
                    plan.spans.append(TurnSpan(*found))
                elif trained[i] is False:
                    plan.exclude.append(found)
            else:
                prev = None
            continue
        if not trained[i]:
            reply = _locate_reply(text, msg, cursor, len(text), calls_rendered)
            if reply is not None:
                prev, cursor = (reply.first, reply.last), reply.last
                if trained[i] is False:
                    plan.exclude.append((reply.first, reply.last))
            continue
        start = starts.get(i)
        if start is None:
            start = _prefix_start(text, prefixes[i], prev)
        if start is None or start < cursor:
            return Problem(Reason.reply_not_located, f"the generation prompt of turn {i} (what the template renders "
                           "for add_generation_prompt=True) does not occur in the full render", f"messages[{i}]")
        later = [s for k, s in starts.items() if k > i and s is not None]
        bound = min(later) if later else len(text)
        reply = _locate_reply(text, msg, start, bound, calls_rendered)
        if reply is None and msg.get("tool_calls") and not calls_rendered:
            return Problem(Reason.reply_not_located, f"turn {i} makes tool calls but the template does not render "
                           "tool calls (it has no tool support): the reply would be trained as empty",
                           f"messages[{i}].tool_calls")
        if reply is None:
            return Problem(Reason.reply_not_located, f"the reply of turn {i} is not in the rendered text after its "
                           "generation prompt (the template drops or rewrites it)", f"messages[{i}]")
        gap = text[start:reply.first]
        if not reply.first_is_call and not _GAP_OK.fullmatch(gap):
            return Problem(Reason.mask_methods_disagree, f"turn {i}: the located reply starts {len(gap)} characters "
                           f"after the generation prompt ends, across {gap[:60]!r}", f"messages[{i}]")
        span_start = start
        empty = None
        if reply.reasoning is None and "<" in gap:  # a block may run on past `reply.first` (whitespace it shares)
            empty = _EMPTY_THINK.search(text, start, bound)
        if empty is not None and empty.start() <= reply.first:  # a template-injected empty block is never trained;
            span_start = empty.end()  # what follows it is (a call's `<tool_call>{"name": "` scaffolding included)
        elif reply.reasoning is not None and not train_reasoning:
            close = _THINK_CLOSE.match(text, reply.reasoning[1])
            span_start = close.end() if close else reply.reasoning[1]
        eot = _find_eot(text, eot_texts, reply.last, bound)
        if eot is not None:
            end = eot[1] if train_eot else eot[0]
        else:
            end = reply.last
        if end > span_start:
            plan.spans.append(TurnSpan(span_start, end, eot if (eot is not None and train_eot) else None))
        prev, cursor = (reply.first, reply.last), (eot[1] if eot else reply.last)
    return plan


def _find_eot(text: str, eot_texts: Sequence[str], start: int, stop: int) -> tuple[int, int] | None:
    best: tuple[int, int] | None = None
    for t in eot_texts:
        p = text.find(t, start, stop)
        if p >= 0 and (best is None or p < best[0]):
            best = (p, p + len(t))
    return best
