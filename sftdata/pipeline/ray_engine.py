"""`prepare --engine ray`: the local job's stages on Ray Data, writing byte-identical output.

    driver: plan read ranges (ray_read), resolve each input's format from its first rows
    Ray Data: read ranges -> map_batches(EncodeRows) in an actor pool (tokenizer loaded once per actor)
              -> one output row per batch: tokens (stay in the object store) + metadata
    driver: fetch metadata only (outcomes, lengths, doc ids), sort by (input, row), then the local
            job's own `_merge` / `_flush`: windows, BFD plan, shuffle, rejects, journal, manifest
    Ray tasks: one per window, `write_parts` (the local function) into DIR.incomplete/

`RayJob` subclasses the local `_Job` and replaces two steps only: where encoded batches come from
(`encoded`) and where a window's parts are written (`_write_parts`). Everything that decides bytes
(validation, encoding, cutting, windowing, packing plan, shuffle, row building, shard writing,
rejects, journal, manifest) is the local engine's code, so identical output is by construction and
checked by `tests/test_ray_engine.py`.

Costs and limits, measured on 200k rows (notes/issue-7.md, a 2-core machine shared ~8 ways): the
central steps are `plan_packs` on lengths (2.8 s per million documents) and the driver's per-record
bookkeeping (fetch + sort + merge, ~50 us per record) against ~4 ms of encoding per record per core,
so the driver is the limit only past ~50 encoding cores. Tokens never pass through the driver.
The driver keeps one small record per document (length, doc id); the whole encoded dataset sits in
Ray's object store (8 bytes per token, spilled to disk when full) until its window is written.
Shard parts are written by Ray tasks into `DIR.incomplete/`, so on a multi-node cluster `--out`
must be on storage every node sees (NFS, a shared volume). Fault tolerance is Ray's: a killed
encode actor is restarted and its batch retried, a killed write task is rerun and rewrites the same
bytes; outcomes are keyed by (input, row), so a retry can neither lose nor duplicate a record.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from sftdata.errors import ConfigError
from sftdata.pipeline.journal import PartEntry, WindowEntry
from sftdata.pipeline.ray_encode import EncodeRows
from sftdata.pipeline.ray_read import datasource, plan_ranges
from sftdata.pipeline.stages import EncodedBatch
from sftdata.prepare import _Job, write_parts
from sftdata.records import Record, Reject

CRASH_ENV = "SFTDATA_RAY_CRASH_ONCE"
"""Tests only: a path; the first encode call in the cluster creates it and kills its worker."""

_DOC = object.__new__(Record)
"""Stands for an accepted record in a chunk (`_Job._merge` only asks `isinstance(item, Record)`)."""


@dataclass
class RemoteBatch(EncodedBatch):
    """An `EncodedBatch` whose tokens stay in Ray's object store: where each document's tokens are."""

    blocks: np.ndarray | None = None
    """int64 per document: index of its block in `RayJob.block_refs`."""
    rows: np.ndarray | None = None
    """int64 per document: row of its batch in that block."""
    starts: np.ndarray | None = None
    """int64 per document: first token in that batch's arrays."""


