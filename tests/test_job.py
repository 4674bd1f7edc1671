"""The one job, composed from a batch source and a part writer: what any engine can rely on.

Pure logic, no tokenizer: a source made in the test hands the job batches of outcomes (records kept
with one or several documents, rejects), a writer made in the test records what it is given. The
Ray engine's regrouping of its actors' outcomes is checked the same way, without Ray.
"""

from __future__ import annotations

import json
import pickle
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from sftdata.config import PipelineConfig
from sftdata.manifest import REJECTS_NAME
from sftdata.pipeline.batch import Batch, Kept, Outcome
from sftdata.pipeline.encode import StageOptions
from sftdata.pipeline.job import Job, JobSpec, Slice
from sftdata.pipeline.journal import Journal, JournalHeader, JournalState, PartEntry
from sftdata.pipeline.ray_engine import RayEngine
from sftdata.reasons import Reason
from sftdata.records import Problem, Reject


def _reject(index: int) -> Reject:
    return Reject(source="in.jsonl", index=index, problems=[Problem(Reason.empty_reply, "empty")])


def _records(docs_per_record: list[int]) -> list[tuple[int, int]]:
    """(record index, documents) for a stream: 0 documents means a reject."""
    return list(enumerate(docs_per_record))


def _batches(records: list[tuple[int, int]], size: int) -> Iterator[Batch[None]]:
    for lo in range(0, len(records), size):
        outcomes: list[Outcome] = []
        doc_ids: list[str] = []
        for index, n in records[lo:lo + size]:
            if n == 0:
                outcomes.append(_reject(index))
                continue
            outcomes.append(Kept(range(len(doc_ids), len(doc_ids) + n), {"split_docs": n - 1} if n > 1 else {}))
            doc_ids += [f"r{index}"] + [f"r{index}#{k}" for k in range(1, n)]
        yield Batch(outcomes=outcomes, lengths=np.full(len(doc_ids), 5, dtype=np.int32), doc_ids=doc_ids,
                    truncated=[False] * len(doc_ids), tokens=None)


class _Source:
    def __init__(self, records: list[tuple[int, int]], size: int) -> None:
        self.records, self.size = records, size

    def batches(self, skip: int) -> Iterator[Batch[None]]:
        return _batches(self.records[skip:], self.size)

    def formats(self) -> dict[str, str]:
        return {"in.jsonl": "messages"}


class _Writer:
    """Records each window's documents; its futures complete only when the test says so."""

    def __init__(self, hold: bool) -> None:
        self.windows: list[list[str]] = []
        self.futures: list[Future[list[PartEntry]]] = []
        self.hold = hold

    def __call__(self, window: int, plan: list[list[int]], slices: list[Slice[None]], lengths: np.ndarray,
                 doc_ids: list[str]) -> Future[list[PartEntry]]:
        assert window == len(self.windows) and sorted(d for row in plan for d in row) == list(range(len(doc_ids)))
        self.windows.append([d for b, lo, hi in slices for d in b.doc_ids[lo:hi]])
        assert self.windows[-1] == doc_ids
        future: Future[list[PartEntry]] = Future()
        if not self.hold:
            future.set_result([])
        self.futures.append(future)
        return future


def _job(tmp_path: Path, records: list[tuple[int, int]], writer: _Writer, window: int = 4) -> tuple[Job, Journal]:
    config = PipelineConfig(tokenizer="unused", max_length=64, pack_window=window, shuffle=False)
    header = JournalHeader.of(fingerprint="f" * 64, inputs=[{"path": "in.jsonl"}], options={}, tokenizer_files={},
                              chat_template=None, version="test")
    spec = JobSpec(inputs=["in.jsonl"], config=config, stage=StageOptions(tokenizer="unused", mask=config.mask,
                   max_length=64), template=None, input_infos=[{"path": "in.jsonl"}], tokenizer_files={},
                   fingerprint="f" * 64, header=header)
    journal = Journal(tmp_path, header)
    journal.start()
    return Job(spec, tmp_path, _Source(records, 3), writer, JournalState(), journal, Counter()), journal


