"""`sftdata train`: a small, correct trainer over the shards written by `sftdata prepare` (extra `train`).

    from sftdata.train import TrainConfig, train
    result = train(TrainConfig(shards="out/shards", model="HuggingFaceTB/SmolLM2-135M-Instruct",
                               out="runs/a", max_steps=100))

What it guarantees, each checked by a test:
- documents packed in a row never see each other (positions restart per document; attention is
  block-diagonal: flash-attn varlen, SDPA / flex with a mask from `doc_lens`) -> packed == unpacked;
- loss = sum of token losses / supervised tokens of the whole optimizer step, over micro-steps
  and ranks -> 4 micro-steps x 1 row == 1 step x 4 rows, 2 ranks == 1 rank;
- resume from a checkpoint reproduces the uninterrupted run's losses exactly.

Modules: `config` (TrainConfig, no torch), `data` (memory-mapped shards, step plan, collation),
`attention` (per-path inputs), `loss`, `model` (build, FLOPs), `distributed` (DDP / FSDP2),
`checkpoint`, `metrics`, `loop` (Trainer). Torch is imported only when `train` is called, so
`sftdata.train.config` stays importable without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sftdata.train.config import TrainConfig

if TYPE_CHECKING:
    from sftdata.train.loop import TrainResult

__all__ = ["TrainConfig", "TrainResult", "train"]


def train(config: TrainConfig) -> TrainResult:
    """Run training as `config` says and return what it did (also written to OUT/metrics.jsonl)."""
    from sftdata.train.loop import train as _train

    return _train(config)


def __getattr__(name: str) -> Any:
    if name == "TrainResult":
        from sftdata.train.loop import TrainResult

        return TrainResult
    raise AttributeError(f"module 'sftdata.train' has no attribute {name!r}")
