"""Packing plans from lengths alone: best-fit decreasing (BFD), whole-dataset or windowed.

`plan_packs(lengths, capacity)` is a pure function on integers: it says which documents share a row,
nothing more; materialising rows is a separate step (`sftdata.pipeline.write.build_rows`). That split is what
makes the plan testable in one line and cheap to compute centrally when encoding runs elsewhere.

Algorithm. Documents are taken longest first; each goes into the open row whose free space is the
smallest that still fits it (best fit), or opens a new row. BFD is within 11/9 OPT + 6/9 in the worst
case and, on real SFT length distributions (many short documents), reaches the lower bound
`ceil(tokens / capacity)` rows or one row above it.

Speed. A textbook BFD does one search per document (O(n log n) with a tree, 4-6 s per million
documents in Python). Here rows are kept in *buckets by free space* (an integer in 0..capacity), and
documents of equal length are placed together: when the best-fitting bucket has free space `r`, each
row taken from it receives `r // L` documents of length `L` in one numpy step (after the first one the
same row is again the best fit, since its space shrank below every other candidate). Every bucket
visit either exhausts the bucket or the length group, so the work is bounded by the number of distinct
(length, free space) pairs, not by documents: 1 M uniform random lengths with capacity 2048 plan in
about 1.5 s including the refinement pass (`benchmarks/bench_prepare.py`). Ties between rows with
the same free space are broken first-in-first-out; any tie rule gives the same multiset of row loads,
because rows with equal free space are interchangeable.

Windowed variant. For inputs larger than memory, `plan_packs_windowed` plans consecutive windows of
documents independently; each window costs at most one partly filled row over its own optimum (about
1 row per 2,000 at 190 tokens per document and capacity 2048, i.e. < 0.05 points of efficiency).
Where a window ends is decided once, by `WindowCutter` (the job in `sftdata.pipeline.job` cuts its
windows with it too): a window closes when it holds at least `size` documents, and a record's
documents (several when it yields `ID#K` documents) never straddle two windows.

Figures. `PackStats` is the one definition of a plan's efficiency and lower bound: `pack_stats` for a
plan, and the manifest's `packing` block (`sftdata.pipeline.plan.packing`) from its totals.
"""

from __future__ import annotations

import math
from bisect import bisect_right, insort
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np


@dataclass(frozen=True, slots=True)
class PackStats:
    """How well a plan uses its rows."""

    rows: int
    tokens: int
    capacity: int

    @property
    def efficiency(self) -> float:
        """Real tokens / slots (rows * capacity); 1.0 for an empty plan."""
        return self.tokens / (self.rows * self.capacity) if self.rows else 1.0

    @property
    def lower_bound_rows(self) -> int:
        """`ceil(tokens / capacity)`: no plan can use fewer rows."""
        return math.ceil(self.tokens / self.capacity)

    @property
    def lower_bound_efficiency(self) -> float:
        return self.tokens / (self.lower_bound_rows * self.capacity) if self.tokens else 1.0


def _check(lengths: np.ndarray, capacity: int) -> None:
    if capacity < 1:
        raise ValueError(f"capacity must be at least 1, got {capacity}")
    if lengths.size and (lengths.min() < 1 or lengths.max() > capacity):
        bad = int(np.flatnonzero((lengths < 1) | (lengths > capacity))[0])
        raise ValueError(f"document {bad} has length {int(lengths[bad])}, outside 1..{capacity}: cut or reject "
                         "documents longer than the capacity before planning")


def plan_packs(lengths: Sequence[int] | np.ndarray, capacity: int, *, refine: bool = True) -> list[list[int]]:
    """Rows for documents of these lengths: best-fit decreasing, then a swap pass (`refine_packs`).

    Args:
        lengths: length of each document (1..capacity).
        capacity: tokens per row.
        refine: run `refine_packs` after BFD (False gives plain BFD).

    Returns:
        Rows; each row lists document indices.

    Raises:
        ValueError: a length is below 1 or above `capacity` (cut or reject those first).
    """
    lens = np.asarray(lengths, dtype=np.int64)
    _check(lens, capacity)
    plan, loads = _bfd(lens, capacity)
    return refine_packs(lens, plan, capacity, loads=loads) if refine else plan


