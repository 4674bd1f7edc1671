"""Packing plans on integers: BFD equals a textbook reference, refinement only ever helps, and speed."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sftdata.pack import PackStats, best_fit_decreasing, pack_stats, plan_packs, plan_packs_windowed, plan_unpacked


def reference_bfd(lengths: list[int], capacity: int) -> list[list[int]]:
    """Textbook best-fit decreasing: O(n * rows), obviously right."""
    rows: list[list[int]] = []
    free: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        fits = [j for j, f in enumerate(free) if f >= lengths[i]]
        if not fits:
            rows.append([i])
            free.append(capacity - lengths[i])
        else:
            j = min(fits, key=lambda j: free[j])
            rows[j].append(i)
            free[j] -= lengths[i]
    return rows


def loads(lengths: list[int], plan: list[list[int]]) -> list[int]:
    return sorted(sum(lengths[i] for i in row) for row in plan)


def is_partition(plan: list[list[int]], n: int) -> bool:
    return sorted(i for row in plan for i in row) == list(range(n))


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 64).flatmap(lambda cap: st.tuples(st.just(cap), st.lists(st.integers(1, cap), max_size=120))))
def test_bfd_matches_the_reference(case: tuple[int, list[int]]) -> None:
    capacity, lengths = case
    plan = best_fit_decreasing(np.asarray(lengths), capacity)
    assert is_partition(plan, len(lengths))
    # rows with equal free space are interchangeable, so any tie rule gives the same loads
    assert loads(lengths, plan) == loads(lengths, reference_bfd(lengths, capacity))


@settings(max_examples=100, deadline=None)
@given(st.integers(4, 300).flatmap(lambda cap: st.tuples(st.just(cap), st.lists(st.integers(1, cap), max_size=400))))
def test_refined_plan_is_valid_and_never_worse(case: tuple[int, list[int]]) -> None:
    capacity, lengths = case
    plan = plan_packs(lengths, capacity)
    assert is_partition(plan, len(lengths))
    assert all(sum(lengths[i] for i in row) <= capacity for row in plan)
    assert len(plan) <= len(reference_bfd(lengths, capacity))
    assert len(plan) >= -(-sum(lengths) // capacity)


def test_refinement_closes_gaps_that_bfd_leaves() -> None:
    rng = np.random.default_rng(0)
    lengths = np.minimum(rng.lognormal(4.8, 0.8, 20_000).astype(int) + 39, 1800)
    bfd = best_fit_decreasing(lengths, 2048)
    plan = plan_packs(lengths, 2048)
    stats = pack_stats(lengths, plan, 2048)
    assert len(plan) <= len(bfd)
    assert stats.efficiency >= 0.998
    assert stats.lower_bound_efficiency - stats.efficiency <= 0.001


def test_edge_cases_and_errors() -> None:
    assert plan_packs([], 8) == []
    assert plan_packs([8, 8], 8) == [[0], [1]]
    assert sorted(map(sorted, plan_packs([1, 7, 2, 6], 8))) == [[0, 1], [2, 3]]
    with pytest.raises(ValueError, match="document 1 has length 9, outside 1..8"):
        plan_packs([3, 9], 8)
    with pytest.raises(ValueError, match="outside 1..8"):
        plan_packs([0], 8)
    assert plan_unpacked([5, 6, 7]) == [[0], [1], [2]]
    assert PackStats(rows=2, tokens=12, capacity=8).efficiency == 0.75
    assert PackStats(rows=2, tokens=12, capacity=8).lower_bound_rows == 2


def test_windowed_plans_cover_every_document_with_global_indices() -> None:
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 100, 1000).tolist()
    plans = list(plan_packs_windowed(iter(lengths), 100, window=300))
    assert len(plans) == 4
    assert is_partition([row for plan in plans for row in plan], 1000)
    assert all(min(i for row in plan for i in row) == 300 * w for w, plan in enumerate(plans))


@pytest.mark.slow
def test_one_million_lengths_plan_quickly() -> None:
    lengths = np.random.default_rng(0).integers(1, 2049, 1_000_000)
    start = time.process_time()  # CPU time: other processes on a shared machine do not count
    plan = plan_packs(lengths, 2048)
    assert time.process_time() - start < 4.0  # ~1 s on an idle core; the bench reports wall time
    assert len(plan) <= pack_stats(lengths, plan, 2048).lower_bound_rows * 1.002
