"""`sftdata.heap`: the collector's settings for the length of a job, and back to the caller's afterwards."""

from __future__ import annotations

import gc

from sftdata.heap import OLDER, YOUNG, steady_heap


def test_steady_heap_freezes_what_exists_raises_thresholds_and_restores_both():
    before = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    keep = [[i] for i in range(1000)]  # tracked objects that exist when the job starts
    with steady_heap():
        assert gc.get_threshold() == (YOUNG, OLDER, OLDER)
        assert gc.get_freeze_count() >= frozen_before + len(keep)
        assert gc.isenabled()  # cycles made during the job are still collected
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_steady_heap_restores_after_an_error():
    before = gc.get_threshold()
    try:
        with steady_heap():
            raise KeyError("boom")
    except KeyError:
        pass
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