def connect(address: str | None) -> bool:
    """Join the Ray cluster at `address` (or start a local one); True when this call started Ray."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--engine ray needs Ray: pip install 'sftdata[ray]'") from None
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address is None:
        kwargs["include_dashboard"] = False
    ray.init(address=address, **kwargs)
    return True


def _block_meta(block: Any) -> list[tuple[bytes, bytes]]:
    """(keys, meta) of every batch in one block: all the driver fetches (no tokens)."""
    return list(zip(block.column("keys").to_pylist(), block.column("meta").to_pylist(), strict=True))


def _write_window(folder: str, fingerprint: str, window: int, rows_per_shard: int, plan: list[list[int]],
                  where: np.ndarray, lengths: np.ndarray, doc_ids: list[str], *blocks: Any) -> list[PartEntry]:
    """Ray task: gather one window's tokens from the encoded blocks, then the local `write_parts`."""
    cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    ids_parts, label_parts = [], []
    for (arg, row, start), n in zip(where.tolist(), lengths.tolist(), strict=True):
        if (arg, row) not in cache:
            block = blocks[arg]
            cache[arg, row] = (np.frombuffer(block.column("ids")[row].as_py(), dtype=np.int32),
                               np.frombuffer(block.column("labels")[row].as_py(), dtype=np.int32))
        ids, labels = cache[arg, row]
        ids_parts.append(ids[start:start + n])
        label_parts.append(labels[start:start + n])
    empty = np.zeros(0, dtype=np.int32)
    ids_all = np.concatenate(ids_parts) if ids_parts else empty
    labels_all = np.concatenate(label_parts) if label_parts else empty
    return write_parts(Path(folder), fingerprint, window, rows_per_shard, plan, ids_all, labels_all, lengths, doc_ids)


class _DeferredJournal:
    """Holds window commits until their Ray write tasks finish, then commits them in order."""

    def __init__(self, journal: Any) -> None:
        self.journal = journal
        self.pending: list[tuple[WindowEntry, Any]] = []
        self.futures: list[Any] = []

    def commit(self, entry: WindowEntry) -> None:
        """Hold the window (its `shards` still empty) with the write task that `_write_parts` started."""
        self.pending.append((entry, self.futures.pop(0) if self.futures else None))

    def drain(self) -> None:
        """Wait for each window's parts in order, fill in their figures, commit (crash-safe as local)."""
        import ray

        for entry, future in self.pending:
            if future is not None:
                entry.shards.extend(ray.get(future))  # the same entry object the job's state holds
            self.journal.commit(entry)
        self.pending = []


