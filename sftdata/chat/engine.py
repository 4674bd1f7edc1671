"""The loss-mask engine: conversations -> (template ids, supervised mask), proven, in batches.

For each conversation: render it once with the compiled template (the text `apply_chat_template`
would tokenize), render a prefix `messages[:k]` with `add_generation_prompt=True` for every trained
assistant turn k, derive the supervised character spans (`spans.plan_spans`: prefix renders and
located replies must agree), encode the full renders a chunk at a time in one call to the Rust
tokenizer (in a helper thread, while the next chunk renders: `encode_stream`), and map span edges to
tokens with `char_to_token` (no Python loop over tokens): from the tokens' byte lengths where the
tokens tile the text (`tiling.py`, the encode then skips its offsets), else the encoding's own. The ids are
exactly `tokenizer.apply_chat_template(messages, tools=tools, tokenize=True, **hf_kwargs)["input_ids"]`
(with `sanitize_control_tokens=True` under the default `control_tokens: sanitize`), for the messages
`template_messages(conv)` returns.

Conservation (`conservation.py`, issue 10): every text of the record must be in the render. Content goes
to the template as the user wrote it; a reasoning field becomes a leading think block where the template
has no reasoning slot (`reasoning_field: inline`), and a leading think block moves into the slot only where
the template has one and would drop it from content. A supervised turn whose thought the full render loses
(Qwen3 and DeepSeek V3 drop earlier thoughts) gets its own document `ID#K` (`reasoning_history: split`):
the conversation up to turn K rendered with K last, only K supervised. Where even that render strips the
thought and the generation prompt opens a think block (DeepSeek-R1 style: `<｜Assistant｜><think>\n`), the
document is the generation prompt followed by what the model writes: the thought, `</think>`, the reply
and the end-of-turn (`_r1_document`). Any other loss is a `template_drops_*` reject unless `allow_drop`
names it (counted); a thought of an unsupervised turn dropped as at inference is counted, not rejected.

Straddling tokens (one convention, the one Hugging Face's assistant mask uses): a token is supervised
when it holds at least one character of a supervised span. A token that merges the end of a header
with the start of a reply is therefore trained; the ids stay the template's own.

Cost, measured on 20k real conversations (Qwen2.5, idle 2-core machine, `bench_prepare.py --profile`):
the full renders ~0.3 s, prefix renders ~0.4 s (one per trained turn), span planning ~0.25 s, masks
~0.5 s; the Rust encode (same ids as the floor's, without offsets) runs beside them in the helper thread
and is most of the run. `benchmarks/bench_prepare.py` reports whole-process ratios against `floor.py`.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from sftdata.chat import control
from sftdata.chat.conservation import Haystack, missing_texts
from sftdata.chat.jinja_env import TemplateLimitError, compile_template, render
from sftdata.chat.options import ControlTokens, Masking, MaskOptions, ReasoningField, ReasoningHistory
from sftdata.chat.spans import Plan, plan_spans
from sftdata.chat.template import TemplateSource, load_template_source, profile_template
from sftdata.chat.tiling import Tiling
from sftdata.chat.tokenizer import load_chat_tokenizer, load_tokenizer  # noqa: F401 - load_tokenizer re-exported
from sftdata.errors import TemplateError
from sftdata.reasons import Reason
from sftdata.records import Conversation, Problem, Role, split_think
from sftdata.tokens import Encoded, Example

Result = Example | Encoded | list[Problem]
"""Per record: one plain document, several documents or counted drops (`Encoded`), or every problem."""

_REASONING_KEYS = ("reasoning", "reasoning_content", "thinking")


@dataclass
class _Doc:
    """One document of a record, rendered and planned, waiting for its ids."""

    key: int | None
    text: str
    plan: Plan
    marked: str | None = None
    """The render with control-token markers, when the record needs the sanitizing encode."""


@dataclass
class _Pending:
    """A record's documents while their encodings are in flight."""

    docs: list[_Doc]
    counts: dict[str, int]
    done: list[Example | list[Problem] | None] = field(default_factory=list)

    def result(self) -> Result:
        for d in self.done:
            if isinstance(d, list):
                return d
        examples = tuple(d for d in self.done if isinstance(d, Example))
        if len(examples) == 1 and examples[0].key is None and not self.counts:
            return examples[0]
        return Encoded(examples, dict(sorted(self.counts.items())))

