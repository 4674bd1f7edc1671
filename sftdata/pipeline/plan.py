"""The plan step of `prepare`: which documents share a row, in which order, and the manifest's packing figures.

A window's plan is a pure function of its documents' lengths, the config and the window's number:
best-fit decreasing (`sftdata.pack.plan_packs`) or one document per row (`--no-pack`), then the rows
shuffled by `(seed, window)` so a resumed run draws the same order. Nothing here touches tokens, so
the Ray engine plans on the driver from lengths alone while the tokens stay in the object store.
Where windows end is `sftdata.pack.WindowCutter`; the figures are `sftdata.pack.PackStats`.
"""

from __future__ import annotations

import numpy as np

from sftdata.config import PipelineConfig
from sftdata.manifest import Packing
from sftdata.pack import PackStats, plan_packs, plan_unpacked


def shuffle_rows(plan: list[list[int]], seed: int, window: int) -> list[list[int]]:
    """The plan's rows in a deterministic random order (from `seed` and the window number)."""
    order = np.random.default_rng([seed, window]).permutation(len(plan))
    return [plan[i] for i in order.tolist()]


def plan_window(lengths: np.ndarray, config: PipelineConfig, window: int) -> list[list[int]]:
    """Rows (lists of document indices) for one window's documents, in the order they are written."""
    plan = plan_packs(lengths, config.max_length) if config.pack else plan_unpacked(lengths)
    return shuffle_rows(plan, config.seed, window) if config.shuffle else plan


def packing(rows: int, tokens: int, config: PipelineConfig) -> Packing:
    """The manifest's packing block for a run's totals (figures from `PackStats`, rounded to 6 places)."""
    stats = PackStats(rows=rows, tokens=tokens, capacity=config.max_length)
    return Packing(packed=config.pack, capacity=config.max_length, rows=rows, tokens=tokens,
                   efficiency=round(stats.efficiency, 6), lower_bound_rows=stats.lower_bound_rows,
                   lower_bound_efficiency=round(stats.lower_bound_efficiency, 6), seed=config.seed)
