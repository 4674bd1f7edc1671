"""The one `prepare` job, engine-agnostic: batches in -> windows -> plan -> write -> journal -> manifest.

    engine's BatchSource: Batch, Batch, ... (every record's outcome, in input order)
        -> rejects appended to rejects.jsonl as they come
        -> kept records' documents gathered into the open window (`WindowCutter` says when it is full)
        -> window full: plan (`plan_window`) -> engine's PartWriter -> fsync rejects -> journal commit
    after the last batch: the last window (even empty), then `manifest_of` from the committed state

An engine supplies exactly two things (composition, no subclassing): a `BatchSource` (where encoded
batches come from: the local engine reads, validates and encodes in this process or a worker pool;
the Ray engine runs Ray Data) and a `PartWriter` (where a window's parts are written: locally at
once, or in a Ray task). Everything that decides bytes or the journal (windows, plan, shuffle,
rejects, commits, manifest) is here, once, so both engines write identical output by construction.

Commits are in window order. A part writer returns a `concurrent.futures.Future`: the local one is
already done (the window is committed at once, as before); a Ray write task's future completes later,
and each window is committed when it and every window before it are written (the rest at the end).
A window's journal entry carries the rejects length and record position of the moment it was
closed, so a commit made later is still exact.

Memory: one window's batches until it is planned; the job drops its reference to them when it hands
them to the part writer, which frees them as soon as it has gathered the tokens.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from sftdata._version import __version__
from sftdata.config import PipelineConfig
from sftdata.faults import fault_point
from sftdata.fingerprint import fingerprint, input_sha256, tokenizer_files
from sftdata.manifest import REJECTS_NAME, Counts, InputFile, Manifest, ShardInfo, TokenizerInfo, conservation_counts
from sftdata.pack import WindowCutter
from sftdata.pipeline.batch import Batch, Kept
from sftdata.pipeline.encode import StageOptions, get_encoder
from sftdata.pipeline.journal import Journal, JournalHeader, JournalState, PartEntry, WindowEntry, final_shard_names
from sftdata.pipeline.plan import packing, plan_window
from sftdata.records import Reject
from sftdata.rejects import reject_line

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)

Slice = tuple[Batch[T], int, int]
"""Documents `lo:hi` of one batch."""


@dataclass
class Progress:
    """Running totals handed to the progress callback after every batch."""

    rows_in: int = 0
    docs: int = 0
    tokens: int = 0
    rejected: int = 0


class BatchSource(Protocol[T]):
    """Where encoded batches come from (an engine's first half)."""

    def batches(self, skip: int) -> Iterator[Batch[T]]:
        """Every input record's outcome after the first `skip` records, in input order, in batches."""
        ...

    def formats(self) -> dict[str, str]:
        """Input -> the format detected for it (after `batches` is consumed; inputs without one absent)."""
        ...


class PartWriter(Protocol[T_contra]):
    """Where a window's shard parts are written (an engine's second half)."""

    def __call__(self, window: int, plan: list[list[int]], slices: list[Slice[T_contra]], lengths: np.ndarray,
                 doc_ids: list[str]) -> Future[list[PartEntry]]:
        """Write window `window`'s planned rows (documents: `slices`, in order) as parts `part-WINDOW-*`.

        The writer may `clear()` `slices` once it has the tokens (the job holds no other reference).
        """
        ...


@dataclass(frozen=True)
class JobSpec:
    """What a job is: its inputs, options, encoder and the fingerprint they make (computed once)."""

    inputs: list[str]
    config: PipelineConfig
    stage: StageOptions
    template: str | None
    input_infos: list[dict[str, Any]]
    """Each input as hashed for the fingerprint (`path`, `sha256`, `format`, `split`)."""
    tokenizer_files: dict[str, str]
    fingerprint: str
    header: JournalHeader


def describe(inputs: list[str], config: PipelineConfig, encoder_factory: str | None = None) -> JobSpec:
    """Hash inputs and tokenizer, load the encoder (for its template), compute the fingerprint."""
    c = config
    assert c.tokenizer is not None
    stage = StageOptions(tokenizer=c.tokenizer, mask=c.mask, max_length=c.max_length, too_long=c.too_long.value,
                         **({"encoder_factory": encoder_factory} if encoder_factory else {}))
    template = getattr(get_encoder(stage), "template_text", None)
    input_infos = [{"path": p, "sha256": input_sha256(p), "format": c.read.format, "split": c.read.split}
                   for p in inputs]
    tok_files = tokenizer_files(c.tokenizer)
    described = dict(inputs=input_infos, options=c.output_options(), tokenizer_files=tok_files,
                     chat_template=template, version=__version__)
    fp = fingerprint(**described)  # type: ignore[arg-type]
    return JobSpec(inputs=list(inputs), config=c, stage=stage, template=template, input_infos=input_infos,
                   tokenizer_files=tok_files, fingerprint=fp,
                   header=JournalHeader.of(fingerprint=fp, **described))  # type: ignore[arg-type]


@dataclass
class Totals(Progress):
    """Running totals of the run so far (a resume starts from the last commit's); the progress callback's value."""

    reasons: Counter[str] = field(default_factory=Counter)
    """Reject counts by reason code."""
    conservation: Counter[str] = field(default_factory=Counter)
    """What the manifest counts for kept records (`allowed_drop.KIND`, `split_docs`, ...)."""

    @classmethod
    def after(cls, state: JournalState) -> Totals:
        """The totals at the last commit of `state`."""
        last = state.last
        if last is None:
            return cls()
        return cls(rows_in=last.next_row, docs=last.docs_written, tokens=sum(w.tokens for w in state.windows),
                   rejected=last.rejected, reasons=Counter(last.reasons), conservation=Counter(last.conservation))


@dataclass
class Window(Generic[T]):
    """The open window: slices of batches whose documents it holds, in input order."""

    slices: list[Slice[T]] = field(default_factory=list)

    def add(self, batch: Batch[T], lo: int, hi: int) -> None:
        if hi > lo:
            self.slices.append((batch, lo, hi))

    def columns(self) -> tuple[np.ndarray, list[str], list[bool]]:
        """Lengths, doc ids and truncation flags of the window's documents, concatenated."""
        lengths = [b.lengths[lo:hi] for b, lo, hi in self.slices]
        doc_ids = [d for b, lo, hi in self.slices for d in b.doc_ids[lo:hi]]
        truncated = [t for b, lo, hi in self.slices for t in b.truncated[lo:hi]]
        return (np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int32)), doc_ids, truncated


