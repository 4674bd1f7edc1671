"""The audit's own answer to "which tokens must the model generate?", by prefix renders.

This is deliberately a different method from the writer's (which locates each reply in one full
render). For assistant turn k:

1. render `messages[:k]` with `add_generation_prompt=True`: the text the model sees before it starts
   generating turn k (`P_k`). When `P_k` is a prefix of the full render `T`, turn k's generation
   starts at character `len(P_k)` of `T`.
2. the generation runs to the first end-of-turn token (found by the template probe, e.g.
   `<|im_end|>`, `<|eot_id|>`, `<end_of_turn>`, `</s>`) at or after that start, inclusive. With
   sanitize on, message text can never produce a control-token id, so the first one is the
   template's own.
3. a leading `<think>...</think>` block (plus the whitespace after it) is left out when it is empty
   or when `train_reasoning` is off; the end-of-turn token is left out when `train_eot` is off.
4. tokens are supervised when they hold at least one character of the span: a token straddling the
   start (part header, part reply) is supervised. This is Hugging Face's convention for
   `return_assistant_tokens_mask`, and the documented convention of the writer; the audit checks the
   same definition, not the same code.

Templates that rewrite history break step 1 for earlier turns (Qwen3 renders `<think></think>` only
on the last turn; Mistral v0.3 moves the system text into the last user turn). There the audit falls
back to a search: render `messages[:k+1]`, take what it adds after `P_k` up to its end-of-turn
(`G_k`), and find `G_k` in `T` after the previous turn (also with a leading think block removed,
which history rewriting drops). When `P_k` ends with an opening tag the finished turn does not
repeat (DeepSeek's prompt ends `<think>\n`, its rendered reply has no think block), `G_k` starts
where the two renders part. A turn found neither way is reported as `unproven`, never guessed.

`masking: all` supervises every token but each document's first; `last` only the last assistant
turn; a message's own `train` flag overrides the strategy. The plain `prompt_format` for base models
is re-derived from the format string: the response is supervised from the character where
`{response}` starts to the end of the text.

Cost: one full render plus one prefix render per assistant turn (Jinja only, no tokenizing) and one
batched encode. Profile on 2,000 bench conversations (Qwen2.5, loaded machine): encode 3.4 s, renders
2.2 s, span work 0.6 s; the whole audit of the 20k corpus took 1.2x and 1.6x the time of `prepare` in
two runs (`benchmarks/bench_audit.py`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sftdata.audit.render import Renderer

THINK_RE = re.compile(r"\s*<think>(.*?)</think>\s*", re.DOTALL)
OPENER_RE = re.compile(r"(?:\s|<[^<>\s/]{1,40}>)*")
"""A generation-prompt tail a finished turn may not repeat: whitespace and opening tags (`<think>\n`)."""


@dataclass
class Derived:
    """The audit's ids and supervision mask for one source record."""

    ids: np.ndarray | None = None
    supervised: np.ndarray | None = None
    unproven: list[str] = field(default_factory=list)
    """Why (part of) the mask could not be re-derived; empty when every turn was proven."""
    error: str | None = None
    """The template raised: nothing could be rendered."""


@dataclass
class DerivedBatch:
    """A batch of `Derived` as a few arrays: what a worker sends back to the main process.

    Pickling two small arrays per document cost ~8 µs a document to send and ~4 µs to receive, on both
    cores at once; a batch of 1,024 documents now pickles as two concatenated arrays."""

    ids: np.ndarray
    supervised: np.ndarray
    lengths: np.ndarray
    """Tokens of each document; -1 where no ids were derived."""
    masked: np.ndarray
    """Whether each document has a supervision mask (its length is the ids')."""
    notes: dict[int, tuple[list[str], str | None]]
    """(unproven, error) of the documents that have either."""

    @classmethod
    def of(cls, results: list[Derived]) -> DerivedBatch:
        empty = np.zeros(0, dtype=np.int64)
        return cls(ids=np.concatenate([empty, *(d.ids for d in results if d.ids is not None)]),
                   supervised=np.concatenate([np.zeros(0, dtype=bool),
                                              *(d.supervised for d in results if d.supervised is not None)]),
                   lengths=np.array([-1 if d.ids is None else len(d.ids) for d in results], dtype=np.int64),
                   masked=np.array([d.supervised is not None for d in results], dtype=bool),
                   notes={i: (d.unproven, d.error) for i, d in enumerate(results)
                          if d.unproven or d.error is not None})

    def unpack(self) -> list[Derived]:
        """The batch's `Derived`, in order (their arrays are views of the batch's)."""
        out: list[Derived] = []
        start = mask_start = 0
        for i, (n, masked) in enumerate(zip(self.lengths.tolist(), self.masked.tolist(), strict=True)):
            unproven, error = self.notes.get(i, ([], None))
            if n < 0:
                out.append(Derived(unproven=unproven, error=error))
                continue
            sup = None
            if masked:
                sup = self.supervised[mask_start:mask_start + n]
                mask_start += n
            out.append(Derived(ids=self.ids[start:start + n], supervised=sup, unproven=unproven, error=error))
            start += n
        return out