CHUNK = 1024
"""Records per encode call (rendering of the next chunk overlaps encoding of this one, across batches)."""


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
            self._template = compile_template(source.text, options.date, options.template_limits)
        except Exception as err:  # noqa: BLE001 - any parse failure is a config error naming the template
            raise TemplateError(f"{source.origin} does not compile: {err}") from err
        self._base_vars: dict[str, Any] = {**tokenizer.special_tokens_map, **self.hf_kwargs}
        self._context_base = {**self._template.globals, **self._base_vars}
        added = [t.content for t in tokenizer.added_tokens_decoder.values()]
        self.profile = profile_template(self._template, self._context_base, added, source.origin)
        self.eot_token_ids: tuple[int, ...] = tuple(
            i for i in (tokenizer.convert_tokens_to_ids(t) for t in self.profile.eot_texts)
            if isinstance(i, int) and i != tokenizer.unk_token_id)
        self._tiling = Tiling.of(tokenizer.backend_tokenizer)
        self._control_re = control.control_regex(control.control_tokens(tokenizer, source.text))
        self._split_re = control.markers_regex(tokenizer)
        # `in` per token is ~5x faster than one regex alternation over long text (measured on Qwen2.5)
        self._scan_tokens = (*control.control_tokens(tokenizer, source.text), control.MARK_START, control.MARK_END)

    @classmethod
    def load(cls, tokenizer: str | Path, options: MaskOptions | None = None) -> ChatEncoder:
        """Load a Hugging Face tokenizer (folder or hub id) and its template; cheap enough for each worker.

        A folder with `tokenizer.json` loads without transformers (`sftdata.chat.tokenizer`); others fall back.
        """
        options = options or MaskOptions()
        try:
            tok = load_chat_tokenizer(str(tokenizer))
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
        """The messages exactly as the template sees them.

        Content as written; a reasoning field aliased as `reasoning_content` / `thinking` where the template
        has a reasoning slot, else inlined as a leading `<think>` block (`reasoning_field: inline`). Where the
        template renders reasoning itself, a leading think block moves into the slot: Qwen3 splits it off the
        content the same way, so the render is the same, and the tags stay the template's own control tokens
        instead of user text that `sanitize` would encode as plain text.
        """
        profile = self.profile
        out = []
        for m in conv.to_template_messages():
            r = m.get("reasoning")
            if r is not None and profile.reasoning_slot:
                m = {"thinking": r, **m, "reasoning_content": r}
            elif r is not None:
                m = {k: v for k, v in m.items() if k != "reasoning"}
                if r.strip():
                    m["content"] = f"<think>\n{r}\n</think>\n\n{m.get('content', '')}"
            elif profile.reasoning_slot and m["role"] == "assistant" and "<think>" in m.get("content", ""):
                answer, thought = split_think(m["content"])
                if thought is not None:
                    m = {**m, "content": answer, "reasoning": thought, "thinking": thought,
                         "reasoning_content": thought}
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
        """Encode a batch: per conversation an `Example`, an `Encoded` (several documents or counted drops), or
        the list of `Problem`s that reject it (`encode_stream` of one batch)."""
        return next(self.encode_stream([conversations]))

    def encode_stream(self, batches: Iterable[Sequence[Conversation]]) -> Iterator[list[Result]]:
        """`encode_batch` of each batch, in order, with one encode pipeline running through all of them.

        The records are cut into chunks of `CHUNK`; the Rust tokenizer encodes chunk j in a helper thread
        (it releases the GIL) while Python renders and plans chunk j + 1, so rendering hides behind
        encoding instead of adding to it. The chunks run across batch boundaries: the next batch is taken
        from `batches` (read and validated, when that is a lazy stream) while the tokenizer still encodes
        this one, so the tokenizer is never idle between batches. A batch is yielded as soon as its last
        record is done. Results do not depend on the chunking.
        """
        open_batches: deque[_Open] = deque()

        def records() -> Iterator[tuple[_Open, int]]:
            for conversations in batches:
                batch = _Open(conversations, [None] * len(conversations), len(conversations))
                open_batches.append(batch)
                yield from ((batch, n) for n in range(len(conversations)))

        def done() -> Iterator[list[Result]]:
            while open_batches and open_batches[0].left == 0:
                yield open_batches.popleft().results  # type: ignore[misc]

        stream = records()
        pending: _Chained | None = None
        with ThreadPoolExecutor(max_workers=1) as pool:
            while chunk := list(islice(stream, CHUNK)):
                chained = self._prepare_chunk(chunk)
                chained.future = pool.submit(self._encode_texts, chained.texts)
                if pending is not None:
                    self._finish_chunk(pending)
                yield from done()
                pending = chained
            if pending is not None:
                self._finish_chunk(pending)
        yield from done()

    def _prepare_chunk(self, chunk: list[tuple[_Open, int]]) -> _Chained:
        chained = _Chained()
        for batch, n in chunk:
            conv = batch.conversations[n]
            prepared = self._prepare(conv)
            if isinstance(prepared, list):
                batch.set(n, prepared)
                continue
            prepared.done = [None] * len(prepared.docs)
            chained.records.append((batch, n, prepared))
            for j, doc in enumerate(prepared.docs):
                if doc.marked is None:
                    chained.slots.append((prepared, conv, j))
                    chained.texts.append(doc.text)
                else:
                    prepared.done[j] = self._finish_marked(conv, doc)
        return chained

    def _encode_texts(self, texts: list[str]) -> list[Any]:
        """The Rust batch encode; without offsets where the tokens tile the text (`tiling.py`)."""
        backend = self.tokenizer.backend_tokenizer
        if self._tiling is None:
            return backend.encode_batch(texts, add_special_tokens=False)
        self._tiling.byte_lengths  # noqa: B018 - built here, in the encode thread, on the first chunk
        return backend.encode_batch_fast(texts, add_special_tokens=False)

    def _finish_chunk(self, chained: _Chained) -> None:
        tiling = self._tiling
        for (pending, conv, j), enc in zip(chained.slots, chained.future.result(), strict=True):
            doc = pending.docs[j]
            if tiling is None:
                pending.done[j] = self._finish(conv, enc.ids, enc.char_to_token, doc)
                continue
            ids = np.asarray(enc.ids, dtype=np.int32)
            char_to_token = tiling.char_to_token(doc.text, ids)
            if char_to_token is None:  # this text is not tiled (not NFC, ...): its offsets, from one more encode
                enc = self.tokenizer.backend_tokenizer.encode(doc.text, add_special_tokens=False)
                ids, char_to_token = enc.ids, enc.char_to_token
            pending.done[j] = self._finish(conv, ids, char_to_token, doc)
        for batch, n, pending in chained.records:
            batch.set(n, pending.result())

    def _prepare(self, conv: Conversation) -> _Pending | list[Problem]:
        """Render, check conservation and plan one conversation's documents (or say why it cannot be used)."""
        options = self.options
        if options.reasoning_field is ReasoningField.reject and not self.profile.reasoning_slot:
            for i, m in enumerate(conv.messages):
                if m.reasoning and m.reasoning.strip():
                    return [Problem(Reason.template_drops_reasoning, f"turn {i} has a reasoning field and "
                                    f"{self.source.origin} has no reasoning slot; with reasoning_field=reject such "
                                    "records are not used (--reasoning-field inline writes it as a leading "
                                    "<think> block)", f"messages[{i}].reasoning")]
        plain_messages = messages = self.template_messages(conv)
        view = _located(plain_messages)
        tools = conv.tools
        mode = options.control_tokens
        marked = False
        if (mode is not ControlTokens.allow and self._has_control_text(_user_text(conv))
                and control.needs_marking([messages, tools], self._control_re)):
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
            return [self._template_error(conv, err)]
        text = _unmark(full) if marked else full
        clean = {k: _unmark(p) for k, p in prefixes.items()} if marked else prefixes
        doc = Haystack(text)
        counts: dict[str, int] = {}
        lost = missing_texts(conv, doc)
        if lost:
            refused = [t for t in lost if t.kind not in options.allow_drop]
            if refused:
                return [Problem(Reason(f"template_drops_{t.kind}"), f"{self.source.origin} does not render "
                                f"{t.path} ({_short(t.text)}); the document would miss it. Pass --allow-drop "
                                f"{t.kind} to accept this drop knowingly (it is counted in the manifest)", t.path)
                        for t in _first_per_kind(refused)]
            for t in lost:
                counts[f"allowed_drop.{t.kind}"] = counts.get(f"allowed_drop.{t.kind}", 0) + 1
        splits = self._reasoning_splits(view, trained, doc, counts)
        if isinstance(splits, Problem):
            return [splits]
        docs: list[_Doc] = []
        if options.masking is Masking.all or any(trained):
            plan = self._plan(text, view, trained, {k: p for k, p in clean.items() if trained[k]})
            if isinstance(plan, Problem):
                return [plan]
            docs.append(_Doc(None, text, plan, full if marked else None))
        for k in splits:
            built = self._turn_document(conv, messages, view, tools, k, prefixes[k], clean[k], marked)
            if isinstance(built, Problem):
                return [built]
            docs.append(built)
        return _Pending(docs, counts)

    def _reasoning_splits(self, view: list[dict[str, Any]], trained: list[bool | None], doc: Haystack,
                          counts: dict[str, int]) -> list[int] | Problem:
        """Turns whose thought the full render loses and that need their own document (updates `trained`)."""
        splits: list[int] = []
        if not any("reasoning_content" in m for m in view):  # the common case: no thought anywhere
            return splits
        last = max((i for i, m in enumerate(view) if m.get("role") == "assistant"), default=-1)
        history = self.options.reasoning_history
        for i, m in enumerate(view):
            thought = m.get("reasoning_content") if m.get("role") == "assistant" else None
            if not thought or not thought.strip() or doc.has(thought):
                continue
            if not trained[i]:  # context, dropped exactly as at inference: counted, never silent
                counts["context_drop.reasoning"] = counts.get("context_drop.reasoning", 0) + 1
                continue
            if i != last and history is ReasoningHistory.reject:
                return Problem(Reason.template_drops_reasoning, f"{self.source.origin} drops the reasoning of turn "
                               f"{i} (it keeps only later turns' thoughts); with reasoning_history=reject such "
                               "records are not used (--reasoning-history split trains that turn in its own "
                               "document)", f"messages[{i}]")
            trained[i] = None
            if i != last and history is ReasoningHistory.last:
                counts["context_drop.reasoning"] = counts.get("context_drop.reasoning", 0) + 1
                continue
            splits.append(i)
        return splits

    def _plan(self, text: str, view: list[dict[str, Any]], trained: list[bool | None],
              prefixes: dict[int, str]) -> Plan | Problem:
        o = self.options
        return plan_spans(text, view, trained, prefixes, self.profile.eot_texts,
                          calls_rendered=self.profile.renders_tool_calls, train_eot=o.train_eot,
                          train_reasoning=o.train_reasoning, everything=o.masking is Masking.all)

    def _turn_document(self, conv: Conversation, messages: list[dict[str, Any]], view: list[dict[str, Any]],
                       tools: Any, k: int, prefix: str, clean_prefix: str, marked: bool) -> _Doc | Problem:
        """Document `ID#K`: the conversation up to turn K rendered with K last, only K supervised; where that
        render strips the thought too, the DeepSeek-R1 form (generation prompt + what the model writes)."""
        thought = view[k]["reasoning_content"]
        try:
            sub = self._render(messages[:k + 1], tools, False)
        except Exception as err:  # noqa: BLE001
            return self._template_error(conv, err)
        text = _unmark(sub) if marked else sub
        if not Haystack(text).has(thought):
            built = self._r1_document(conv, messages, view, tools, k, prefix, marked)
            if isinstance(built, Problem):
                return built
            sub = built
            text = _unmark(sub) if marked else sub
        only = [None] * (k + 1)
        only[k] = True
        o = self.options
        plan = plan_spans(text, view[:k + 1], only, {k: clean_prefix}, self.profile.eot_texts,
                          calls_rendered=self.profile.renders_tool_calls, train_eot=o.train_eot,
                          train_reasoning=o.train_reasoning)
        if isinstance(plan, Problem):
            return plan
        return _Doc(k, text, plan, sub if marked else None)

    def _r1_document(self, conv: Conversation, messages: list[dict[str, Any]], view: list[dict[str, Any]],
                     tools: Any, k: int, prefix: str, marked: bool) -> str | Problem:
        """Generation prompt (ending in the think opener) + thought + closing tag + the reply as rendered."""
        opener = self.profile.think_opener
        if opener is None or not prefix.endswith(opener):
            return Problem(Reason.template_drops_reasoning, f"{self.source.origin} drops the reasoning of turn {k} "
                           "even when it is the last turn, and its generation prompt opens no think block",
                           f"messages[{k}]")
        reply = {key: v for key, v in messages[k].items() if key not in _REASONING_KEYS}
        answer = view[k].get("content", "")
        reply["content"] = control.mark(answer, self._control_re) if marked else answer
        try:
            rendered = self._render([*messages[:k], reply], tools, False)
        except Exception as err:  # noqa: BLE001
            return self._template_error(conv, err)
        head = prefix[:-len(opener)]
        if not rendered.startswith(head):
            return Problem(Reason.template_drops_reasoning, f"{self.source.origin} drops the reasoning of turn {k}, "
                           "and its render with that turn last does not continue its generation prompt",
                           f"messages[{k}]")
        thought = view[k]["reasoning_content"]
        if marked:
            thought = control.mark(thought, self._control_re)
        return f"{prefix}{thought}\n{self.profile.think_close}\n\n{rendered[len(head):]}"

    def _template_error(self, conv: Conversation, err: Exception) -> Problem:
        where = f"record {conv.id!r}" if conv.id is not None else "this record"
        if isinstance(err, TemplateLimitError):  # a bound, not a bug of the template: name the limit to raise
            return Problem(Reason.template_limit, f"{self.source.origin} on {where}: {err}; raise "
                           f"`template_limits.{err.limit}` only for a template you trust")
        return Problem(Reason.template_error, f"{self.source.origin} failed on {where}: {type(err).__name__}: {err}")

    def _finish_marked(self, conv: Conversation, doc: _Doc) -> Example | list[Problem]:
        marked = doc.marked
        assert marked is not None
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

        return self._finish(conv, ids, char_to_token, doc)

    def _finish(self, conv: Conversation, ids: Sequence[int], char_to_token: Any, doc: _Doc) -> Example | list[Problem]:
        plan = doc.plan
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
        return Example(input_ids=input_ids, supervised=supervised, key=doc.key)


