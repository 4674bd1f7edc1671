"""The contract between an engine and the job: a batch of encoded documents with every record's outcome.

An engine (local: `sftdata.pipeline.local`, Ray: `sftdata.pipeline.ray_engine`) hands the job
(`sftdata.pipeline.job`) `Batch`es in input order. A batch says, for each input record in order,
what became of it: a `Reject` (from validation or from encoding, with its reason codes and source
position) or `Kept` (its documents, one or several: issue 10's `ID#K` documents follow their record's
own, contiguous). Per-document columns (`lengths`, `doc_ids`, `truncated`) are what the job plans a
window from; `tokens` is opaque to the job: the local engine keeps the arrays in memory
(`LocalTokens`), the Ray engine keeps them in Ray's object store and carries only where each
document's tokens are. The job never sees a `Record`, so no engine has to fake one.

`outcomes_of` is the one place that turns validated items plus an `EncodedBatch` into outcomes, so
both engines report a record's fate the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from sftdata.pipeline.encode import EncodedBatch
from sftdata.records import Record, Reject

T = TypeVar("T")


@dataclass(frozen=True)
class Kept:
    """An accepted record: its documents are `docs` (indices into its batch's per-document columns)."""

    docs: range
    counts: dict[str, int] = field(default_factory=dict)
    """What the manifest counts for this record (`allowed_drop.KIND`, `split_docs`, ...); empty when nothing."""


Outcome = Kept | Reject
"""What became of one input record."""


@dataclass(frozen=True)
class LocalTokens:
    """A batch's tokens in memory: every document's ids and labels back to back (int32)."""

    input_ids: np.ndarray
    labels: np.ndarray


@dataclass
class Batch(Generic[T]):
    """Outcomes of consecutive input records (in input order) and the documents of the kept ones."""

    outcomes: list[Outcome]
    lengths: np.ndarray
    """int32 tokens per document."""
    doc_ids: list[str]
    truncated: list[bool]
    tokens: T
    """Where the documents' tokens are (engine-specific; only the engine's part writer reads it)."""


def outcomes_of(items: list[Record | Reject], encoded: EncodedBatch) -> list[Outcome]:
    """Each item's outcome in order: validation rejects as they are, records by what encoding made of them.

    Args:
        items: validated items in input order; the `Record`s among them are what `encoded` encoded.
        encoded: `encode_stage` over the records of `items`, in the same order.
    """
    out: list[Outcome] = []
    k = 0
    for item in items:
        if isinstance(item, Record):
            docs = encoded.docs_of(k)
            out.append(Kept(docs, encoded.counts.get(k, {})) if docs else encoded.rejects[k])
            k += 1
        else:
            out.append(item)
    return out
