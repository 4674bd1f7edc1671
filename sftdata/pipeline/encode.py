"""The encode step: validated records in, compact token arrays and encode rejects out (`encode_stage`).

`encode_stage` is a pure function of its inputs plus the (cached, per process) encoder, so a batch gives
the same result in the main process, a spawned worker or a Ray task. Results are columnar
(`EncodedBatch`: one flat int32 array of ids and one of labels for all documents of the batch,
8 bytes per token) rather than one `Example` per document: that is what keeps a 32k-document
packing window near 50 MB and makes shipping a batch between processes one pickle of a few arrays.

Length policy (`cut_example`) lives here because it works on `Example` arrays: `reject` turns a
document over `max_length` into a `too_long` reject; `truncate` keeps the first `max_length` tokens
and then drops the unsupervised tail, so the document ends on a supervised token (the reply is cut
short, never the prompt kept alone); if no supervised token survives it is `prompt_too_long`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sftdata.chat.options import MaskOptions
from sftdata.reasons import Reason
from sftdata.records import Conversation, Problem, Record, Reject
from sftdata.tokens import IGNORE_INDEX, Encoded, Example, document_id, documents_of


@dataclass(frozen=True)
class StageOptions:
    """What a worker needs to encode (picklable; the encoder is loaded from it once per process)."""

    tokenizer: str
    mask: MaskOptions
    max_length: int
    too_long: str = "reject"
    encoder_factory: str = "sftdata.chat.engine:ChatEncoder.load"
    """`module:callable` that builds the encoder from (tokenizer, MaskOptions); tests swap in fakes."""


@dataclass
class EncodedBatch:
    """Encoded documents of one batch of records, plus the records' rejects, in record order.

    `outcome[k]` is the index of record k's first document in the arrays, or -1 when record k was rejected
    (then `rejects[k]` holds the Reject). A record may yield several documents (issue 10: its own, then
    `ID#K` documents for turns whose reasoning the template drops from history): they are contiguous,
    `1 + extra_docs.get(k, 0)` of them.
    """

    input_ids: np.ndarray
    """int32, every document's ids back to back."""
    labels: np.ndarray
    """int32, aligned with `input_ids`; -100 where not supervised (a document's first label is set to -100 by
    `sftdata.pipeline.write.build_rows`, the step that sees where documents start in a row)."""
    lengths: np.ndarray
    """int32 tokens per document."""
    doc_ids: list[str]
    truncated: list[bool]
    outcome: list[int]
    rejects: dict[int, Reject] = field(default_factory=dict)
    extra_docs: dict[int, int] = field(default_factory=dict)
    """Record k -> documents it has after its first (absent: exactly one)."""
    counts: dict[int, dict[str, int]] = field(default_factory=dict)
    """Record k -> what the manifest counts for it (`allowed_drop.KIND`, `context_drop.reasoning`,
    `split_docs`, `split_tokens`); absent when nothing."""

    def docs_of(self, k: int) -> range:
        """Indices of record k's documents in the arrays (empty when it was rejected)."""
        first = self.outcome[k]
        return range(0) if first < 0 else range(first, first + 1 + self.extra_docs.get(k, 0))

    @property
    def offsets(self) -> np.ndarray:
        """int64 start of each document in the flat arrays (plus the end)."""
        return np.concatenate([[0], np.cumsum(self.lengths, dtype=np.int64)])


def cut_example(example: Example, max_length: int, policy: str) -> Example | Problem:
    """Apply the too-long policy to one document (see the module docstring)."""
    n = len(example)
    if n <= max_length:
        return example
    if policy != "truncate":
        return Problem(Reason.too_long, f"document has {n:,} tokens, more than max_length {max_length:,}; "
                       "raise --max-length or use --too-long truncate")
    supervised = example.supervised[:max_length]
    hits = np.flatnonzero(supervised)
    if hits.size == 0 or hits[-1] == 0:
        return Problem(Reason.prompt_too_long, f"no reply starts within the first {max_length:,} tokens "
                       f"(document has {n:,}); raise --max-length")
    end = int(hits[-1]) + 1
    return Example(example.input_ids[:end], example.supervised[:end].copy(), truncated=True, key=example.key)


_ENCODERS: dict[tuple, Any] = {}


def load_factory(spec: str) -> Callable[..., Any]:
    """Resolve `module:attr.attr` to the callable it names."""
    import importlib

    module, _, attr = spec.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def get_encoder(options: StageOptions) -> Any:
    """The encoder for these options, loaded once per process (workers keep it between batches)."""
    key = (options.encoder_factory, options.tokenizer, options.mask.model_dump_json())
    if key not in _ENCODERS:
        _ENCODERS[key] = load_factory(options.encoder_factory)(options.tokenizer, options.mask)
    return _ENCODERS[key]


