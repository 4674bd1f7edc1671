"""`prepare`: inputs -> packed Arrow shards + rejects + manifest, streaming, deterministic, crash-safe.

This module is the entry point: it checks the request, decides fresh / resume / already done, builds
the job from its parts and finalizes the folder. The job itself is `sftdata.pipeline.job.Job`, a loop
over *windows* of documents (default 32,768; the 20k-row bench is one window):

    read (main) -> validate (main) -> encode (one process: one pipeline through all batches, the tokenizer
    encoding while the next batch is read; or spawned workers, batches of `chunk_size`, results in order)
    -> window full? -> plan BFD on lengths -> shuffle rows (seed, window)
    -> build rows -> write shard parts -> commit the window to the journal

composed from an engine's batch source and part writer (`sftdata.pipeline.local.LocalEngine`, or
`sftdata.pipeline.ray_engine.RayEngine` for `--engine ray`); see `sftdata.pipeline` for the steps.

Rejects are appended to `rejects.jsonl` as they come, in input order. Memory is bounded by one window
of tokens (8 bytes per token) plus the batches in flight, whatever the input size. Because a window
is a pure function of the records it holds and results are merged in input order, the bytes of every
shard do not depend on `workers` or `chunk_size`, or on where the output goes.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sftdata.config import PipelineConfig
from sftdata.errors import ConfigError, InputError
from sftdata.faults import fault_point
from sftdata.heap import steady_heap
from sftdata.manifest import MANIFEST_NAME, Manifest
from sftdata.pipeline.job import Job, Progress, describe, manifest_of
from sftdata.pipeline.journal import (
    JOURNAL_NAME,
    Journal,
    JournalHeader,
    JournalState,
    differences,
    finalize,
    fsync_dir,
    incomplete_dir,
)
from sftdata.pipeline.local import LocalEngine

__all__ = ["PrepareResult", "Progress", "prepare"]

log = logging.getLogger(__name__)


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
    timings: Counter[str] = Counter()
    t = time.perf_counter()
    spec = describe(list(inputs), config, encoder_factory)
    timings["load_s"] += time.perf_counter() - t
    folder = incomplete_dir(out)
    if already_done:  # `--resume` after the run finished: nothing to do if it is this job's output
        manifest = Manifest.load(out)
        if manifest.fingerprint != spec.fingerprint:
            raise ConfigError(f"{out} is a finished folder of another job: {_differs(manifest, spec.header)}; choose "
                              "another --out, or pass --overwrite to replace it")
        return PrepareResult(out, manifest, {"total_s": round(time.perf_counter() - start, 3)}, resumed=True)
    journal = Journal(folder, spec.header)
    committed: JournalState | None = None
    if resume:
        if (folder / MANIFEST_NAME).is_file():  # killed between the manifest and the rename
            manifest = Manifest.load(folder)
            if manifest.fingerprint != spec.fingerprint:
                raise InputError(f"{folder} holds another job's output: {_differs(manifest, spec.header)}; run "
                                 "without --resume to start over")
            (folder / JOURNAL_NAME).unlink(missing_ok=True)
            folder.replace(out)
            return PrepareResult(out, manifest, {"total_s": time.perf_counter() - start}, resumed=True)
        committed = journal.load() if folder.is_dir() else None
        if committed is None:
            why = "holds no complete journal" if folder.is_dir() else "does not exist"
            log.warning("--resume: nothing to resume (%s %s); starting afresh", folder, why)
    resumed = committed is not None
    if committed is not None:
        journal.rewind(committed)
        state = committed
    else:
        if folder.exists():
            _remove_output(folder)
        folder.mkdir(parents=True)
        fault_point("start")
        journal.start()
        state = JournalState()
    if not state.done:
        if config.engine == "ray":
            from sftdata.pipeline.ray_engine import RayEngine

            engine: LocalEngine | RayEngine = RayEngine(spec, folder, timings)
        else:
            engine = LocalEngine(spec, folder, timings)
        with engine, steady_heap():  # after the set-up: the tokenizer and template live for the whole job
            state = Job(spec, folder, engine, engine.write, state, journal, timings, on_progress).run()
    manifest = manifest_of(spec, state)
    finalize(folder, out, state, manifest.to_json_text())
    timings["total_s"] = time.perf_counter() - start
    return PrepareResult(out, manifest, {k: round(v, 3) for k, v in timings.items()}, resumed=resumed)
