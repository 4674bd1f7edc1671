"""What the mask engine produces for one conversation: ids and the supervision mask, together.

Labels are made in exactly one place (`Example.labels`): aligned with `input_ids`, the id where the
token is supervised (in the loss) and -100 elsewhere. Nothing is shifted here; the trainer shifts
once, in the loss ("position n predicts token n+1").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

IGNORE_INDEX = -100
"""The label of a position that is not in the loss (PyTorch's `cross_entropy` default)."""


@dataclass(frozen=True, slots=True)
class Example:
    """One encoded document. `supervised[i]` is True when token i is in the loss."""

    input_ids: np.ndarray
    """int32 token ids, exactly the chat template's ids."""
    supervised: np.ndarray
    """bool, same length as `input_ids`."""
    truncated: bool = False
    """True when cut to `max_length` by the `truncate` policy."""
    key: int | None = None
    """None: the record's own document (its id). K: a document built for assistant turn K alone (a split or
    DeepSeek-R1-style document), whose id is `ID#K`."""

    def __post_init__(self) -> None:
        if self.input_ids.shape != self.supervised.shape:
            raise ValueError(f"input_ids {self.input_ids.shape} and supervised {self.supervised.shape} differ")

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def labels(self) -> np.ndarray:
        """int32 labels aligned with `input_ids`: the id where supervised, else -100."""
        return np.where(self.supervised, self.input_ids, IGNORE_INDEX).astype(np.int32)

    @property
    def n_supervised(self) -> int:
        return int(self.supervised.sum())


@dataclass(frozen=True, slots=True)
class Encoded:
    """What one record became when that is more than one plain document, or when a drop was counted.

    The engine returns a bare `Example` for the common case (one document, the record's own id, nothing
    counted) and this otherwise; `documents_of` reads either.
    """

    documents: tuple[Example, ...]
    """The record's documents: its own (key None) first when written, then `ID#K` documents by K."""
    counts: Mapping[str, int] = field(default_factory=dict)
    """What the manifest counts for this record: `allowed_drop.KIND` (texts a template dropped under
    `--allow-drop KIND`) and `context_drop.reasoning` (thoughts of unsupervised turns the template drops
    as it would at inference)."""


def documents_of(result: Example | Encoded) -> tuple[Example, ...]:
    """The documents of an accepted record, whichever form the engine returned."""
    return (result,) if isinstance(result, Example) else result.documents


def document_id(record_id: str, example: Example) -> str:
    """`ID` for the record's own document, `ID#K` for a document built for assistant turn K."""
    return record_id if example.key is None else f"{record_id}#{example.key}"
