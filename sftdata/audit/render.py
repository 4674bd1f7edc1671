"""Rendering for the audit: Hugging Face's own `apply_chat_template`, set up as the manifest says.

The audit must not trust the writer, so it renders with transformers directly: the template text
recorded in the manifest, its `template_kwargs`, the pinned date (passed as `date_string`, which Llama
3.x templates read first, and set as the clock of transformers' own `strftime_now`, which other templates
call), and `sanitize_control_tokens=True` when the manifest says `control_tokens: sanitize`.

Ids come from one batched encode of the rendered texts (`backend_tokenizer.encode_batch`, which is
what `apply_chat_template(tokenize=True)` does for a fast tokenizer), so every token keeps its
character offsets for the mask derivation. A conversation whose text spells a control token inside a
message is the exception: with sanitize on, Hugging Face encodes those pieces as plain text, so its ids
come from `apply_chat_template(..., tokenize=True, sanitize_control_tokens=True)` itself and its offsets
from encoding the rendered text in the same pieces.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from sftdata.audit.bounds import bounded

DATE_FORMATS = ("%d %b %Y", "%Y-%m-%d", "%d %B %Y")
MARK_START, MARK_END = "\U000f0000", "\U000f0001"
"""The private-use markers transformers puts around control-token text in messages when sanitizing."""


def _strings(obj: Any):
    """Every string inside nested lists and dicts (dict keys excluded, as transformers does)."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _strings(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _strings(value)


@dataclass(frozen=True)
class RenderSettings:
    """The manifest's options that change what a conversation renders to and which tokens are trained."""

    chat_template: str | None = None
    template_kwargs: dict[str, Any] = field(default_factory=dict)
    date: str | None = None
    sanitize: bool = True
    masking: str = "assistant"
    train_eot: bool = True
    train_reasoning: bool = True
    prompt_format: str | None = None
    reasoning_field: str = "inline"
    """`inline`: a reasoning field the template has no slot for was put in the content as a leading think block."""

    @classmethod
    def from_options(cls, options: dict[str, Any], chat_template: str | None) -> RenderSettings:
        """From a manifest's `options` (mask options nested under `mask`, or flat)."""
        mask = options.get("mask") if isinstance(options.get("mask"), dict) else options
        return cls(
            chat_template=chat_template,
            template_kwargs=dict(mask.get("template_kwargs") or {}),
            date=mask.get("date"),
            sanitize=(mask.get("control_tokens") or "sanitize") == "sanitize",
            masking=str(mask.get("masking") or "assistant"),
            train_eot=bool(mask.get("train_eot", True)),
            train_reasoning=bool(mask.get("train_reasoning", True)),
            prompt_format=mask.get("prompt_format"),
            reasoning_field=str(mask.get("reasoning_field") or "inline"),
        )


def pinned_date_kwargs(date: str | None) -> dict[str, Any]:
    """Template variables that make date-printing templates reproducible (empty when `date` is None)."""
    if not date:
        return {}
    fixed = None
    for fmt in DATE_FORMATS:
        try:
            fixed = datetime.strptime(date, fmt)
            break
        except ValueError:
            continue

    def strftime_now(fmt: str) -> str:
        return fixed.strftime(fmt) if fixed is not None else date

    return {"date_string": date, "strftime_now": strftime_now}


class _Clock:
    """Stands in for `datetime` in transformers' chat-template module: `now().strftime(fmt)` is the pinned date."""

    def __init__(self, strftime: Callable[[str], str]) -> None:
        self.strftime = strftime

    def now(self, tz: Any = None) -> _Clock:  # noqa: ARG002 - the signature transformers calls
        return self


@contextmanager
def _transformers_clock(strftime: Callable[[str], str] | None) -> Iterator[None]:
    """Transformers' `strftime_now` returns `strftime(fmt)` while inside (nothing changes for None)."""
    import transformers.utils.chat_template_utils as ctu

    if strftime is None or not hasattr(ctu, "datetime"):
        yield
        return
    original = ctu.datetime
    ctu.datetime = _Clock(strftime)
    try:
        yield
    finally:
        ctu.datetime = original


