"""Dataset statistics for the report: per-document and per-row figures, then polars aggregates.

Per-row figures come straight from the Arrow table with polars list expressions
(`pl.from_arrow(table)`, zero-copy over the memory-mapped shard); per-document supervised counts are
segment sums of the label mask (one `cumsum` over all tokens), then everything is aggregated in
polars: quantiles and fixed-width histograms (a few tens of milliseconds on the 20k bench corpus).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sftdata.audit.tables import TokenView

if TYPE_CHECKING:
    import polars as pl


@dataclass
class StatsAccumulator:
    """Collects per-document and per-row figures view by view."""

    doc_len: list[np.ndarray] = field(default_factory=list)
    doc_sup: list[np.ndarray] = field(default_factory=list)
    row_frames: list[pl.DataFrame] = field(default_factory=list)

    def add(self, view: TokenView) -> None:
        import polars as pl  # here, not at import: the audit checks shards while its workers start

        if view.table is not None and "doc_lens" in view.table.column_names:
            frame = pl.from_arrow(view.table.select(["input_ids", "labels", "doc_lens"]))
            rows = frame.select(
                tokens=pl.col("input_ids").list.len(),
                supervised=(pl.col("labels").list.eval(pl.element() != -100).list.sum()),
                docs=pl.col("doc_lens").list.len(),
            )
        else:
            rows = pl.DataFrame({"tokens": view.row_lens, "supervised": np.add.reduceat(
                view.supervised.astype(np.int64), view.row_offsets[:-1]) if len(view.ids) else view.row_lens * 0,
                "docs": np.diff(view.doc_offsets)})
        self.row_frames.append(rows.cast(pl.Int64))
        docs = np.flatnonzero(view.doc_valid)
        csum = np.concatenate([[0], np.cumsum(view.supervised, dtype=np.int64)])
        starts, lens = view.doc_starts[docs], view.doc_lens[docs]
        self.doc_len.append(lens)
        self.doc_sup.append(csum[starts + lens] - csum[starts])


def histogram(values: np.ndarray, bins: int, lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    """Fixed-width histogram as JSON data: bin edges and counts."""
    if len(values) == 0:
        return {"edges": [], "counts": []}
    lo = float(values.min()) if lo is None else lo
    hi = float(values.max()) if hi is None else hi
    if hi <= lo:
        hi = lo + 1
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    return {"edges": [round(float(e), 4) for e in edges], "counts": counts.tolist()}


def summarize(acc: StatsAccumulator, capacity: int | None) -> dict[str, Any]:
    """Totals, quantiles and histograms (JSON data)."""
    import polars as pl
    rows = pl.concat(acc.row_frames) if acc.row_frames else pl.DataFrame(
        {"tokens": [], "supervised": [], "docs": []}, schema={"tokens": pl.Int64, "supervised": pl.Int64,
                                                            "docs": pl.Int64})
    docs = pl.DataFrame({
        "length": np.concatenate(acc.doc_len) if acc.doc_len else np.zeros(0, np.int64),
        "supervised": np.concatenate(acc.doc_sup) if acc.doc_sup else np.zeros(0, np.int64),
    }).with_columns(fraction=pl.col("supervised") / pl.col("length"))
    totals = rows.select(rows=pl.len(), tokens=pl.col("tokens").sum(), supervised=pl.col("supervised").sum(),
                         documents=pl.col("docs").sum(), longest_row=pl.col("tokens").max()).row(0, named=True)
    totals = {k: int(v or 0) for k, v in totals.items()}
    cap = capacity or totals["longest_row"] or 1
    slots = totals["rows"] * cap
    quant = docs.select(
        [pl.col("length").quantile(q, "nearest").alias(f"p{int(q * 100)}") for q in (0.0, 0.5, 0.95, 1.0)]
        + [pl.col("fraction").mean().alias("mean_fraction")]
    ).row(0, named=True) if docs.height else {}
    length = docs["length"].to_numpy()
    return {
        "totals": {**totals, "capacity": cap,
                   "supervised_fraction": round(totals["supervised"] / totals["tokens"], 4) if totals["tokens"] else 0,
                   "packing_efficiency": round(totals["tokens"] / slots, 4) if slots else 0,
                   "lower_bound_rows": -(-totals["tokens"] // cap) if cap else 0},
        "doc_length": {**{k: int(quant[q]) if quant.get(q) is not None else None
                          for k, q in (("min", "p0"), ("median", "p50"), ("p95", "p95"), ("max", "p100"))},
                       "hist": histogram(length, 30, 0)},
        "supervised_fraction": {"mean": round(quant.get("mean_fraction") or 0, 4),
                                "hist": histogram(docs["fraction"].to_numpy(), 20, 0, 1)},
        "docs_per_row": {"hist": _count_hist(rows["docs"].to_numpy())},
        "row_fill": {"hist": histogram(rows["tokens"].to_numpy() / cap, 20, 0, 1)},
    }


def _count_hist(values: np.ndarray) -> dict[str, Any]:
    """Histogram of small integers: one bar per value (capped at 40 bars)."""
    if len(values) == 0:
        return {"edges": [], "counts": []}
    top = int(min(values.max(), 40))
    counts = np.bincount(np.minimum(values, top), minlength=top + 1)[1:]
    return {"edges": list(range(1, top + 2)), "counts": counts.tolist()}