@dataclass
class _Open:
    """A batch of `encode_stream` whose results are still coming in."""

    conversations: Sequence[Conversation]
    results: list[Result | None]
    left: int
    """Records without a result yet."""

    def set(self, n: int, result: Result) -> None:
        self.results[n] = result
        self.left -= 1


@dataclass
class _Chained:
    """A chunk in flight: its records' documents, the texts sent to the encoder and where each one goes."""

    records: list[tuple[_Open, int, _Pending]] = field(default_factory=list)
    """(batch, record index in it, its documents) of each record that has documents to finish."""
    slots: list[tuple[_Pending, Conversation, int]] = field(default_factory=list)
    """(record's documents, record, document index) of each text."""
    texts: list[str] = field(default_factory=list)
    future: Future | None = None


def _located(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages as the span planner locates them: a leading think block of a reply taken as its thought."""
    out = []
    for m in messages:
        content = m.get("content")
        if m.get("role") == "assistant" and isinstance(content, str) and "<think>" in content:
            answer, thought = split_think(content)
            if thought is not None:
                m = {**m, "content": answer, "reasoning_content": thought}
        out.append(m)
    return out


def _short(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _first_per_kind(texts: list[Any]) -> list[Any]:
    seen: dict[str, Any] = {}
    for t in texts:
        seen.setdefault(t.kind, t)
    return list(seen.values())


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
    after = char_to_token(end)  # a character split over several byte tokens maps to its first: take them all
    if after is not None and after > last + 1:
        last = after - 1
    return first, last + 1


def encode(conversations: Sequence[Conversation], tokenizer: str | Path, options: MaskOptions | None = None
           ) -> list[Result]:
    """Convenience: load an encoder and encode one batch."""
    return ChatEncoder.load(tokenizer, options).encode_batch(conversations)