class RayJob(_Job):
    """The local job with encoding on Ray Data and shard parts written by Ray tasks (see module docstring)."""

    def run(self, state: Any, journal: Any) -> Any:
        self.started_ray = connect(self.config.ray_address)
        deferred = _DeferredJournal(journal)
        try:
            state = super().run(state, deferred)  # type: ignore[arg-type]
            t = time.perf_counter()
            deferred.drain()
            self.timings["write_s"] += time.perf_counter() - t
        finally:
            if self.started_ray:
                import ray

                ray.shutdown()
        return state

    # -- where encoded batches come from ------------------------------------------------------------
    def formats(self) -> list[str | None]:
        """Each input's format, detected from its first rows exactly as the local `validate_records` does."""
        from sftdata.validate import read_inputs, validate_records

        found = []
        read = self.config.read
        for source in self.inputs:
            stream = validate_records(read_inputs([source], read), read)
            next(stream, None)  # detection happens before the first record comes out
            found.append(stream.formats.get(source))
        self._formats = dict(zip(self.inputs, found, strict=True))
        return found

    def format_of(self, path: str) -> str:
        return (getattr(self, "_formats", {}) or {}).get(path) or self.config.read.format

    def encoded(self, skip: int) -> Any:
        import ray
        import ray.data

        c = self.config
        t = time.perf_counter()
        formats = self.formats()
        ranges = plan_ranges(self.inputs, c.read.split, max_row_bytes=c.read.max_row_bytes)
        self.timings["ray_plan_s"] += time.perf_counter() - t
        t = time.perf_counter()
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        explicit = isinstance(c.workers, int) and c.workers > 1  # `auto`: one actor per CPU of the cluster
        actors = c.workers if explicit else max(1, int(ray.cluster_resources().get("CPU", 1)))
        # Reads take no CPU slot: they only cut bytes into lines, and one actor per CPU encodes. With
        # read tasks asking for a CPU, a pool as large as the cluster starves them (measured: a hang).
        dataset = ray.data.read_datasource(datasource(ranges), num_cpus=0,
                                           override_num_blocks=len(ranges)).map_batches(
            EncodeRows, fn_constructor_args=(self.inputs, formats, c.read, self.stage, os.environ.get(CRASH_ENV)),
            batch_size=c.chunk_size, compute=ray.data.ActorPoolStrategy(size=actors))
        self.block_refs = dataset.to_arrow_refs()
        self.timings["ray_encode_s"] += time.perf_counter() - t
        t = time.perf_counter()
        meta_task = ray.remote(_block_meta)
        metas = ray.get([meta_task.remote(ref) for ref in self.block_refs])
        batches = list(self._ordered(metas, skip))
        self.timings["ray_collect_s"] += time.perf_counter() - t
        yield from batches

    def _ordered(self, metas: list[list[tuple[bytes, bytes]]], skip: int) -> Any:
        """Every outcome in input order (after `skip`), regrouped into chunks of `chunk_size`."""
        keys: list[np.ndarray] = []
        outcomes: list[int | Reject] = []
        batch_of: list[int] = []
        batch_docs: list[list[tuple[int, int, int, int, str, bool]]] = []
        for b, rows in enumerate(metas):
            for r, (key_bytes, meta_bytes) in enumerate(rows):
                keys.append(np.frombuffer(key_bytes, dtype=np.int64).reshape(-1, 3))
                found, lengths, doc_ids, truncated = pickle.loads(meta_bytes)
                starts = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])[:-1].tolist()
                batch_of.extend([len(batch_docs)] * len(found))
                batch_docs.append([(b, r, s, n, d, cut) for s, n, d, cut
                                   in zip(starts, lengths.tolist(), doc_ids, truncated, strict=True)])
                outcomes.extend(found)
        all_keys = np.concatenate(keys) if keys else np.zeros((0, 3), dtype=np.int64)
        order = np.lexsort((all_keys[:, 2], all_keys[:, 1], all_keys[:, 0]))
        items = islice(order.tolist(), skip, None)
        while chosen := list(islice(items, self.config.chunk_size)):
            chunk: list[Any] = []
            picked = []
            for i in chosen:
                outcome = outcomes[i]
                if isinstance(outcome, Reject):
                    chunk.append(outcome)
                else:
                    chunk.append(_DOC)
                    picked.append(batch_docs[batch_of[i]][outcome])
            yield chunk, RemoteBatch(
                input_ids=np.zeros(0, dtype=np.int32), labels=np.zeros(0, dtype=np.int32),
                lengths=np.array([p[3] for p in picked], dtype=np.int32), doc_ids=[p[4] for p in picked],
                truncated=[p[5] for p in picked], outcome=list(range(len(picked))),
                blocks=np.array([p[0] for p in picked], dtype=np.int64),
                rows=np.array([p[1] for p in picked], dtype=np.int64),
                starts=np.array([p[2] for p in picked], dtype=np.int64))

    # -- where a window's parts are written ---------------------------------------------------------
    def _flush(self, final: bool) -> None:
        self._open_parts = self.window.parts  # where the window's tokens are (the local job drops the window)
        super()._flush(final)

    def _write_parts(self, plan: list[list[int]], ids: np.ndarray, labels: np.ndarray, lengths: np.ndarray,
                     doc_ids: list[str]) -> list[PartEntry]:
        import ray

        if not plan:
            return []
        parts = self._open_parts
        blocks = np.concatenate([b.blocks[lo:hi] for b, lo, hi in parts])  # type: ignore[attr-defined]
        rows = np.concatenate([b.rows[lo:hi] for b, lo, hi in parts])  # type: ignore[attr-defined]
        starts = np.concatenate([b.starts[lo:hi] for b, lo, hi in parts])  # type: ignore[attr-defined]
        used, arg = np.unique(blocks, return_inverse=True)
        where = np.stack([arg.astype(np.int64), rows, starts], axis=1)
        task = ray.remote(_write_window)
        future = task.remote(str(self.folder), self.fingerprint, self.window_index, self.config.rows_per_shard,
                             plan, where, lengths, doc_ids, *[self.block_refs[u] for u in used.tolist()])
        self.journal.futures.append(future)  # type: ignore[attr-defined]
        return []  # filled in by `_DeferredJournal.drain` once the task is done
