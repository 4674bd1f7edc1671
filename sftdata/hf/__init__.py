"""sftdata shards in the trainers people already use: TRL's SFTTrainer, transformers' Trainer, plain PyTorch.

- `dataset(DIR)`: a prepared folder as a memory-mapped `datasets.Dataset` (`sftdata.hf.folder`);
  TRL's `SFTTrainer` takes it as it is with `padding_free=True, packing=False, max_length=None`.
- `Collator()`: padding-free (or padded, one document per row) batches for `transformers.Trainer` and
  a `torch.utils.data.DataLoader` (`sftdata.hf.collator`).
- `IsolationCheck()` / `guard(model)`: warn once, with the fix, when a setup would let packed
  documents attend to each other (`sftdata.hf.isolation`, which also records which attention
  implementations isolate and why).

All give the loss of `sftdata train` (sum of token losses over supervised tokens / their number):
tests/test_hf_loss.py checks the four to 1e-5. Names load lazily, so `sftdata.hf.dataset` does not
import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "dataset": "sftdata.hf.folder", "extra_cost": "sftdata.hf.folder", "ExtraCost": "sftdata.hf.folder",
    "Collator": "sftdata.hf.collator",
    "IsolationCheck": "sftdata.hf.isolation", "IsolationWarning": "sftdata.hf.isolation",
    "guard": "sftdata.hf.isolation", "check": "sftdata.hf.isolation", "ISOLATING": "sftdata.hf.isolation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sftdata.hf' has no attribute {name!r}")