def best_fit_decreasing(lens: np.ndarray, capacity: int) -> list[list[int]]:
    """Plain BFD (see the module docstring); rows in the order opened, documents longest first."""
    return _bfd(np.asarray(lens, dtype=np.int64), capacity)[0]


def _bfd(lens: np.ndarray, capacity: int) -> tuple[list[list[int]], np.ndarray]:
    """BFD rows and their loads (int64 tokens per row)."""
    n = int(lens.size)
    if n == 0:
        return [], np.zeros(0, dtype=np.int64)
    order = np.argsort(-lens, kind="stable")  # longest first, ties by index
    sorted_lens = lens[order]
    assign = np.empty(n, dtype=np.int64)  # row of each document, in sorted order

    buckets: list[list[int]] = [[] for _ in range(capacity + 1)]  # free space -> rows (FIFO)
    has = np.zeros(capacity + 1, dtype=bool)  # has[r]: some open row has exactly r free
    n_rows = 0

    # group boundaries of equal lengths in the sorted array
    starts = np.flatnonzero(np.r_[True, sorted_lens[1:] != sorted_lens[:-1]])
    ends = np.r_[starts[1:], n]
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        length = int(sorted_lens[start])
        pos = start
        while pos < end:
            left = end - pos
            hit = int(np.argmax(has[length:])) + length
            if has[hit]:
                space = hit
                bucket = buckets[space]
                per_row = space // length
                take = min(len(bucket), -(-left // per_row))
                rows = bucket[:take]
                del bucket[:take]
                if not bucket:
                    has[space] = False
            else:  # open new rows
                space = capacity
                per_row = capacity // length
                take = -(-left // per_row)
                rows = list(range(n_rows, n_rows + take))
                n_rows += take
            placed = min(left, take * per_row)
            assign[pos:pos + placed] = np.repeat(np.asarray(rows, dtype=np.int64), per_row)[:placed]
            pos += placed
            # the first take-1 rows took per_row documents; the last took the remainder
            last_count = placed - (take - 1) * per_row
            full_space = space - per_row * length
            if take > 1 and full_space > 0:
                buckets[full_space].extend(rows[:-1])
                has[full_space] = True
            last_space = space - last_count * length
            if last_space > 0:
                buckets[last_space].append(rows[-1])
                has[last_space] = True

    # documents grouped by row, in placement order (stable sort keeps longest first)
    by_row = order[np.argsort(assign, kind="stable")].tolist()
    counts = np.bincount(assign, minlength=n_rows)
    bounds = np.r_[0, np.cumsum(counts)].tolist()
    loads = np.bincount(assign, weights=sorted_lens, minlength=n_rows).astype(np.int64)
    return [by_row[bounds[i]:bounds[i + 1]] for i in range(n_rows)], loads


class WindowCutter:
    """Where packing windows end: the one windowing rule, for `plan_packs_windowed` and the job.

    A window closes once it holds at least `size` documents; it is closed *before* the next record
    joins, so a record's documents (one, or several `ID#K`) always share a window, and a window may
    pass `size` by the last record's extra documents.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.docs = 0
        """Documents in the open window."""

    def add(self, docs: int) -> bool:
        """Count a record's documents; True when the open window was full and they start a new one."""
        full = self.docs >= self.size
        if full:
            self.docs = 0
        self.docs += docs
        return full


def plan_packs_windowed(lengths: Iterable[int], capacity: int, window: int) -> Iterator[list[list[int]]]:
    """BFD over consecutive windows of `window` documents, for inputs too large to plan at once.

    Yields one plan per window; indices are global (document positions in the whole stream).
    """
    if window < 1:
        raise ValueError(f"window must be at least 1 document, got {window}")
    cutter = WindowCutter(window)
    buffer: list[int] = []
    offset = 0
    for length in lengths:
        if cutter.add(1):
            yield [[offset + i for i in row] for row in plan_packs(buffer, capacity)]
            offset += len(buffer)
            buffer = []
        buffer.append(length)
    if buffer:
        yield [[offset + i for i in row] for row in plan_packs(buffer, capacity)]


def plan_unpacked(lengths: Sequence[int] | np.ndarray) -> list[list[int]]:
    """One document per row (`--no-pack`), in input order."""
    return [[i] for i in range(len(lengths))]


def pack_stats(lengths: Sequence[int] | np.ndarray, plan: list[list[int]], capacity: int) -> PackStats:
    """Efficiency figures of a plan (unpacked rows count as `capacity` slots each, like padded rows)."""
    return PackStats(rows=len(plan), tokens=int(np.asarray(lengths, dtype=np.int64).sum()), capacity=capacity)


def refine_packs(lengths: np.ndarray, plan: list[list[int]], capacity: int, pool_rows: int = 32,
                 max_visits: int = 20_000, passes: int = 6, loads: np.ndarray | None = None) -> list[list[int]]:
    """Close BFD's last gaps by swapping documents between the emptiest rows and the others' gaps.

    BFD leaves each row a gap smaller than the shortest document still unplaced when it filled (39
    tokens on the bench corpus), so slack piles up: 1,833 rows where the bound is 1,829. This pass
    takes the `pool_rows` emptiest rows apart into a pool; then each other row (largest gap first, at
    most `max_visits`) trades one or two of its documents for one pool document that is longer by at
    most the gap, up to three times, so the pool loses every token a gap gains. The pool is then
    re-packed with BFD and the result kept only when it needs fewer rows; passes repeat while they
    gain. Measured on the bench corpus: BFD 1,833 rows -> 1,830, bound 1,829 (single swaps alone stop
    at 1,831), in ~0.3 s on two busy cores. The result never has more rows than BFD.
    """
    lens_np = np.asarray(lengths, dtype=np.int64)
    lens = lens_np.tolist()
    rows = plan
    if loads is None:
        loads = np.fromiter((sum(lens[d] for d in r) for r in rows), dtype=np.int64, count=len(rows))
    for _ in range(passes):
        if len(rows) <= pool_rows:
            break
        order = np.argsort(loads, kind="stable")[:pool_rows + max_visits].tolist()  # emptiest first
        pool = sorted((lens[d], d) for i in order[:pool_rows] for d in rows[i])
        changed: dict[int, list[int]] = {}
        new_loads = loads.copy()
        for i in order[pool_rows:]:
            if new_loads[i] >= capacity:
                break  # the rest are full
            for _swap in range(3):
                gap = capacity - int(new_loads[i])
                move = _best_swap(rows[i] if i not in changed else changed[i], lens, pool, gap)
                if move is None:
                    break
                gain, positions, j = move
                row = changed.setdefault(i, list(rows[i]))
                outs = [row[p] for p in positions]
                for p in sorted(positions, reverse=True):
                    del row[p]
                row.append(pool.pop(j)[1])
                for out in outs:
                    insort(pool, (lens[out], out))
                new_loads[i] += gain
                if gain == gap:
                    break
        pool_docs = [d for _, d in pool]
        repacked, pool_loads = _bfd(lens_np[np.asarray(pool_docs, dtype=np.int64)], capacity)
        if len(repacked) >= pool_rows:
            break
        dropped = set(order[:pool_rows])
        keep = np.ones(len(rows), dtype=bool)
        keep[order[:pool_rows]] = False
        rows = [changed.get(i, r) for i, r in enumerate(rows) if i not in dropped]
        rows += [[pool_docs[k] for k in r] for r in repacked]
        loads = np.concatenate([new_loads[keep], pool_loads])
    return rows


def _best_swap(row: list[int], lens: list[int], pool: list[tuple[int, int]],
               gap: int) -> tuple[int, tuple[int, ...], int] | None:
    """The trade of one or two row documents for one pool document that fills most of `gap`."""
    best: tuple[int, tuple[int, ...], int] | None = None

    def consider(positions: tuple[int, ...], x: int) -> None:
        nonlocal best
        j = bisect_right(pool, (x + gap, 1 << 62)) - 1  # longest pool document <= x + gap
        if j >= 0 and pool[j][0] > x and (best is None or pool[j][0] - x > best[0]):
            best = (pool[j][0] - x, positions, j)

    for p, d in enumerate(row):
        consider((p,), lens[d])
    if best is not None and best[0] == gap:
        return best
    for p, q in combinations(range(len(row)), 2):
        consider((p, q), lens[row[p]] + lens[row[q]])
        if best is not None and best[0] == gap:
            break
    return best