def _trained_turns(messages: list[dict], train_flags: list[bool | None], masking: str) -> list[int]:
    assistants = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
    last = assistants[-1] if assistants else -1
    out = []
    for i in assistants:
        flag = train_flags[i] if i < len(train_flags) else None
        if flag is None:
            flag = masking == "assistant" or (masking == "last" and i == last)
        if flag:
            out.append(i)
    return out


class Edges:
    """Character offsets of a document's tokens, read at the few tokens the derivation asks about.

    Converting every token's offsets into an array took more time than the rest of the derivation
    (3.8 M tokens on the bench), so an encoding is asked directly (`char_to_token`, `token_to_chars`);
    only a character that no token holds (a tokenizer that trims offsets) converts that document's
    offsets. The pieces of a sanitized encode come as an array already.
    """

    def __init__(self, encoding: Any = None, offsets: Any = None) -> None:
        self._enc = encoding
        self._offsets = None if offsets is None else np.asarray(offsets, dtype=np.int64).reshape(-1, 2)

    def first_at(self, char: int) -> int:
        """First token that holds `char` or ends after it (a token straddling `char` counts as holding it)."""
        if self._enc is not None:
            token = self._enc.char_to_token(char)
            if token is not None:
                return token
            self._offsets = np.asarray(self._enc.offsets, dtype=np.int64).reshape(-1, 2)
            self._enc = None
        return int(np.searchsorted(self._offsets[:, 1], char, side="right"))

    def end(self, token: int) -> int:
        """The character after token `token`."""
        if self._enc is not None:
            return int(self._enc.token_to_chars(token)[1])
        return int(self._offsets[token, 1])


