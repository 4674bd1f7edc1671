"""Which stored document belongs to which source record: the index, the jobs, and the pairings that are certain.

A source record is written as its document `ID`, as one `ID#K` document per split turn, or both. The
audit looks each id up in the shards (`DocIndex`) and pairs every record, in input order, with a stored
copy nobody took yet. Only a doc id stored more than once needs more: the main process pairs it with
the copy whose mask matches the record's re-derivation (`audit.run.check_sources`).

`Claims` is the part of that pairing that needs no re-derivation. The conservation process
(`audit.prelude`) uses it to pair rows while the main process is still importing transformers; the main
process applies the same rule to the same rows in the same order, so the two agree, without talking, on
which rows the conservation process left to it (`DEFER`): those where a record had more than one free
copy, or could have had one that an earlier deferred record may have taken.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sftdata.audit.tables import TokenView

Place = tuple[int, int]
"""(view, document) of a stored document."""
SPLIT_ID = re.compile(r"(.*)#(\d+)")
DEFER = "defer"
"""`Claims.claim`: which copy this record takes depends on a re-derivation."""


@dataclass
class DocIndex:
    """Where each stored document is: by its id, and by the record id of an `ID#K` document."""

    full: dict[str, list[Place]] = field(default_factory=lambda: defaultdict(list))
    split: dict[str, list[tuple[int, int, int]]] = field(default_factory=lambda: defaultdict(list))
    """record id -> (K, view, doc) of each `ID#K` document."""

    @classmethod
    def build(cls, views: list[TokenView]) -> DocIndex:
        index = cls()
        for v, view in enumerate(views):
            for d in np.flatnonzero(view.doc_valid).tolist():
                doc_id = view.doc_ids[d]
                index.full[doc_id].append((v, d))
                m = SPLIT_ID.fullmatch(doc_id)
                if m:
                    index.split[m.group(1)].append((int(m.group(2)), v, d))
        return index


def record_jobs(record: Any, index: DocIndex) -> list[tuple[str, list[Place], int | None]]:
    """The documents stored for one source record, in the audit's order: (doc id, candidate places, K) for its
    own document (K None) if stored, then for each `ID#K` document. Empty: the record is in no shard."""
    jobs: list[tuple[str, list[Place], int | None]] = []
    places = index.full.get(record.doc_id, [])
    if places:
        jobs.append((record.doc_id, places, None))
    for k, v, d in sorted(index.split.get(record.doc_id, ())):
        jobs.append((f"{record.doc_id}#{k}", [(v, d)], k))
    return jobs


@dataclass
class Claims:
    """The audit's pairing, in input order, as far as it is certain without re-deriving anything."""

    taken: set[Place] = field(default_factory=set)
    unsure: set[Place] = field(default_factory=set)
    """Copies a deferred record may have taken."""

    def claim(self, candidates: list[Place]) -> Place | None | str:
        """The copy the next job takes (None: every copy is taken), or `DEFER`.

        Exact: the main process's taken set differs from `taken` only by the choices of deferred jobs, which
        are all in `unsure`; so a job whose free candidates avoid `unsure` sees what the main process sees.
        """
        free = [p for p in candidates if p not in self.taken]
        if len(free) > 1 or any(p in self.unsure for p in free):
            self.unsure.update(free)
            return DEFER
        if not free:
            return None
        self.taken.add(free[0])
        return free[0]


def row_claims(row: Any, index: DocIndex, claims: Claims) -> list[Place] | None:
    """The documents of one raw row as far as `claims` is certain (None: the main process pairs this row).

    Every job of the row is claimed, even after one defers, so that both processes' `Claims` stay alike."""
    docs: list[Place] = []
    deferred = False
    for record in row.records:
        for _, places, _ in record_jobs(record, index):
            got = claims.claim(places)
            if got == DEFER:
                deferred = True
            elif got is not None:
                docs.append(got)
    return None if deferred else docs
