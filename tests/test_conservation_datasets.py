"""Issue 10's Must-show, as a test: every fixture dataset x every fixture tokenizer, the conservation check on
the *decoded ids* of each written record's documents finds no text missing (samples; the full table is
`benchmarks/conservation_table.py`, whose helpers this test uses so that the table and the test measure the
same thing)."""

from __future__ import annotations

import sys

import pytest
from conftest import ROOT, TOKENIZER_NAMES, requires_shared

sys.path.insert(0, str(ROOT / "benchmarks"))
import conservation_table  # noqa: E402

pytestmark = [requires_shared, pytest.mark.slow]


def test_no_written_document_misses_a_text():
    rows = conservation_table.table(list(conservation_table.DATASETS), TOKENIZER_NAMES, sample=2)
    assert len(rows) == len(conservation_table.DATASETS) * len(TOKENIZER_NAMES)
    assert [(r["dataset"], r["tokenizer"], r["missing"]) for r in rows if r["missing"]] == []
    for r in rows:  # every record is written or rejected with a reason, never dropped
        assert r["written"] - r["split"] + sum(r["rejected"].values()) >= r["records"], r