class MaskDeriver:
    """Derives ids and masks for conversations with one renderer and the template's end-of-turn ids."""

    def __init__(self, renderer: Renderer, eot_ids: frozenset[int], eot_texts: tuple[str, ...]) -> None:
        self.r = renderer
        self.s = renderer.settings
        self.eot_ids = np.fromiter(eot_ids, dtype=np.int64) if eot_ids else np.zeros(0, dtype=np.int64)
        self.eot_texts = eot_texts

    def derive_batch(self, convs: list[tuple]) -> list[Derived]:
        """Derive many conversations: (template messages, tools, per-message train flags[, document text]) each.

        A given document text (the R1-style turn document, which is no single render) replaces the full
        render; everything else (prefix renders, end-of-turn search) is derived as for any document.
        """
        if self.s.prompt_format:
            return [self._derive_prompt_format(c[0]) for c in convs]
        given = [c[3] if len(c) > 3 else None for c in convs]
        convs = [(self.r.template_messages(c[0]), c[1], c[2]) for c in convs]
        rendered = iter(self.r.texts([(m, tools, False) for (m, tools, _), g in zip(convs, given, strict=True)
                                      if g is None]))
        texts: list[str | None] = []
        out: list[Derived] = []
        for text in given:
            text = text if text is not None else next(rendered)
            if isinstance(text, Exception):  # a template raising on one record is a finding, not a crash
                texts.append(None)
                out.append(Derived(error=f"{type(text).__name__}: {text}"))
            else:
                texts.append(text)
                out.append(Derived())
        todo = [i for i, t in enumerate(texts) if t is not None]
        wanted = [(i, k) for i in todo for k in self._turns(convs[i][0], convs[i][2])[1] if k > 0]
        prompts: dict[int, dict[int, str | Exception]] = {i: {} for i in todo}  # one batch of prefix renders
        for (i, k), prompt in zip(wanted, self.r.texts([(convs[i][0][:k], convs[i][1], True) for i, k in wanted]),
                                  strict=True):
            prompts[i][k] = prompt
        encodings = self.r.encode([texts[i] for i in todo])
        for i, enc in zip(todo, encodings, strict=True):
            messages, tools, flags = convs[i]
            ids = np.asarray(enc.ids, dtype=np.int64)
            offsets = Edges(enc)
            text = texts[i]
            if given[i] is not None:  # the context is the template's render (its ids are compared); the turn
                if self.r.needs_sanitize(messages[-1:], None):  # itself must not spell a control token
                    out[i] = Derived(ids=ids, unproven=["control-token text in a thought-opening turn document"])
                    continue
                out[i] = self._derive_one(messages, tools, flags, text, ids, offsets, prompts[i])
                continue
            if self.r.needs_sanitize(messages, tools):
                reference = np.asarray(self.r.reference_ids(messages, tools), dtype=np.int64)
                if not np.array_equal(reference, ids):
                    text, piece_ids, piece_offsets = self.r.encode_sanitized(messages, tools)
                    if piece_ids != reference.tolist():
                        out[i] = Derived(ids=reference, unproven=["control-token text in a message: ids checked, "
                                                                  "mask not"])
                        continue
                    ids, offsets = reference, Edges(offsets=piece_offsets)
            out[i] = self._derive_one(messages, tools, flags, text, ids, offsets, prompts[i])
        return out

    def _turns(self, messages: list[dict], flags: list[bool | None]) -> tuple[bool, list[int]]:
        """(masking `all`, the turns whose span is derived): the trained turns, or under `all` the turns taken out."""
        if self.s.masking == "all":
            return True, [k for k, m in enumerate(messages) if m.get("role") == "assistant" and flags[k] is False]
        return False, _trained_turns(messages, flags, self.s.masking)

    def _derive_one(self, messages: list[dict], tools: list[dict] | None, flags: list[bool | None], text: str,
                    ids: np.ndarray, offsets: Edges, prompts: dict[int, str | Exception]) -> Derived:
        """`prompts`: turn k -> the render of `messages[:k]` with the generation prompt (or what it raised)."""
        sup = np.zeros(len(ids), dtype=bool)
        everything, turns = self._turns(messages, flags)
        if everything:  # every token but the first; assistant turns with train=False are taken out below
            sup[1:] = True
        unproven: list[str] = []
        cursor = 0
        eot_at: np.ndarray | None = None
        for k in turns:
            span = self._turn_span(messages, tools, k, text, cursor, prompts.get(k))
            if isinstance(span, int):
                if eot_at is None:  # positions of end-of-turn ids, found once per document
                    eot_at = np.flatnonzero(ids == self.eot_ids[0] if len(self.eot_ids) == 1
                                            else np.isin(ids, self.eot_ids))
                span = self._trim(text, span, offsets, eot_at)
            if isinstance(span, str):
                unproven.append(f"messages[{k}]: {span}")
                continue
            start, eot_token = span
            sup[start:eot_token + (1 if self.s.train_eot else 0)] = not everything
            cursor = offsets.end(eot_token)
        return Derived(ids=ids, supervised=sup, unproven=unproven)

    def _turn_span(self, messages: list[dict], tools: list[dict] | None, k: int, text: str,
                   cursor: int, prompt: str | Exception | None) -> int | str:
        """Character where turn k's generation starts in `text`, or why it cannot be found (`prompt`: the
        render of `messages[:k]` with the generation prompt)."""
        if k == 0 or prompt is None:
            return "an assistant turn first: no generation prompt to render"
        if isinstance(prompt, Exception):
            return f"the template raised on the prefix ({prompt})"
        if text.startswith(prompt) and len(prompt) >= cursor:
            return len(prompt)
        try:
            turn = self.r.text(messages[: k + 1], tools)
        except Exception as err:
            return f"the template raised on the prefix ({err})"
        if turn.startswith(prompt):
            start = len(prompt)
        else:  # e.g. DeepSeek: the prompt ends with `<think>\n`, a reply without reasoning renders none
            start = len(os.path.commonprefix([prompt, turn]))
            tag = prompt.rfind("<", 0, start + 1)
            if tag > prompt.rfind(">", 0, start):  # the renders part inside a tag: back up to its start
                start = tag
            if not OPENER_RE.fullmatch(prompt[start:]):
                return "the template rewrites history: the generation prompt is not a prefix of the turn"
            if start >= cursor and text.startswith(turn[:start]):  # the full render agrees up to the turn
                return start
        generated = turn[start:]
        cut = min((generated.find(e) + len(e) for e in self.eot_texts if e in generated), default=-1)
        if cut < 0:
            return "no end-of-turn token in the turn's render"
        generated = generated[:cut]
        candidates = [generated]
        think = THINK_RE.match(generated)
        if think:
            candidates.append(generated[think.end():])
        header = self._header(messages, tools, k, turn[:start])
        ambiguous = False
        for candidate in candidates:  # found once after the previous turn, or not proven: never the first of many
            for head in dict.fromkeys((header, "")):
                pos = text.find(head + candidate, cursor)
                if pos >= 0 and text.find(head + candidate, pos + 1) < 0:
                    return pos + len(head)
                ambiguous = ambiguous or pos >= 0
        if ambiguous:
            return "the turn's text occurs more than once after the previous turn: where it starts is not proven"
        return "the turn's text is not in the full render after the previous turn"

    def _header(self, messages: list[dict], tools: list[dict] | None, k: int, before: str) -> str:
        """The text the template writes between the conversation so far and turn k (`<|im_start|>assistant\n`):
        what `before` (the render up to turn k's generation) adds to `messages[:k]` rendered without a
        generation prompt; empty when that render is not a prefix of it."""
        try:
            context = self.r.text(messages[:k], tools)
        except Exception:  # noqa: BLE001 - no header to anchor on: the search goes on without one
            return ""
        return before[len(context):] if before.startswith(context) else ""

    def _trim(self, text: str, start: int, offsets: Edges, eot_at: np.ndarray) -> tuple[int, int] | str:
        """(first supervised token, end-of-turn token) of a turn whose generation starts at `start`."""
        think = THINK_RE.match(text, start)
        if think and (not think.group(1).strip() or not self.s.train_reasoning):
            start = think.end()
        first = offsets.first_at(start)
        if not len(self.eot_ids) and self.eot_texts:  # an end-of-turn text this tokenizer splits into pieces
            hits = [(at, at + len(e)) for e in self.eot_texts if (at := text.find(e, start)) >= 0]
            if not hits:
                return "no end-of-turn text after the reply"
            begin, end = min(hits)  # the pieces holding it are trained with it; with `train_eot` off, the
            last = offsets.first_at(end - 1) if self.s.train_eot else offsets.first_at(begin - 1)  # reply's last
            return first, last if self.s.train_eot else last + 1  # (the caller trains up to, not with, this one)
        k = int(np.searchsorted(eot_at, first))
        if k == len(eot_at):
            return "no end-of-turn token after the reply"
        return first, int(eot_at[k])

    def _derive_prompt_format(self, messages: list[dict]) -> Derived:
        fmt = self.s.prompt_format or ""
        users = [m.get("content", "") for m in messages if m.get("role") in ("user", "system")]
        replies = [m.get("content", "") for m in messages if m.get("role") == "assistant"]
        if len(replies) != 1:
            return Derived(error=f"prompt_format needs exactly one assistant reply, found {len(replies)}")
        prompt = "\n\n".join(u for u in users if u)
        head, _, _ = fmt.partition("{response}")
        text = fmt.format(prompt=prompt, response=replies[0])
        start = len(head.format(prompt=prompt))
        enc = self.r.encode([text])[0]
        ids = np.asarray(enc.ids, dtype=np.int64)
        sup = np.zeros(len(ids), dtype=bool)
        sup[max(Edges(enc).first_at(start), 1):] = True
        return Derived(ids=ids, supervised=sup)
