"""What the mask engine produces for one conversation: ids and the supervision mask, together.

Labels are made in exactly one place (`Example.labels`): aligned with `input_ids`, the id where the
token is supervised (in the loss) and -100 elsewhere. Nothing is shifted here; the trainer shifts
once, in the loss ("position n predicts token n+1").
"""

from __future__ import annotations

from dataclasses import dataclass

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
