"""Checks of the engine against Hugging Face, sharing no code with the mask derivation.

Used by the tests, `benchmarks/template_survey.py` and `sftdata inspect`:
- `hf_ids`: what `apply_chat_template` gives for the same messages and settings (the ids contract);
- `check_example`: each supervised run decodes to one reply plus closing text and end-of-turn, and no
  run holds user text;
- `compare_with_generation_mask`: our mask from a plain template vs Hugging Face's
  `return_assistant_tokens_mask` from its `{% generation %}`-marked twin (TRL's `*_training.jinja`).
  Rule: identical on every content token; on special tokens ours must be a subset of theirs (they also
  train e.g. DeepSeek's `<｜Assistant｜>` header or Phi-3's final EOS) and must include every end-of-turn
  they train; whitespace-only tokens, think markers and straddling edge tokens are not compared.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sftdata.chat.jinja_env import parse_date
from sftdata.records import Conversation, Role
from sftdata.tokens import Example

THINK_MARKERS = frozenset({"<think>", "</think>"})
STRADDLE_CHARS = 4


@contextlib.contextmanager
def pinned_clock(date: str | None) -> Iterator[None]:
    """Make transformers' `strftime_now` return the pinned date too, so its renders match ours."""
    import transformers.utils.chat_template_utils as ctu

    pinned = parse_date(date)
    if pinned is None:
        yield
        return

    class _Pinned(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # noqa: ARG003
            return pinned

    original = ctu.datetime
    ctu.datetime = _Pinned
    try:
        yield
    finally:
        ctu.datetime = original


def hf_ids(enc: Any, conv: Conversation, chat_template: str | None = None) -> list[int]:
    """`apply_chat_template` ids for the messages the encoder rendered (sanitizing when there is control text)."""
    sanitize = enc.options.control_tokens.value == "sanitize" and enc._has_control_text(str(conv.model_dump()))
    return enc.tokenizer.apply_chat_template(
        enc.template_messages(conv), tools=conv.tools, chat_template=chat_template or enc.template_text,
        tokenize=True, sanitize_control_tokens=sanitize, **enc.hf_kwargs)["input_ids"]


def squash(s: str) -> str:
    """Whitespace removed and NFC-normalised: decode() gives normalised text on some tokenizers."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFC", s))


def supervised_runs(ex: Example) -> list[list[int]]:
    """Maximal runs of supervised token ids."""
    out: list[list[int]] = []
    cur: list[int] = []
    for t, s in zip(ex.input_ids.tolist(), ex.supervised.tolist(), strict=True):
        if s:
            cur.append(t)
        elif cur:
            out.append(cur)
            cur = []
    return out + ([cur] if cur else [])


def check_example(enc: Any, conv: Conversation, ex: Example) -> str | None:
    """None when every supervised run is one reply + closing text + end-of-turn (default options)."""
    replies = [m for m in conv.messages if m.role is Role.assistant]
    runs = [enc.tokenizer.decode(r) for r in supervised_runs(ex)]
    if len(runs) != len(replies):
        return f"{len(runs)} supervised runs for {len(replies)} replies"
    eots = [squash(t) for t in enc.profile.eot_texts]
    users = [squash(m.content) for m in conv.messages if m.role is Role.user]
    for m, text in zip(replies, runs, strict=True):
        body = squash(text)
        if eots:
            # the last token may straddle the end-of-turn text and the next header where the end-of-turn is
            # not a single token (a template paired with a tokenizer of another family): allow a few characters
            cuts = [c for c in (body.rfind(e, max(0, len(body) - len(e) - STRADDLE_CHARS)) for e in eots) if c >= 0]
            if not cuts:
                return f"run does not end with an end-of-turn {eots!r}: ...{text[-40:]!r}"
            body = body[:max(cuts)]
        if m.content.strip() and squash(m.content) not in body:
            return f"run {text[:60]!r} does not hold the reply {m.content[:40]!r}"
        if any(len(u) > 8 and u in body and u not in squash(m.content) for u in users):
            return f"run {text[:60]!r} holds user text"
    return None


@dataclass(frozen=True)
class Verdict:
    status: str
    """agree | disagree | rejected | skipped"""
    detail: str = ""


def compare_with_generation_mask(enc: Any, conv: Conversation, marked_template: str) -> Verdict:
    """Our mask (plain template) vs Hugging Face's assistant mask (marked template), by the module rule."""
    [ours] = enc.encode_batch([conv])
    if isinstance(ours, list):
        return Verdict("rejected", ours[0].message[:160])
    tok = enc.tokenizer
    try:
        with pinned_clock(enc.options.date):
            out = tok.apply_chat_template(enc.template_messages(conv), tools=conv.tools,
                                          chat_template=marked_template, tokenize=True, return_dict=True,
                                          return_assistant_tokens_mask=True, **enc.hf_kwargs)
    except Exception as err:  # noqa: BLE001
        return Verdict("skipped", f"marked template raised {type(err).__name__}")
    if list(out["input_ids"]) != ours.input_ids.tolist():
        return Verdict("skipped", "the marked template renders other ids (control-token text or a different text)")
    theirs = [bool(x) for x in out["assistant_masks"]]
    if not any(theirs):
        return Verdict("skipped", "the marked template marks nothing for this conversation")
    mine = ours.supervised.tolist()
    ids = ours.input_ids.tolist()
    special = set(tok.all_special_ids) | {i for i in tok.added_tokens_decoder}
    for i, (t, o, h) in enumerate(zip(ids, mine, theirs, strict=True)):
        if o == h:
            continue
        piece = tok.decode([t])
        edge = (i > 0 and (mine[i - 1] != o or theirs[i - 1] != h)) or (
            i + 1 < len(ids) and (mine[i + 1] != o or theirs[i + 1] != h))
        if not piece.strip() or piece.strip() in THINK_MARKERS or (edge and piece != piece.strip()):
            continue
        if t in special:
            if o and not h:
                return Verdict("disagree", f"we train special token {piece!r} at {i}, they do not")
            if h and not o and t in enc.eot_token_ids:
                return Verdict("disagree", f"they train end-of-turn {piece!r} at {i}, we do not")
            continue
        return Verdict("disagree", f"content token {piece!r} at {i}: ours={o} theirs={h}")
    return Verdict("agree")
