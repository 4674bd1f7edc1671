"""The loss-mask engine: conversations -> (template ids, supervised mask), proven, in batches.

For each conversation: render it once with the compiled template (the text `apply_chat_template`
would tokenize), render a prefix `messages[:k]` with `add_generation_prompt=True` for every trained
assistant turn k, derive the supervised character spans (`spans.plan_spans`: prefix renders and
located replies must agree), encode all full renders of the batch in one call to the Rust tokenizer,
and map span edges to tokens with `Encoding.char_to_token` (no Python loop over tokens). The ids are
exactly `tokenizer.apply_chat_template(messages, tools=tools, tokenize=True, **hf_kwargs)["input_ids"]`
(with `sanitize_control_tokens=True` under the default `control_tokens: sanitize`), for the messages
`template_messages(conv)` returns.

Straddling tokens (one convention, the one Hugging Face's assistant mask uses): a token is supervised
when it holds at least one character of a supervised span. A token that merges the end of a header
with the start of a reply is therefore trained; the ids stay the template's own.

Cost, measured on 20k real conversations (Qwen2.5, 2 busy cores): the full render is ~1.5 s, prefix
renders ~1.3 s (one per trained turn, shorter texts), span planning ~0.3 s, batch encoding as in the
floor; `benchmarks/bench_encode.py` reports the whole-process ratio against `floor.py`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from sftdata.chat import control
from sftdata.chat.jinja_env import compile_template, render
from sftdata.chat.options import ControlTokens, Masking, MaskOptions
from sftdata.chat.spans import Plan, plan_spans
from sftdata.chat.template import TemplateSource, load_template_source, profile_template
from sftdata.errors import TemplateError
from sftdata.reasons import Reason
from sftdata.records import Conversation, Problem, Role
from sftdata.tokens import Example

Result = Example | list[Problem]

CHUNK = 256
"""Records per encode call inside a batch (rendering of the next chunk overlaps encoding of this one)."""


@functools.lru_cache(maxsize=8)
def load_tokenizer(path: str) -> Any:
    """`AutoTokenizer.from_pretrained`, once per process (a 262k-vocabulary tokenizer takes seconds to load)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