class Job(Generic[T]):
    """One run over the records not yet committed (see the module docstring).

    Args:
        spec: what the job is (`describe`).
        folder: the run's `OUT.incomplete/`.
        source: the engine's batch source.
        write: the engine's part writer.
        state: what the journal has committed (empty for a fresh run).
        journal: the run's journal.
        timings: seconds per phase, added to in place.
        on_progress: called with the running totals after every batch.
    """

    def __init__(self, spec: JobSpec, folder: Path, source: BatchSource[T], write: PartWriter[T],
                 state: JournalState, journal: Journal, timings: Counter[str],
                 on_progress: Callable[[Progress], None] | None = None) -> None:
        self.spec, self.config, self.folder = spec, spec.config, folder
        self.source, self.write = source, write
        self.state, self.journal = state, journal
        self.timings, self.on_progress = timings, on_progress
        self.totals = Totals.after(state)
        self.cutter = WindowCutter(self.config.pack_window)
        self.window: Window[T] = Window()
        self.pending: list[tuple[WindowEntry, Future[list[PartEntry]]]] = []
        """Closed windows handed to the writer, not yet committed (in window order)."""

    def run(self) -> JournalState:
        """Consume the source from the committed position, commit every window, mark the journal done."""
        state = self.state
        with open(self.folder / REJECTS_NAME, "ab") as self.rejects:
            for batch in self.source.batches(state.next_row):
                fault_point("encode")
                self._take(batch)
                if self.on_progress:
                    self.on_progress(self.totals)
            self._close_window(final=True)
        t = time.perf_counter()
        self._commit(wait=True)
        self.timings["write_s"] += time.perf_counter() - t
        formats = self.source.formats()
        state.formats = {p: formats.get(p) or self.config.read.format for p in self.spec.inputs}
        self.journal.mark_done(state.formats)
        state.done = True
        return state

    def _take(self, batch: Batch[T]) -> None:
        """Route one batch's outcomes in input order: rejects to the file, documents to the window."""
        run_lo: int | None = None  # first document of the batch not yet added to the window
        for outcome in batch.outcomes:
            if not isinstance(outcome, Kept):
                self._reject(outcome)
                continue
            docs = outcome.docs
            # a record's documents (its own and any `ID#K`) stay in one window, so a resume that restarts
            # at a record boundary never writes half of them twice
            if self.cutter.add(len(docs)):
                if run_lo is not None:
                    self.window.add(batch, run_lo, docs.start)
                    run_lo = None
                self._close_window(final=False)
            if run_lo is None:
                run_lo = docs.start
            self.totals.rows_in += 1
            self.totals.docs += len(docs)
            self.totals.tokens += int(batch.lengths[docs.start:docs.stop].sum())
            self.totals.conservation.update(outcome.counts)
        if run_lo is not None:
            self.window.add(batch, run_lo, len(batch.lengths))

    def _reject(self, reject: Reject) -> None:
        self.rejects.write(reject_line(reject).encode("utf-8") + b"\n")
        fault_point("reject", self.rejects.flush)  # stopped here, the uncommitted tail is on disk
        self.totals.rows_in += 1
        self.totals.rejected += 1
        for code in dict.fromkeys(reject.codes):
            self.totals.reasons[code.value] += 1

    def _close_window(self, final: bool) -> None:
        """Plan the open window, hand it to the part writer, then commit it (the last one even when empty)."""
        if not self.window.slices and (not final or self.totals.rows_in == self.state.next_row):
            return  # nothing in it (the last window: nothing since the last commit)
        c, totals, index = self.config, self.totals, len(self.state.windows)
        t = time.perf_counter()
        lengths, doc_ids, truncated = self.window.columns()
        slices, self.window = self.window.slices, Window()
        plan = plan_window(lengths, c, index)
        self.timings["pack_s"] += time.perf_counter() - t
        t = time.perf_counter()
        written = self.write(index, plan, slices, lengths, doc_ids)
        del slices  # the writer holds the only reference now
        self.rejects.flush()
        os.fsync(self.rejects.fileno())
        self.timings["write_s"] += time.perf_counter() - t
        entry = WindowEntry(
            window=index, next_row=totals.rows_in, rejects_offset=self.rejects.tell(), rejected=totals.rejected,
            docs_written=totals.docs, reasons=dict(sorted(totals.reasons.items())), rows=len(plan),
            tokens=int(lengths.sum()), shards=[],
            truncated_docs=[d for d, cut in zip(doc_ids, truncated, strict=True) if cut],
            conservation=dict(sorted(totals.conservation.items())),
        )
        self.state.windows.append(entry)
        self.pending.append((entry, written))
        self._commit(wait=False)

    def _commit(self, wait: bool) -> None:
        """Commit pending windows in order: those already written (all of them with `wait`)."""
        while self.pending and (wait or self.pending[0][1].done()):
            entry, written = self.pending.pop(0)
            entry.shards.extend(written.result())  # the entry object `state.windows` holds
            self.journal.commit(entry)