class Renderer:
    """Renders conversations with one tokenizer and one set of settings."""

    def __init__(self, tokenizer: Any, settings: RenderSettings) -> None:
        self.tok = tokenizer
        self.settings = settings
        self.template = settings.chat_template or getattr(tokenizer, "chat_template", None)
        self.kwargs = {**settings.template_kwargs, **pinned_date_kwargs(settings.date)}

    def settle(self) -> None:
        """Make the few renders every record relies on now (under the caller's bounds), not lazily later."""
        _ = self.string_arguments, self.renders_reasoning, self.thought_opener

    @cached_property
    def added_tokens(self) -> tuple[str, ...]:
        """Texts of the tokenizer's added tokens (read once: the property is slow on large vocabularies)."""
        return tuple(self.tok.added_tokens_encoder)

    @cached_property
    def string_arguments(self) -> bool:
        """Does the template need tool-call arguments as a JSON string (DeepSeek style)?

        Found by rendering one tool call: a template that fails on, or prints the Python repr of, an
        arguments object but renders the call when given JSON text is fed JSON text.
        """
        user = {"role": "user", "content": "q"}
        call = {"type": "function", "function": {"name": "probe_fn_audit", "arguments": {"x": 1}}}
        try:
            text = self.text([user, {"role": "assistant", "content": "", "tool_calls": [call]}])
        except Exception:
            text = None
        if text is not None and "{'x': 1}" not in text:
            return False
        call = {**call, "function": {"name": "probe_fn_audit", "arguments": json.dumps({"x": 1})}}
        try:
            text = self.text([user, {"role": "assistant", "content": "", "tool_calls": [call]}])
        except Exception:
            return False
        return "probe_fn_audit" in text

    @cached_property
    def renders_reasoning(self) -> bool:
        """Does the template print a reasoning field of the last assistant turn (a reasoning slot)?"""
        probe = "probe reasoning audit 7Q"
        messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "reasoning": probe}]
        try:
            return probe in self.text(self.template_messages(messages))
        except Exception:
            return False

    @cached_property
    def thought_opener(self) -> str | None:
        """The think opener that ends the generation prompt of a template that strips every thought
        (DeepSeek-R1 style, e.g. `<think>\n`), or None."""
        if self.renders_reasoning:
            return None
        try:
            prompt = self.text([{"role": "user", "content": "q"}], generation=True)
        except Exception:
            return None
        at = prompt.rfind("<think>")
        return prompt[at:] if at >= 0 and not prompt[at + len("<think>"):].strip() else None

    @staticmethod
    def lift_think(messages: list[dict]) -> list[dict]:
        """A reply's leading `<think>...</think>` as its reasoning (Qwen3's own split rule), for templates that
        render reasoning themselves: the tags then come from the template, as at inference."""
        out = []
        for m in messages:
            content = m.get("content")
            if (m.get("role") == "assistant" and m.get("reasoning") is None and isinstance(content, str)
                    and content.lstrip().startswith("<think>") and "</think>" in content):
                head, _, tail = content.partition("</think>")
                thought = head.rstrip("\n").split("<think>")[-1].lstrip("\n")
                m = {**m, "content": tail.lstrip("\n"), "reasoning": thought}
            out.append(m)
        return out

    def inline_reasoning(self, messages: list[dict]) -> list[dict]:
        """Messages as the writer hands them to a template with no reasoning slot (`reasoning_field: inline`):
        the reasoning as a leading `<think>\n...\n</think>\n\n` block of the content."""
        if self.renders_reasoning:
            return self.lift_think(messages)
        if self.settings.reasoning_field != "inline":
            return messages
        out = []
        for m in messages:
            thought = m.get("reasoning")
            if thought is not None:
                m = {k: v for k, v in m.items() if k != "reasoning"}
                m["content"] = f"<think>\n{thought}\n</think>\n\n{m.get('content') or ''}"
            out.append(m)
        return out

    def document_input(self, messages: list[dict], tools: list[dict] | None, train: list[bool | None],
                       split_turns: set[int]) -> tuple[list[dict], list[dict] | None, list[bool | None]]:
        """What to derive for a record's own document: turns written as their own `ID#K` documents are
        context here (never trained twice)."""
        flags = [False if i in split_turns else t for i, t in enumerate(train)]
        return self.inline_reasoning(messages), tools, flags

    def turn_input(self, messages: list[dict], tools: list[dict] | None, k: int) -> tuple:
        """What to derive for document `ID#K`: the conversation up to turn k, rendered with k last, only k trained."""
        head = messages[: k + 1]
        flags: list[bool | None] = [(i == k) if m.get("role") == "assistant" else None for i, m in enumerate(head)]
        if self.thought_opener is not None:
            *before, last = self.lift_think(head)
            messages = [*self.inline_reasoning(before), last]
            return messages, tools, flags, self.opened_turn_text(messages, tools)
        return self.inline_reasoning(head), tools, flags

    def opened_turn_text(self, messages: list[dict], tools: list[dict] | None) -> str | None:
        """The document of the last turn on a template that strips every thought and opens one in its
        generation prompt: the prompt, the thought, `</think>`, then the reply as the template renders it
        (what the model writes at inference). Earlier turns are context, as the writer hands them to the
        template (reasoning inlined). None when the template does not continue its prompt so."""
        opener = self.thought_opener or ""
        *before, last = messages
        thought = last.get("reasoning")
        reply = {k: v for k, v in last.items() if k != "reasoning"}
        try:
            prompt = self.text(self.template_messages(before), tools, generation=True)
            rendered = self.text(self.template_messages([*before, reply]), tools)
        except Exception:
            return None
        head = prompt[: len(prompt) - len(opener)]
        if thought is None or not prompt.endswith(opener) or not rendered.startswith(head):
            return None
        return f"{prompt}{thought}\n</think>\n\n{rendered[len(head):]}"

    def template_messages(self, messages: list[dict]) -> list[dict]:
        """Record messages as templates expect them: `reasoning` also under the names templates read
        (`reasoning_content`, Qwen3 / DeepSeek; `thinking`), tool-call arguments as JSON text where the
        template needs a string."""
        out = []
        for m in messages:
            if m.get("reasoning") is not None:
                r = m["reasoning"]
                m = {"thinking": r, **m, "reasoning_content": r}
            if m.get("tool_calls") and self.string_arguments:
                m = {**m, "tool_calls": [{**c, "function": {**c["function"], "arguments": json.dumps(
                    c["function"].get("arguments", {}), ensure_ascii=False)}} for c in m["tool_calls"]]}
            out.append(m)
        return out

    def text(self, messages: list[dict], tools: list[dict] | None = None, generation: bool = False,
             **extra: Any) -> str:
        """The rendered text (raises whatever the template raises, or `AuditBoundError` past a bound); `extra`
        template kwargs override the manifest's (the probes pin other dates)."""
        return self._apply(messages, tools, generation, **extra)

    def _apply(self, conversation: Any, tools: list[dict] | None, generation: bool, **extra: Any) -> Any:
        """`apply_chat_template(tokenize=False)` as the manifest sets it up, bounded: one conversation -> its text,
        a list of conversations -> their texts (transformers renders each as alone)."""
        return self._hf(conversation, tools=tools, tokenize=False, add_generation_prompt=generation,
                        **{**self.kwargs, **extra})

    def _hf(self, conversation: Any, **kwargs: Any) -> Any:
        """`apply_chat_template` with this template, bounded, and the pinned date as transformers' own clock.

        The pinned `strftime_now` is not handed over as a template variable: transformers 5 rebuilds the
        variables as plain data, so the function would arrive as an inert string and shadow the real one
        (`'str' object is not callable` in Mistral Small 3's and gpt-oss's templates). Its clock is set for
        the call instead (the audit renders in one thread per process)."""
        clock = kwargs.pop("strftime_now", None)
        with bounded(), _transformers_clock(clock):
            return self.tok.apply_chat_template(conversation, chat_template=self.template, **kwargs)

    def texts(self, requests: list[tuple[list[dict], list[dict] | None, bool]]) -> list[str | Exception]:
        """Many renders, (messages, tools, generation prompt) each: the text, or what the template raised.

        Those without tools go to `apply_chat_template` as one batch per generation flag (transformers
        renders each conversation of a batch exactly as alone; the batch saves its per-call set-up, ~15% of
        the render time). If a batch raises or passes the clock, its renders are redone one by one, each
        under its own bound, so one bad record never fails another.
        """
        out: list[str | Exception | None] = [None] * len(requests)
        for generation in (False, True):
            group = [i for i, (_, tools, g) in enumerate(requests) if g is generation and tools is None]
            if len(group) < 2:
                continue
            try:
                rendered = self._apply([requests[i][0] for i in group], None, generation)
            except Exception:  # noqa: BLE001 - redone one by one below, where each failure is its own record's
                continue
            for i, text in zip(group, rendered, strict=True):
                out[i] = text
        for i, (messages, tools, generation) in enumerate(requests):
            if out[i] is None:
                try:
                    out[i] = self.text(messages, tools, generation)
                except Exception as err:  # noqa: BLE001 - the template's failure on this record is a finding
                    out[i] = err
        return out  # type: ignore[return-value]

    def reference_ids(self, messages: list[dict], tools: list[dict] | None = None) -> list[int]:
        """Hugging Face's own ids for a conversation, exactly as `apply_chat_template(tokenize=True)` gives them."""
        out = self._hf(messages, tools=tools, tokenize=True, sanitize_control_tokens=self.settings.sanitize,
                       **self.kwargs)
        return list(out["input_ids"] if hasattr(out, "keys") else out)

    @cached_property
    def control_pattern(self) -> re.Pattern | None:
        """Matches control-token text in messages (what sanitize re-encodes as plain text)."""
        if not self.settings.sanitize or not self.template:
            return None
        try:
            tokens = self.tok._get_control_tokens(self.template)
        except Exception:  # older transformers: every added token counts
            tokens = self.added_tokens
        tokens = sorted((t for t in tokens if t), key=len, reverse=True)
        return re.compile("|".join(map(re.escape, tokens))) if tokens else None

    def needs_sanitize(self, messages: list[dict], tools: list[dict] | None) -> bool:
        """Does any message text (or tool schema) spell a control token?"""
        pattern = self.control_pattern
        return pattern is not None and any(pattern.search(t) for t in _strings([messages, tools]))

    def encode_sanitized(self, messages: list[dict], tools: list[dict] | None) -> tuple[str, list[int], list]:
        """(plain text, ids, offsets into the plain text) the way `sanitize_control_tokens=True` encodes.

        Hugging Face wraps control-token text found in messages with private-use markers, renders,
        then encodes the text between markers normally and each marked token as plain text, each piece
        after a newline that is then removed (so SentencePiece adds no prefix space). The same pieces
        encoded with offsets give the offsets; the caller checks the ids against HF's own.
        """
        from transformers.utils.chat_template_utils import mark_control_tokens

        marked = mark_control_tokens(messages, self.control_pattern)
        text = self._hf(marked, tools=mark_control_tokens(tools, self.control_pattern), tokenize=False,
                        **self.kwargs)
        tokens = "|".join(map(re.escape, sorted((t for t in self.added_tokens if t), key=len, reverse=True)))
        pieces = re.split(f"{MARK_START}({tokens}){MARK_END}|[{MARK_START}{MARK_END}]", text)
        backend = self.tok.backend_tokenizer
        newline = backend.encode("\n", add_special_tokens=False).ids
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        plain = ""
        for i, piece in enumerate(pieces):
            if not piece:
                continue
            backend.encode_special_tokens = i % 2 == 1  # odd pieces are marked tokens: plain text
            try:
                enc = backend.encode("\n" + piece, add_special_tokens=False)
                shift = 1
                if enc.ids[: len(newline)] != newline:
                    enc, shift = backend.encode(piece, add_special_tokens=False), 0
            finally:
                backend.encode_special_tokens = False
            skip = len(newline) if shift else 0
            ids += enc.ids[skip:]
            offsets += [(a - shift + len(plain), b - shift + len(plain)) for a, b in enc.offsets[skip:]]
            plain += piece
        return plain, ids, offsets

    def encode(self, texts: list[str]) -> list[Any]:
        """Batch-encode rendered texts without adding special tokens (the template wrote them)."""
        backend = self.tok.backend_tokenizer
        return backend.encode_batch(texts, add_special_tokens=False)