class ChatEncoder:
    """A tokenizer + template + options, ready to encode batches (build it with `ChatEncoder.load`)."""

    def __init__(self, tokenizer: Any, options: MaskOptions, source: TemplateSource,
                 tokenizer_ref: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.options = options
        self.source = source
        self.template_text: str | None = source.text
        self._ref = tokenizer_ref
        try:
            self._template = compile_template(source.text, options.date)
        except Exception as err:  # noqa: BLE001 - any parse failure is a config error naming the template
            raise TemplateError(f"{source.origin} does not compile: {err}") from err
        self._base_vars: dict[str, Any] = {**tokenizer.special_tokens_map, **self.hf_kwargs}
        self._context_base = {**self._template.globals, **self._base_vars}
        added = [t.content for t in tokenizer.added_tokens_decoder.values()]
        self.profile = profile_template(self._template, self._context_base, added, source.origin)
        self.eot_token_ids: tuple[int, ...] = tuple(
            i for i in (tokenizer.convert_tokens_to_ids(t) for t in self.profile.eot_texts)
            if isinstance(i, int) and i != tokenizer.unk_token_id)
        self._control_re = control.control_regex(control.control_tokens(tokenizer, source.text))
        self._split_re = control.markers_regex(tokenizer)
        # `in` per token is ~5x faster than one regex alternation over long text (measured on Qwen2.5)
        self._scan_tokens = (*control.control_tokens(tokenizer, source.text), control.MARK_START, control.MARK_END)

    @classmethod
    def load(cls, tokenizer: str | Path, options: MaskOptions | None = None) -> ChatEncoder:
        """Load a Hugging Face tokenizer (folder or hub id) and its template; cheap enough for each worker."""
        options = options or MaskOptions()
        try:
            tok = load_tokenizer(str(tokenizer))
        except (OSError, ValueError) as err:
            raise TemplateError(f"cannot load tokenizer {tokenizer}: {err}. Pass a folder with tokenizer.json or "
                                "a hub id that is in the local cache (HF_HUB_OFFLINE=1)") from err
        source = load_template_source(tok, str(tokenizer), options.chat_template, options.prompt_format)
        return cls(tok, options, source, str(tokenizer))

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as (tokenizer path, options) so process pools and Ray workers rebuild it."""
        if self._ref is None:
            raise TypeError("a ChatEncoder built from a tokenizer object cannot be pickled; use ChatEncoder.load")
        return (ChatEncoder.load, (self._ref, self.options))

    @property
    def hf_kwargs(self) -> dict[str, Any]:
        """Template kwargs that make `apply_chat_template` render what this encoder renders."""
        kwargs = dict(self.options.template_kwargs)
        if self.options.date is not None:
            kwargs.setdefault("date_string", self.options.date)
        return kwargs

    def _has_control_text(self, text: str) -> bool:
        return any(t in text for t in self._scan_tokens)

    def template_messages(self, conv: Conversation) -> list[dict[str, Any]]:
        """The messages exactly as the template sees them (reasoning aliased as transformers does)."""
        out = []
        for m in conv.to_template_messages():
            if m.get("reasoning") is not None:
                r = m["reasoning"]
                m = {"thinking": r, **m, "reasoning_content": r}
            if self.profile.string_arguments and m.get("tool_calls"):
                m["tool_calls"] = [{**c, "function": {**c["function"], "arguments": json.dumps(
                    c["function"].get("arguments", {}), ensure_ascii=False)}} for c in m["tool_calls"]]
            out.append(m)
        return out

    def _render(self, messages: list[dict[str, Any]], tools: Any, generation_prompt: bool) -> str:
        variables = self._context_base.copy()
        variables.update(messages=messages, tools=tools, documents=None, add_generation_prompt=generation_prompt)
        return render(self._template, variables)

    def _trained(self, conv: Conversation) -> list[bool | None]:
        masking = self.options.masking
        last = max((i for i, m in enumerate(conv.messages) if m.role is Role.assistant), default=-1)
        flags: list[bool | None] = []
        for i, m in enumerate(conv.messages):
            if m.train is not None:
                flags.append(m.train)
            elif m.role is Role.assistant and masking is Masking.assistant:
                flags.append(True)
            elif m.role is Role.assistant and masking is Masking.last:
                flags.append(True if i == last else None)
            else:
                flags.append(None)
        return flags

    def encode_batch(self, conversations: Sequence[Conversation]) -> list[Result]:
        """Encode a batch: an `Example` per accepted conversation, a list of `Problem`s per reject.

        The batch is cut into chunks of `CHUNK` records; the Rust tokenizer encodes chunk j in a helper
        thread (it releases the GIL) while Python renders and plans chunk j + 1, so rendering hides behind
        encoding instead of adding to it. Results do not depend on the chunking.
        """
        results: list[Result | None] = [None] * len(conversations)
        pending: Future | None = None
        with ThreadPoolExecutor(max_workers=1) as pool:
            for lo in range(0, len(conversations), CHUNK):
                idx, texts, plans = self._prepare_chunk(conversations, lo, min(lo + CHUNK, len(conversations)),
                                                        results)
                future = pool.submit(self.tokenizer.backend_tokenizer.encode_batch, texts, add_special_tokens=False)
                if pending is not None:
                    self._finish_chunk(conversations, *pending.result(), results)
                pending = _Chained(future, idx, plans)
            if pending is not None:
                self._finish_chunk(conversations, *pending.result(), results)
        return results  # type: ignore[return-value]

    def _prepare_chunk(self, conversations: Sequence[Conversation], lo: int, hi: int, results: list[Any]
                       ) -> tuple[list[int], list[str], list[Plan]]:
        idx: list[int] = []
        texts: list[str] = []
        plans: list[Plan] = []
        for n in range(lo, hi):
            conv = conversations[n]
            prepared = self._prepare(conv)
            if isinstance(prepared, list):
                results[n] = prepared
                continue
            text, plan, marked = prepared
            if marked is None:
                idx.append(n)
                texts.append(text)
                plans.append(plan)
            else:
                results[n] = self._finish_marked(conv, marked, plan)
        return idx, texts, plans

    def _finish_chunk(self, conversations: Sequence[Conversation], idx: list[int], plans: list[Plan],
                      encodings: list[Any], results: list[Any]) -> None:
        for n, plan, enc in zip(idx, plans, encodings, strict=True):
            results[n] = self._finish(conversations[n], enc.ids, enc.char_to_token, plan)

        return results  # type: ignore[return-value]

    def _prepare(self, conv: Conversation) -> tuple[str, Plan, str | None] | list[Problem]:
        """Render and plan one conversation: (clean text, plan, marked text or None) or problems."""
        plain_messages = messages = self.template_messages(conv)
        tools = conv.tools
        mode = self.options.control_tokens
        marked = False
        if mode is not ControlTokens.allow and self._has_control_text(_user_text(conv)):
            if mode is ControlTokens.reject:
                hit = next(self._control_re.search(s) for s in control.strings_in([messages, tools])
                           if self._control_re.search(s))
                return [Problem(Reason.control_token_in_content, f"message text spells the control token "
                                f"{hit.group(0)!r}; with control_tokens=reject such records are not used")]
            messages, tools = control.mark(messages, self._control_re), control.mark(tools, self._control_re)
            marked = True
        trained = self._trained(conv)
        try:
            full = self._render(messages, tools, False)
            prefixes = {k: self._render(messages[:k], tools, True) for k, flag in enumerate(trained)
                        if flag and messages[k]["role"] == "assistant"}
        except Exception as err:  # noqa: BLE001 - untrusted template code: every failure is this record's reject
            where = f"record {conv.id!r}" if conv.id is not None else "this record"
            return [Problem(Reason.template_error, f"{self.source.origin} failed on {where}: "
                            f"{type(err).__name__}: {err}")]
        text = _unmark(full) if marked else full
        if marked:
            prefixes = {k: _unmark(p) for k, p in prefixes.items()}
        plan = plan_spans(text, plain_messages, trained, prefixes, self.profile.eot_texts,
                          calls_rendered=self.profile.renders_tool_calls, train_eot=self.options.train_eot,
                          train_reasoning=self.options.train_reasoning,
                          everything=self.options.masking is Masking.all)
        if isinstance(plan, Problem):
            return [plan]
        return text, plan, (full if marked else None)

    def _finish_marked(self, conv: Conversation, marked: str, plan: Plan) -> Result:
        try:
            _, ids, offsets = control.encode_marked(self.tokenizer, marked, self._split_re)
        except ValueError as err:
            return [Problem(Reason.control_token_in_content, str(err))]
        reference = control.transformers_marked_ids(self.tokenizer, marked)
        if reference is not None and reference != ids:  # a bug guard: rare records, so the extra encode is cheap
            return [Problem(Reason.tokenizer_mismatch, "piecewise encoding of sanitized control-token text differs "
                            "from transformers' encode_marked_chat")]
        starts = np.fromiter((a for a, _ in offsets), dtype=np.int64, count=len(offsets))
        ends = np.fromiter((b for _, b in offsets), dtype=np.int64, count=len(offsets))

        def char_to_token(pos: int) -> int | None:
            i = int(np.searchsorted(ends, pos, side="right"))
            return i if i < len(offsets) and starts[i] <= pos < ends[i] else None

        return self._finish(conv, ids, char_to_token, plan)

    def _finish(self, conv: Conversation, ids: Sequence[int], char_to_token: Any, plan: Plan) -> Result:
        input_ids = np.asarray(ids, dtype=np.int32)
        n = len(input_ids)
        supervised = np.zeros(n, dtype=bool)
        if plan.everything:
            supervised[1:] = True
        for span in plan.spans:
            rng = _token_range(char_to_token, span.start, span.end)
            if rng is None:
                continue
            supervised[rng[0]:rng[1]] = True
            if span.eot is not None and self.eot_token_ids:
                last = rng[1] - 1
                if _token_range(char_to_token, *span.eot) != (last, last + 1) or int(input_ids[last]) not in \
                        self.eot_token_ids:
                    return [Problem(Reason.mask_methods_disagree, f"the end-of-turn text at characters "
                                    f"{span.eot[0]}-{span.eot[1]} is not the end-of-turn control token")]
        for a, b in plan.exclude:
            rng = _token_range(char_to_token, a, b)
            if rng is not None:
                supervised[rng[0]:rng[1]] = False
        if not supervised.any():
            return [Problem(Reason.no_supervised_tokens, "after masking no token is in the loss")]
        return Example(input_ids=input_ids, supervised=supervised)


class _Chained:
    """A chunk in flight: its encode future and what is needed to finish it."""

    def __init__(self, future: Future, idx: list[int], plans: list[Plan]) -> None:
        self.future, self.idx, self.plans = future, idx, plans

    def result(self) -> tuple[list[int], list[Plan], list[Any]]:
        return self.idx, self.plans, self.future.result()


def _user_text(conv: Conversation) -> str:
    """All user-supplied text of a record in one string, for one control-token scan (a fast pre-check)."""
    parts = []
    for m in conv.messages:
        parts.append(m.content)
        if m.reasoning:
            parts.append(m.reasoning)
        if m.name:
            parts.append(m.name)
        if m.tool_calls:
            parts.append(json.dumps([c.model_dump(mode="json") for c in m.tool_calls], ensure_ascii=False))
    if conv.tools:
        parts.append(json.dumps(conv.tools, ensure_ascii=False))
    return "\x00".join(parts)


def _unmark(text: str) -> str:
    return text.replace(control.MARK_START, "").replace(control.MARK_END, "")


def _token_range(char_to_token: Any, start: int, end: int) -> tuple[int, int] | None:
    """Tokens holding any character of [start, end) (the straddling convention), as [first, last + 1)."""
    first = last = None
    for pos in range(start, end):
        first = char_to_token(pos)
        if first is not None:
            break
    for pos in range(end - 1, start - 1, -1):
        last = char_to_token(pos)
        if last is not None:
            break
    if first is None or last is None:
        return None
    return first, last + 1


def encode(conversations: Sequence[Conversation], tokenizer: str | Path, options: MaskOptions | None = None
           ) -> list[Result]:
    """Convenience: load an encoder and encode one batch."""
    return ChatEncoder.load(tokenizer, options).encode_batch(conversations)
