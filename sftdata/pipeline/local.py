"""The local engine: a batch source and a part writer for `Job`, on this machine.

    read + validate (main process, `sftdata.validate`) -> chunks of `chunk_size` items
        -> encode_stream (one process: one encode pipeline through all chunks), or encode_stage in
           spawned workers via `ordered_map` (results in order)
        -> Batch (outcomes in input order + the tokens in memory, `LocalTokens`)
    part writer: gather the window's tokens, `write_parts` at once, a future that is already done

Why validate in the main process: format detection (`--format auto`) looks at a whole input, and
validation is ~5% of the floor; render + tokenize + mask (~90% of the work) is what workers take.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future
from functools import partial
from itertools import chain, islice
from pathlib import Path
from typing import Any

import numpy as np

from sftdata.pipeline.batch import Batch, LocalTokens, outcomes_of
from sftdata.pipeline.encode import encode_stage, encode_stream
from sftdata.pipeline.job import JobSpec, Slice
from sftdata.pipeline.journal import PartEntry
from sftdata.pipeline.write import write_parts
from sftdata.pool import ordered_map, resolve_workers
from sftdata.records import Record, Reject
from sftdata.validate import read_inputs, validate_records


class LocalEngine:
    """Reads, validates and encodes in this process (or a local worker pool); writes parts at once.

    Args:
        spec: the job (`sftdata.pipeline.job.describe`).
        folder: the run's `OUT.incomplete/`.
        timings: seconds per phase, added to in place.
    """

    def __init__(self, spec: JobSpec, folder: Path, timings: Counter[str]) -> None:
        self.spec, self.config, self.folder, self.timings = spec, spec.config, folder, timings
        self.streams: list[Any] = []

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    # -- the batch source ---------------------------------------------------------------------------
    def records(self, skip: int) -> Iterator[Record | Reject]:
        """Every record of every input, in order, after the first `skip` (already committed)."""

        def streams() -> Iterator[Iterator[Record | Reject]]:
            for path in self.spec.inputs:
                stream = validate_records(read_inputs([path], self.config.read), self.config.read)
                self.streams.append(stream)
                yield stream

        return islice(chain.from_iterable(streams()), skip, None)

    def batches(self, skip: int) -> Iterator[Batch[LocalTokens]]:
        """Chunks of `chunk_size` validated items (after the first `skip`), encoded, in input order."""
        c = self.config
        chunks: deque[list[Record | Reject]] = deque()

        def payloads() -> Iterator[list[Record]]:
            t = time.perf_counter()
            items = self.records(skip)
            while chunk := list(islice(items, c.chunk_size)):
                chunks.append(chunk)
                self.timings["read_validate_s"] += time.perf_counter() - t
                yield [x for x in chunk if isinstance(x, Record)]
                t = time.perf_counter()

        if resolve_workers(c.workers) > 1:
            encoded_batches = ordered_map(partial(encode_stage, options=self.spec.stage), payloads(), c.workers)
        else:  # one pipeline through all batches: the tokenizer encodes while the next batch is read
            encoded_batches = encode_stream(payloads(), self.spec.stage)
        t, read = time.perf_counter(), self.timings["read_validate_s"]
        for encoded in encoded_batches:  # the stream reads while it encodes: that time is not waiting
            self.timings["encode_wait_s"] += time.perf_counter() - t - (self.timings["read_validate_s"] - read)
            yield Batch(outcomes=outcomes_of(chunks.popleft(), encoded), lengths=encoded.lengths,
                        doc_ids=encoded.doc_ids, truncated=encoded.truncated,
                        tokens=LocalTokens(encoded.input_ids, encoded.labels))
            t, read = time.perf_counter(), self.timings["read_validate_s"]

    def formats(self) -> dict[str, str]:
        """The format `validate_records` detected for each input it read."""
        found: dict[str, str] = {}
        for stream in self.streams:
            for path, fmt in getattr(stream, "formats", {}).items():
                if fmt:
                    found.setdefault(path, fmt)
        return found

    # -- the part writer ----------------------------------------------------------------------------
    def write(self, window: int, plan: list[list[int]], slices: list[Slice[LocalTokens]], lengths: np.ndarray,
              doc_ids: list[str]) -> Future[list[PartEntry]]:
        """Gather the window's tokens (then drop its batches) and write its parts now."""
        ids, labels = [], []
        for batch, lo, hi in slices:
            offsets = np.concatenate([[0], np.cumsum(batch.lengths, dtype=np.int64)])
            ids.append(batch.tokens.input_ids[offsets[lo]:offsets[hi]])
            labels.append(batch.tokens.labels[offsets[lo]:offsets[hi]])
        slices.clear()
        empty = np.zeros(0, dtype=np.int32)
        ids_all = np.concatenate(ids) if ids else empty
        labels_all = np.concatenate(labels) if labels else empty
        del ids, labels
        done: Future[list[PartEntry]] = Future()
        done.set_result(write_parts(self.folder, self.spec.fingerprint, window, self.config.rows_per_shard, plan,
                                    ids_all, labels_all, lengths, doc_ids))
        return done