def manifest_of(spec: JobSpec, state: JournalState) -> Manifest:
    """The manifest of a finished job, from its journal state alone (a resumed finish reads no input)."""
    c = spec.config
    last = state.last
    shard_entries = [s for w in state.windows for s in w.shards]
    shards = [ShardInfo(file=final, **s.model_dump(exclude={"part"}))
              for (_, final), s in zip(final_shard_names(state), shard_entries, strict=True)]
    truncated_docs = [d for w in state.windows for d in w.truncated_docs]
    rows_in = last.next_row if last else 0
    rejected = last.rejected if last else 0
    return Manifest(
        sftdata_version=__version__,
        fingerprint=spec.fingerprint,
        inputs=[InputFile(**{**i, "format": state.formats.get(i["path"], c.read.format)}) for i in spec.input_infos],
        tokenizer=TokenizerInfo(path=c.tokenizer or "", files=spec.tokenizer_files),
        chat_template=spec.template,
        options=c.output_options(),
        shards=shards,
        counts=Counts(rows_in=rows_in, docs_written=last.docs_written if last else 0, rejected=rejected,
                      reasons=last.reasons if last else {}, truncated=len(truncated_docs),
                      **conservation_counts(last.conservation if last else {})),
        packing=packing(sum(w.rows for w in state.windows), sum(w.tokens for w in state.windows), c),
        truncated_docs=truncated_docs,
        max_reject_fraction=c.max_reject_fraction,
        over_reject_limit=rows_in > 0 and rejected / rows_in > c.max_reject_fraction,
    )