def encode_stage(records: list[Record], options: StageOptions, encoder: Any = None) -> EncodedBatch:
    """Render, tokenize, mask and cut a batch of validated records.

    Args:
        records: validated records (their order is kept).
        options: tokenizer, mask options and length policy.
        encoder: an already loaded encoder; by default the per-process cached one.
    """
    encoder = encoder if encoder is not None else get_encoder(options)
    results = encoder.encode_batch([r.conversation for r in records]) if records else []
    return _assemble(records, results, options)


def encode_stream(batches: Iterable[list[Record]], options: StageOptions, encoder: Any = None
                  ) -> Iterator[EncodedBatch]:
    """`encode_stage` of each batch, in order, through one encode pipeline (`ChatEncoder.encode_stream`):
    the tokenizer encodes one batch while the next is read, validated and rendered, so it does not wait
    for the batch boundaries. Each batch is taken from `batches` only when the pipeline needs it.
    """
    encoder = encoder if encoder is not None else get_encoder(options)
    if not hasattr(encoder, "encode_stream"):  # an encoder of batches only (tests' fakes)
        yield from (encode_stage(records, options, encoder) for records in batches)
        return
    held: deque[list[Record]] = deque()

    def conversations() -> Iterator[list[Conversation]]:
        for records in batches:
            held.append(records)
            yield [r.conversation for r in records]

    for results in encoder.encode_stream(conversations()):
        yield _assemble(held.popleft(), results, options)


def _assemble(records: list[Record], results: list[Any], options: StageOptions) -> EncodedBatch:
    """One batch's per-record results -> the columnar `EncodedBatch` (length policy applied)."""
    ids_parts: list[np.ndarray] = []
    sup_parts: list[np.ndarray] = []
    lengths: list[int] = []
    doc_ids: list[str] = []
    truncated: list[bool] = []
    outcome: list[int] = []
    rejects: dict[int, Reject] = {}
    extra_docs: dict[int, int] = {}
    counts: dict[int, dict[str, int]] = {}
    for k, (record, result) in enumerate(zip(records, results, strict=True)):
        if not isinstance(result, list):
            docs = _cut_documents(documents_of(result), options)
            if isinstance(docs, list):
                split = [d for d in docs if d.key is not None]
                outcome.append(len(lengths))
                if len(docs) > 1:
                    extra_docs[k] = len(docs) - 1
                found = dict(result.counts) if isinstance(result, Encoded) else {}
                if split:
                    found.update(split_docs=len(split), split_tokens=sum(len(d) for d in split))
                if found:
                    counts[k] = found
                for doc in docs:
                    ids_parts.append(doc.input_ids)
                    sup_parts.append(doc.supervised)
                    lengths.append(len(doc))
                    doc_ids.append(document_id(record.doc_id, doc))
                    truncated.append(bool(doc.truncated))
                continue
            result = docs
        problems = [result] if isinstance(result, Problem) else list(result)
        outcome.append(-1)
        raw = record.conversation.model_dump(mode="json", exclude_none=True)
        rejects[k] = Reject(source=record.source, index=record.index, problems=problems,
                            id=record.conversation.id, raw=raw)
    lens = np.asarray(lengths, dtype=np.int32)
    if ids_parts:  # labels for the whole batch in one step (a per-document np.where costs ~5% of encoding)
        ids = np.concatenate(ids_parts).astype(np.int32, copy=False)
        supervised = np.concatenate(sup_parts)
        labels = np.where(supervised, ids, IGNORE_INDEX).astype(np.int32)
    else:
        ids = labels = np.zeros(0, dtype=np.int32)
    return EncodedBatch(
        input_ids=ids,
        labels=labels,
        lengths=lens,
        doc_ids=doc_ids, truncated=truncated, outcome=outcome, rejects=rejects, extra_docs=extra_docs,
        counts=counts,
    )


def _cut_documents(docs: tuple[Example, ...], options: StageOptions) -> list[Example] | Problem:
    """Apply the length policy to each of a record's documents; one that cannot be kept rejects the record
    (a record is never written short)."""
    out = []
    for doc in docs:
        cut = cut_example(doc, options.max_length, options.too_long)
        if isinstance(cut, Problem):
            return cut
        if not cut.supervised[1:].any():  # the first label becomes -100 (`build_rows`): it cannot be the only one
            return Problem(Reason.no_supervised_tokens, "no token is in the loss after masking")
        out.append(cut)
    return out
