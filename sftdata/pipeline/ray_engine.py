"""`prepare --engine ray`: a batch source and a part writer for the one job, on Ray Data.

    driver: plan read ranges (ray_read), resolve each input's format from its first rows
    Ray Data: read ranges -> map_batches(EncodeRows) in an actor pool (tokenizer loaded once per actor)
              -> one output row per batch: tokens (stay in the object store) + metadata
    driver: fetch metadata only (outcomes, lengths, doc ids), sort by (input, row), regroup into
            `Batch`es of `chunk_size` outcomes whose tokens are `RemoteTokens` -> the job
            (`sftdata.pipeline.job`: windows, plan, shuffle, rejects, journal, manifest)
    Ray tasks: one per window, `write_parts` (the local write step) into DIR.incomplete/

`RayEngine` supplies exactly what `LocalEngine` does, a batch source (`batches`, `formats`) and a part
writer (`write`), and nothing else: everything that decides bytes (validation, encoding, cutting,
windowing, packing plan, shuffle, row building, shard writing, rejects, journal, manifest) is the
same code as the local engine's, so identical output is by construction and checked by
`tests/test_ray_engine.py`. A write task's future completes when its parts are on disk; the job
commits windows in order as they complete.

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
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from sftdata.errors import ConfigError
from sftdata.pipeline.batch import Batch, Kept, Outcome
from sftdata.pipeline.job import JobSpec, Slice
from sftdata.pipeline.journal import PartEntry
from sftdata.pipeline.ray_encode import EncodeRows
from sftdata.pipeline.ray_read import datasource, plan_ranges
from sftdata.pipeline.write import write_parts

CRASH_ENV = "SFTDATA_RAY_CRASH_ONCE"
"""Tests only: a path; the first encode call in the cluster creates it and kills its worker."""


@dataclass(frozen=True)
class RemoteTokens:
    """Where each document of a batch has its tokens: a batch row of an encoded block in the object store."""

    blocks: np.ndarray
    """int64 per document: index of its block in `RayEngine.block_refs`."""
    rows: np.ndarray
    """int64 per document: row of its batch in that block."""
    starts: np.ndarray
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


class RayEngine:
    """Encodes on Ray Data and writes each window's parts in a Ray task (see the module docstring).

    Args:
        spec: the job (`sftdata.pipeline.job.describe`).
        folder: the run's `OUT.incomplete/` (on storage every node sees).
        timings: seconds per phase, added to in place.
    """

    def __init__(self, spec: JobSpec, folder: Path, timings: Counter[str]) -> None:
        self.spec, self.config, self.folder, self.timings = spec, spec.config, folder, timings
        self.inputs = spec.inputs
        self.block_refs: list[Any] = []
        self._formats: dict[str, str | None] = {}
        self.started_ray = False

    def __enter__(self) -> RayEngine:
        self.started_ray = connect(self.config.ray_address)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started_ray:
            import ray

            ray.shutdown()

    # -- the batch source ---------------------------------------------------------------------------
    def detect_formats(self) -> list[str | None]:
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

    def formats(self) -> dict[str, str]:
        return {path: fmt for path, fmt in self._formats.items() if fmt}

    def batches(self, skip: int) -> Iterator[Batch[RemoteTokens]]:
        """Every outcome after the first `skip`, in input order; encoding runs on Ray Data first."""
        import ray
        import ray.data

        c = self.config
        t = time.perf_counter()
        formats = self.detect_formats()
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
            EncodeRows, fn_constructor_args=(self.inputs, formats, c.read, self.spec.stage,
                                             os.environ.get(CRASH_ENV)),
            batch_size=c.chunk_size, compute=ray.data.ActorPoolStrategy(size=actors))
        self.block_refs = dataset.to_arrow_refs()
        self.timings["ray_encode_s"] += time.perf_counter() - t
        t = time.perf_counter()
        meta_task = ray.remote(_block_meta)
        metas = ray.get([meta_task.remote(ref) for ref in self.block_refs])
        batches = list(self._ordered(metas, skip))
        self.timings["ray_collect_s"] += time.perf_counter() - t
        yield from batches

    def _ordered(self, metas: list[list[tuple[bytes, bytes]]], skip: int) -> Iterator[Batch[RemoteTokens]]:
        """Every outcome in input order (after `skip`), regrouped into batches of `chunk_size` outcomes."""
        keys: list[np.ndarray] = []
        outcomes: list[Outcome] = []
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
            regrouped: list[Outcome] = []
            picked: list[tuple[int, int, int, int, str, bool]] = []
            for i in chosen:
                outcome = outcomes[i]
                if isinstance(outcome, Kept):  # renumber its documents within the regrouped batch
                    docs = batch_docs[batch_of[i]]
                    regrouped.append(Kept(range(len(picked), len(picked) + len(outcome.docs)), outcome.counts))
                    picked.extend(docs[d] for d in outcome.docs)
                else:
                    regrouped.append(outcome)
            yield Batch(
                outcomes=regrouped, lengths=np.array([p[3] for p in picked], dtype=np.int32),
                doc_ids=[p[4] for p in picked], truncated=[p[5] for p in picked],
                tokens=RemoteTokens(blocks=np.array([p[0] for p in picked], dtype=np.int64),
                                    rows=np.array([p[1] for p in picked], dtype=np.int64),
                                    starts=np.array([p[2] for p in picked], dtype=np.int64)))

    # -- the part writer ----------------------------------------------------------------------------
    def write(self, window: int, plan: list[list[int]], slices: list[Slice[RemoteTokens]], lengths: np.ndarray,
              doc_ids: list[str]) -> Future[list[PartEntry]]:
        """Start a Ray task that gathers the window's tokens from the object store and writes its parts."""
        import ray

        if not plan:
            done: Future[list[PartEntry]] = Future()
            done.set_result([])
            return done
        blocks = np.concatenate([b.tokens.blocks[lo:hi] for b, lo, hi in slices])
        rows = np.concatenate([b.tokens.rows[lo:hi] for b, lo, hi in slices])
        starts = np.concatenate([b.tokens.starts[lo:hi] for b, lo, hi in slices])
        slices.clear()
        used, arg = np.unique(blocks, return_inverse=True)
        where = np.stack([arg.astype(np.int64), rows, starts], axis=1)
        task = ray.remote(_write_window)
        ref = task.remote(str(self.folder), self.spec.fingerprint, window, self.config.rows_per_shard, plan, where,
                          lengths, doc_ids, *[self.block_refs[u] for u in used.tolist()])
        return ref.future()
