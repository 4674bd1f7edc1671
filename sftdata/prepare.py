"""`prepare`: inputs -> packed Arrow shards + rejects + manifest, streaming, deterministic, crash-safe.

The job, as a loop over *windows* of documents (default 32,768; the 20k-row bench is one window):

    read (main) -> validate (main) -> encode (inline or spawned workers, batches of `chunk_size`,
    results in order) -> window full? -> plan BFD on lengths -> shuffle rows (seed, window)
    -> build rows -> write shard parts -> commit the window to the journal

Rejects are appended to `rejects.jsonl` as they come, in input order. Memory is bounded by one window
of tokens (8 bytes per token) plus the batches in flight, whatever the input size. Because a window
is a pure function of the records it holds and results are merged in input order, the bytes of every
shard do not depend on `workers` or `chunk_size`, or on where the output goes.

Why validate in the main process: format detection (`--format auto`) looks at a whole input, and
validation is ~5% of the floor; render + tokenize + mask (~90% of the work) is what workers take.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import chain, islice
from pathlib import Path
from typing import Any

import numpy as np

from sftdata._version import __version__
from sftdata.config import PipelineConfig
from sftdata.errors import ConfigError, InputError
from sftdata.faults import fault_point
from sftdata.fingerprint import fingerprint, input_sha256, tokenizer_files
from sftdata.manifest import (
    conservation_counts,
    MANIFEST_NAME,
    REJECTS_NAME,
    Counts,
    InputFile,
    Manifest,
    Packing,
    ShardInfo,
    TokenizerInfo,
)
from sftdata.pack import plan_packs, plan_unpacked
from sftdata.pipeline.journal import (
    JOURNAL_NAME,
    TMP_SUFFIX,
    Journal,
    JournalHeader,
    JournalState,
    PartEntry,
    WindowEntry,
    differences,
    final_shard_names,
    finalize,
    fsync_dir,
    incomplete_dir,
    part_name,
)
from sftdata.pipeline.pool import ordered_map
from sftdata.pipeline.rows import build_rows, shard_slices, shuffle_rows
from sftdata.pipeline.stages import EncodedBatch, StageOptions, encode_stage, get_encoder
from sftdata.records import Record, Reject
from sftdata.rejects import reject_line
from sftdata.shards import ShardWriter

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """Running totals handed to the progress callback after every batch."""

    rows_in: int = 0
    docs: int = 0
    tokens: int = 0
    rejected: int = 0


@dataclass
class PrepareResult:
    """What a run produced: the manifest, where it is, and how long each phase took."""

    out: Path
    manifest: Manifest
    timings: dict[str, float] = field(default_factory=dict)
    resumed: bool = False

    @property
    def exit_code(self) -> int:
        """1 when the reject fraction is above the limit (everything is still written), else 0."""
        return 1 if self.manifest.over_reject_limit else 0


@dataclass
class _Window:
    """Documents of the open window: slices of encoded batches, concatenated when it is planned."""

    parts: list[tuple[EncodedBatch, int, int]] = field(default_factory=list)
    docs: int = 0

    def add(self, batch: EncodedBatch, lo: int, hi: int) -> None:
        if hi > lo:
            self.parts.append((batch, lo, hi))
            self.docs += hi - lo

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], list[bool]]:
        ids, labels, lengths, doc_ids, truncated = [], [], [], [], []
        for batch, lo, hi in self.parts:
            offsets = batch.offsets
            ids.append(batch.input_ids[offsets[lo]:offsets[hi]])
            labels.append(batch.labels[offsets[lo]:offsets[hi]])
            lengths.append(batch.lengths[lo:hi])
            doc_ids.extend(batch.doc_ids[lo:hi])
            truncated.extend(batch.truncated[lo:hi])
        lens = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int32)
        empty = np.zeros(0, dtype=np.int32)
        return (np.concatenate(ids) if ids else empty, np.concatenate(labels) if labels else empty, lens,
                doc_ids, truncated)


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while chunk := list(islice(items, size)):
        yield chunk


def write_parts(folder: Path, fingerprint: str, window: int, rows_per_shard: int, plan: list[list[int]],
                ids: np.ndarray, labels: np.ndarray, lengths: np.ndarray, doc_ids: list[str]) -> list[PartEntry]:
    """Materialise one window's planned rows and write them as shard parts; returns each part's journal entry.

    A pure function of its arguments (the same bytes wherever it runs), so the Ray engine calls it
    in Ray tasks and a retried task rewrites the same files. Each part is written to a temp name
    (`NAME.PID.tmp`), fsynced and renamed: a file named `part-…arrow` is always whole, and a task
    left over from a killed run can only replace a part with the same bytes.
    """
    batch = build_rows(ids, labels, np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]), doc_ids, plan)
    shards = []
    for j, (lo, hi) in enumerate(shard_slices(len(plan), rows_per_shard)):
        name = part_name(window, j)
        tmp = Path(folder) / f"{name}.{os.getpid()}{TMP_SUFFIX}"
        writer = ShardWriter(tmp, fingerprint)
        writer.write_batch(batch.slice(lo, hi - lo))
        stats = writer.close()
        os.replace(tmp, Path(folder) / name)
        fault_point("part.done")
        shards.append(PartEntry(part=name, sha256=stats.sha256, rows=stats.rows, documents=stats.documents,
                                tokens=stats.tokens, supervised_tokens=stats.supervised_tokens))
    return shards


class _Job:
    """One run of `prepare` (state shared by the loop's steps; not a public API)."""

    def __init__(self, inputs: list[str], out: Path, config: PipelineConfig, resume: bool,
                 on_progress: Callable[[Progress], None] | None, encoder_factory: str | None) -> None:
        self.inputs, self.out, self.config, self.resume = inputs, out, config, resume
        self.encoder_factory = encoder_factory
        self.on_progress = on_progress
        self.folder = incomplete_dir(out)
        self.timings: Counter[str] = Counter()
        self.streams: list[Any] = []
        self.progress = Progress()

    # -- set-up -----------------------------------------------------------------------------------
    def describe(self) -> None:
        """Hash inputs and tokenizer, load the encoder, compute the fingerprint."""
        t = time.perf_counter()
        c = self.config
        assert c.tokenizer is not None
        self.stage = StageOptions(tokenizer=c.tokenizer, mask=c.mask, max_length=c.max_length,
                                  too_long=c.too_long.value,
                                  **({"encoder_factory": self.encoder_factory} if self.encoder_factory else {}))
        self.encoder = get_encoder(self.stage)
        self.template = getattr(self.encoder, "template_text", None)
        self.input_infos = [{"path": p, "sha256": input_sha256(p), "format": c.read.format, "split": c.read.split}
                            for p in self.inputs]
        self.tok_files = tokenizer_files(c.tokenizer)
        described = dict(inputs=self.input_infos, options=c.output_options(), tokenizer_files=self.tok_files,
                         chat_template=self.template, version=__version__)
        self.fingerprint = fingerprint(**described)  # type: ignore[arg-type]
        self.header = JournalHeader.of(fingerprint=self.fingerprint, **described)  # type: ignore[arg-type]
        self.timings["load_s"] += time.perf_counter() - t

    def records(self, skip: int) -> Iterator[Record | Reject]:
        """Every record of every input, in order, after the first `skip` (already committed)."""
        from sftdata.validate import read_inputs, validate_records

        def streams() -> Iterator[Iterator[Record | Reject]]:
            for path in self.inputs:
                stream = validate_records(read_inputs([path], self.config.read), self.config.read)
                self.streams.append(stream)
                yield stream

        return islice(chain.from_iterable(streams()), skip, None)

    # -- the loop -----------------------------------------------------------------------------------
    def run(self, state: JournalState, journal: Journal) -> JournalState:
        self.state = state
        self.journal = journal
        committed = state.last
        self.counts = Counter(committed.reasons) if committed else Counter()
        self.rows_in = state.next_row
        self.rejected = committed.rejected if committed else 0
        self.conservation: Counter[str] = Counter(committed.conservation) if committed else Counter()
        self.docs_written = committed.docs_written if committed else 0
        self.progress = Progress(rows_in=self.rows_in, docs=self.docs_written,
                                 tokens=sum(w.tokens for w in state.windows), rejected=self.rejected)
        self.window_index = len(state.windows)
        self.window = _Window()
        self.rejects_file = open(self.folder / REJECTS_NAME, "ab")  # noqa: SIM115 - closed below
        try:
            for chunk, batch in self.encoded(state.next_row):
                fault_point("encode")
                self._merge(chunk, batch)
                if self.on_progress:
                    self.on_progress(self.progress)
            self._flush(final=True)
        finally:
            self.rejects_file.close()
        return self.state

    def encoded(self, skip: int) -> Iterator[tuple[list[Record | Reject], EncodedBatch]]:
        """Chunks of validated items (after the first `skip`) with their encoded batch, in input order.

        The one step the Ray engine (`sftdata.pipeline.ray_engine`) replaces; windows, journal and
        manifest are shared.
        """
        c = self.config
        chunks: deque[list[Record | Reject]] = deque()

        def payloads() -> Iterator[list[Record]]:
            t = time.perf_counter()
            for chunk in _chunks(self.records(skip), c.chunk_size):
                chunks.append(chunk)
                self.timings["read_validate_s"] += time.perf_counter() - t
                yield [x for x in chunk if isinstance(x, Record)]
                t = time.perf_counter()

        encode = partial(encode_stage, options=self.stage)
        t = time.perf_counter()
        for batch in ordered_map(encode, payloads(), c.workers):
            self.timings["encode_wait_s"] += time.perf_counter() - t
            yield chunks.popleft(), batch
            t = time.perf_counter()

    def _merge(self, chunk: list[Record | Reject], batch: EncodedBatch) -> None:
        """Route one batch's outcomes in input order: rejects to the file, documents to the window."""
        k = 0
        run_lo = None
        for item in chunk:
            found: dict[str, int] | None = None
            if isinstance(item, Record):
                docs = batch.docs_of(k)
                reject = batch.rejects.get(k)
                found = batch.counts.get(k)
                k += 1
            else:
                docs, reject = range(0), item
            if docs:
                # a record's documents (its own and any `ID#K`) stay in one window, so a resume that restarts
                # at a record boundary never writes half of them twice; a window may pass pack_window by those
                if self.window.docs + (docs.start - run_lo if run_lo is not None else 0) >= self.config.pack_window:
                    if run_lo is not None:
                        self.window.add(batch, run_lo, docs.start)
                        run_lo = None
                    self._flush(final=False)
                if run_lo is None:
                    run_lo = docs.start
                self.rows_in += 1
                self.docs_written += len(docs)
                self.progress.tokens += int(batch.lengths[docs.start:docs.stop].sum())
                if found:
                    self.conservation.update(found)
            else:
                assert reject is not None
                self._write_reject(reject)
        if run_lo is not None:
            self.window.add(batch, run_lo, len(batch.lengths))
        self.progress.rows_in, self.progress.docs, self.progress.rejected = (
            self.rows_in, self.docs_written, self.rejected)

    def _write_reject(self, reject: Reject) -> None:
        self.rejects_file.write(reject_line(reject).encode("utf-8") + b"\n")
        fault_point("reject", self.rejects_file.flush)  # stopped here, the uncommitted tail is on disk
        self.rows_in += 1
        self.rejected += 1
        for code in dict.fromkeys(reject.codes):
            self.counts[code.value] += 1

    def _flush(self, final: bool) -> None:
        """Plan, build and write the open window, then commit it (the last one even when empty)."""
        if not final and self.window.docs == 0:
            return
        if final and self.window.docs == 0 and self.rows_in == self.state.next_row:
            return  # nothing after the last commit
        c = self.config
        t = time.perf_counter()
        ids, labels, lengths, doc_ids, truncated = self.window.arrays()
        self.window = _Window()  # drop the batches now: only the concatenated copy stays alive
        plan = plan_packs(lengths, c.max_length) if c.pack else plan_unpacked(lengths)
        if c.shuffle:
            plan = shuffle_rows(plan, c.seed, self.window_index)
        self.timings["pack_s"] += time.perf_counter() - t
        t = time.perf_counter()
        shards = self._write_parts(plan, ids, labels, lengths, doc_ids)
        del ids, labels
        self.rejects_file.flush()
        os.fsync(self.rejects_file.fileno())
        self.timings["write_s"] += time.perf_counter() - t
        entry = WindowEntry(
            window=self.window_index, next_row=self.rows_in, rejects_offset=self.rejects_file.tell(),
            rejected=self.rejected, docs_written=self.docs_written, reasons=dict(sorted(self.counts.items())),
            rows=len(plan), tokens=int(lengths.sum()), shards=shards,
            truncated_docs=[d for d, cut in zip(doc_ids, truncated, strict=True) if cut],
            conservation=dict(sorted(self.conservation.items())),
        )
        self.journal.commit(entry)
        self.state.windows.append(entry)
        self.window_index += 1

    def _write_parts(self, plan: list[list[int]], ids: np.ndarray, labels: np.ndarray, lengths: np.ndarray,
                     doc_ids: list[str]) -> list[PartEntry]:
        """Build and write the open window's shard parts (the Ray engine writes them in Ray tasks)."""
        return write_parts(self.folder, self.fingerprint, self.window_index, self.config.rows_per_shard,
                           plan, ids, labels, lengths, doc_ids)

    # -- the manifest -------------------------------------------------------------------------------
    def format_of(self, path: str) -> str:
        """The format `to_records` detected for an input (the configured one if it had no rows)."""
        for stream in self.streams:
            found = getattr(stream, "formats", {}).get(path)
            if found:
                return found
        return self.config.read.format

    def manifest(self, state: JournalState) -> Manifest:
        c = self.config
        last = state.last
        shard_entries = [s for w in state.windows for s in w.shards]
        shards = [ShardInfo(file=final, **s.model_dump(exclude={"part"}))
                  for (_, final), s in zip(final_shard_names(state), shard_entries, strict=True)]
        truncated_docs = [d for w in state.windows for d in w.truncated_docs]
        rows = sum(w.rows for w in state.windows)
        tokens = sum(w.tokens for w in state.windows)
        lower = math.ceil(tokens / c.max_length)
        rows_in = last.next_row if last else 0
        rejected = last.rejected if last else 0
        return Manifest(
            sftdata_version=__version__,
            fingerprint=self.fingerprint,
            inputs=[InputFile(**{**i, "format": state.formats.get(i["path"], c.read.format)}) for i in self.input_infos],
            tokenizer=TokenizerInfo(path=c.tokenizer or "", files=self.tok_files),
            chat_template=self.template,
            options=c.output_options(),
            shards=shards,
            counts=Counts(rows_in=rows_in, docs_written=last.docs_written if last else 0, rejected=rejected,
                          reasons=last.reasons if last else {}, truncated=len(truncated_docs),
                          **conservation_counts(last.conservation if last else {})),
            packing=Packing(packed=c.pack, capacity=c.max_length, rows=rows, tokens=tokens,
                            efficiency=round(tokens / (rows * c.max_length), 6) if rows else 1.0,
                            lower_bound_rows=lower,
                            lower_bound_efficiency=round(tokens / (lower * c.max_length), 6) if lower else 1.0,
                            seed=c.seed),
            truncated_docs=truncated_docs,
            max_reject_fraction=c.max_reject_fraction,
            over_reject_limit=rows_in > 0 and rejected / rows_in > c.max_reject_fraction,
        )


def _remove_output(folder: Path) -> None:
    """Delete an output or `.incomplete` folder; its manifest and journal go first, so a kill midway
    never leaves a folder that looks finished or resumable."""
    if not folder.is_dir():
        folder.unlink()
        return
    for name in (MANIFEST_NAME, JOURNAL_NAME):
        (folder / name).unlink(missing_ok=True)
    fsync_dir(folder)
    shutil.rmtree(folder)


def _differs(manifest: Manifest, header: JournalHeader) -> str:
    """What differs between a finished folder's job and this one, e.g. `option seed: 0 -> 5`."""
    return "; ".join(differences(JournalHeader.from_manifest(manifest), header))


def prepare(inputs: list[str], out: str | Path, config: PipelineConfig, *, resume: bool = False,
            overwrite: bool = False, on_progress: Callable[[Progress], None] | None = None,
            encoder_factory: str | None = None) -> PrepareResult:
    """Prepare training shards from instruction data.

    Args:
        inputs: files or Hugging Face datasets, as given by the user (kept as given in the manifest).
        out: the output folder; written as `OUT.incomplete/` and renamed when complete.
        config: the resolved pipeline config (`sftdata.config.resolve_config`).
        resume: continue an interrupted run from `OUT.incomplete/` (the result is byte-identical); with
            nothing to resume, start afresh and log a warning saying so.
        overwrite: replace an existing finished `OUT`.
        on_progress: called with running totals after every batch (for progress bars).
        encoder_factory: `module:callable` building the encoder from (tokenizer, MaskOptions), for custom
            encoders and tests; default `sftdata.chat.engine:ChatEncoder.load`.

    Returns:
        The manifest and timings; `exit_code` is 1 when the reject fraction is over the limit.

    Raises:
        ConfigError: no tokenizer, no inputs, or `out` exists.
        InputError: an input cannot be read, or `--resume` finds another job's folder (the message names
            each input or option that differs, with its old and new value).
    """
    start = time.perf_counter()
    if not inputs:
        raise ConfigError("no inputs: give one or more files or datasets, e.g. `sftdata prepare data.jsonl ...`")
    if config.tokenizer is None:
        raise ConfigError("no tokenizer: pass --tokenizer FOLDER_OR_HUB_ID or set `tokenizer:` in the config")
    out = Path(out)
    already_done = resume and not overwrite and (out / MANIFEST_NAME).is_file()
    if out.exists() and not already_done:
        if not overwrite:
            finished = (out / MANIFEST_NAME).is_file()
            what = "a finished sftdata folder" if finished else "a folder that is not a finished sftdata output"
            raise ConfigError(f"{out} already exists ({what}); choose another --out, or pass --overwrite to "
                              "replace it")
        _remove_output(out)
    job_class = _Job
    if config.engine == "ray":
        from sftdata.pipeline.ray_engine import RayJob

        job_class = RayJob
    job = job_class(list(inputs), out, config, resume, on_progress, encoder_factory)
    job.describe()
    if already_done:  # `--resume` after the run finished: nothing to do if it is this job's output
        manifest = Manifest.load(out)
        if manifest.fingerprint != job.fingerprint:
            raise ConfigError(f"{out} is a finished folder of another job: {_differs(manifest, job.header)}; choose "
                              "another --out, or pass --overwrite to replace it")
        return PrepareResult(out, manifest, {"total_s": round(time.perf_counter() - start, 3)}, resumed=True)
    journal = Journal(job.folder, job.header)
    committed: JournalState | None = None
    if resume:
        if (job.folder / MANIFEST_NAME).is_file():  # killed between the manifest and the rename
            manifest = Manifest.load(job.folder)
            if manifest.fingerprint != job.fingerprint:
                raise InputError(f"{job.folder} holds another job's output: {_differs(manifest, job.header)}; run "
                                 "without --resume to start over")
            (job.folder / JOURNAL_NAME).unlink(missing_ok=True)
            job.folder.replace(out)
            return PrepareResult(out, manifest, {"total_s": time.perf_counter() - start}, resumed=True)
        committed = journal.load() if job.folder.is_dir() else None
        if committed is None:
            why = "holds no complete journal" if job.folder.is_dir() else "does not exist"
            log.warning("--resume: nothing to resume (%s %s); starting afresh", job.folder, why)
    resumed = committed is not None
    if committed is not None:
        journal.rewind(committed)
        state = committed
    else:
        if job.folder.exists():
            _remove_output(job.folder)
        job.folder.mkdir(parents=True)
        fault_point("start")
        journal.start()
        state = JournalState()
    if not state.done:
        state = job.run(state, journal)
        state.formats = {p: job.format_of(p) for p in job.inputs}
        journal.mark_done(state.formats)
        state.done = True
    manifest = job.manifest(state)
    finalize(job.folder, out, state, manifest.to_json_text())
    job.timings["total_s"] = time.perf_counter() - start
    return PrepareResult(out, manifest, {k: round(v, 3) for k, v in job.timings.items()}, resumed=resumed)