def test_windows_close_at_the_size_and_never_split_a_records_documents(tmp_path: Path) -> None:
    records = _records([1, 3, 0, 2, 1, 1, 0, 3, 1, 2])
    writer = _Writer(hold=False)
    job, journal = _job(tmp_path, records, writer, window=4)
    state = job.run()
    # a window closes once it holds >= 4 documents, before the next record joins; r1's three stay together
    assert writer.windows == [["r0", "r1", "r1#1", "r1#2"], ["r3", "r3#1", "r4", "r5"], ["r7", "r7#1", "r7#2", "r8"],
                              ["r9", "r9#1"]]
    assert [w.next_row for w in state.windows] == [3, 7, 9, 10]  # a window's position counts its rejects so far
    assert state.last is not None and state.last.docs_written == 14 and state.last.rejected == 2
    assert state.last.conservation == {"split_docs": 6}
    assert [json.loads(line)["index"] for line in (tmp_path / REJECTS_NAME).read_text().splitlines()] == [2, 6]
    assert journal.load() is not None and journal.load().done  # type: ignore[union-attr]


def test_windows_commit_in_order_when_their_parts_are_written(tmp_path: Path) -> None:
    """A writer whose futures are still pending (Ray): nothing is committed until the first is done."""
    writer = _Writer(hold=True)
    job, journal = _job(tmp_path, _records([2, 2, 2, 2]), writer, window=2)
    committed = []
    journal.commit = committed.append  # type: ignore[method-assign]
    with open(tmp_path / REJECTS_NAME, "ab") as job.rejects:
        for batch in job.source.batches(0):
            job._take(batch)  # noqa: SLF001 - driving the loop by hand to observe commits between windows
    assert len(writer.futures) == 3 and committed == []
    writer.futures[1].set_result([])
    job._commit(wait=False)  # noqa: SLF001
    assert committed == []  # window 1 is written, but window 0 is not: order first
    writer.futures[0].set_result([])
    job._commit(wait=False)  # noqa: SLF001
    assert [e.window for e in committed] == [0, 1]


def test_ray_regroups_its_actors_outcomes_in_input_order_with_their_documents() -> None:
    """Two actor outputs, out of order, one record with two documents: batches in input order, documents
    renumbered within each batch and still pointing at their block, batch row and first token."""
    def actor_row(first: int, outcomes: list[Outcome], lengths: list[int], doc_ids: list[str]) -> tuple[bytes, bytes]:
        keys = np.array([(0, first + i, 0) for i in range(len(outcomes))], dtype=np.int64)
        meta = (outcomes, np.array(lengths, dtype=np.int32), doc_ids, [False] * len(doc_ids))
        return keys.tobytes(), pickle.dumps(meta)

    late = actor_row(2, [Kept(range(0, 2), {"split_docs": 1}), _reject(3)], [4, 6], ["r2", "r2#1"])
    early = actor_row(0, [Kept(range(0, 1)), Kept(range(1, 2))], [3, 5], ["r0", "r1"])
    engine = object.__new__(RayEngine)
    engine.config = PipelineConfig(tokenizer="unused", chunk_size=2)
    batches = list(engine._ordered([[late], [early]], skip=1))  # noqa: SLF001
    assert [[o.docs if isinstance(o, Kept) else o.index for o in b.outcomes] for b in batches] == [
        [range(0, 1), range(1, 3)], [3]]
    first = batches[0]
    assert first.doc_ids == ["r1", "r2", "r2#1"] and first.lengths.tolist() == [5, 4, 6]
    assert first.tokens.blocks.tolist() == [1, 0, 0] and first.tokens.starts.tolist() == [3, 0, 4]
    assert first.outcomes[1] == Kept(range(1, 3), {"split_docs": 1})
