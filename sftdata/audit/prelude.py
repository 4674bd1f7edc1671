"""Conservation in a process of its own, forked before the main process imports transformers.

Why: the audit's main process spends its first seconds (about a quarter of the whole audit on the bench)
importing transformers and torch and loading the tokenizer, on one core, and nothing can be rendered
before that. Conservation renders nothing: it reads the raw rows, decodes the stored ids and looks for
each text. So a child forked first does it on the idle core, with the `tokenizers` library and the
folder's `tokenizer.json`; the main process, whose workers re-derive every mask meanwhile, checks only
the rows the child left to it and adds the child's findings at the end.

Exact, or not used:
- the child decodes with its own tokenizer only if that serialises exactly like the backend of the
  transformers tokenizer the main process loaded (sha256 of `to_str()`). Otherwise the child is stopped
  and the main process checks every row itself, as it does on one core (`SFTDATA_CPUS=1`), for a
  tokenizer that is not a local folder with a `tokenizer.json`, and for `--shards-only`.
- the child pairs rows with their documents by `pairing.Claims`, and the main process checks the rows
  that rule defers (a doc id stored more than once), with the pairing its re-derivation settles.
- the child reads and interprets the rows with the audit's own reader (`audit.sources`), under the same
  manifest, as the main process does.

No process is left behind: the child is stopped and joined on every way out of the audit, and exits by
itself within 0.5 s if the main process is killed. A child killed from outside ends the audit with a
clear error, as a dead worker does.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sftdata.audit.conserve import Conservation, DropPolicy
from sftdata.audit.findings import Findings
from sftdata.audit.pairing import Claims, DocIndex, row_claims
from sftdata.audit.sources import batches, rejected_positions, source_rows
from sftdata.audit.tables import shard_view
from sftdata.errors import InputError, SftdataError
from sftdata.manifest import REJECTS_NAME, Manifest
from sftdata.pool import CPUS_ENV, init_worker


def fingerprint(backend: Any) -> str:
    """sha256 of a `tokenizers.Tokenizer`'s full serialisation: equal fingerprints decode every id alike."""
    return hashlib.sha256(backend.to_str().encode("utf-8")).hexdigest()


class ConservationProcess:
    """The forked child that checks conservation, and the main process's end of its pipe."""

    def __init__(self, process: multiprocessing.process.BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn

    @classmethod
    def start(cls, manifest: Manifest, folder: Path, inputs: list[tuple[Path, int]], shards: list[Path],
              tokenizer_json: Path, truncated: frozenset[str], batch: tuple[int, int]) -> ConservationProcess:
        """Fork the child now (before transformers is imported: the fork is small and quick)."""
        ctx = multiprocessing.get_context("fork")
        receive, send = ctx.Pipe(duplex=False)
        args = (send, os.getpid(), manifest, folder, inputs, shards, tokenizer_json, truncated, batch)
        process = ctx.Process(target=_conserve, args=args, name="sftdata-audit-conservation", daemon=True)
        process.start()
        send.close()
        return cls(process, receive)

    def decodes_as(self, backend: Any) -> bool:
        """Does the child decode every id exactly as `backend` (the transformers tokenizer's)? False also when
        the child could not load its tokenizer."""
        kind, value = self._receive()
        return kind == "tokenizer" and value == fingerprint(backend)

    def result(self) -> tuple[Findings, Counter[str]]:
        """The child's conservation findings and allowed drops (waits for it to finish)."""
        kind, *value = self._receive()
        if kind != "done":
            raise SftdataError(f"the audit's conservation process failed: {value[0]}")
        return value[0], value[1]

    def __enter__(self) -> ConservationProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the child if it still runs, and join it."""
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(timeout=5)
        self.conn.close()

    def _receive(self) -> tuple:
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            raise SftdataError("the audit's conservation process died (killed from outside: the kernel's "
                               "out-of-memory killer or a signal), so the audit did not finish. Give it more "
                               f"memory, or check conservation in the main process ({CPUS_ENV}=1)") from None


def _conserve(conn: Connection, parent: int, manifest: Manifest, folder: Path, inputs: list[tuple[Path, int]],
              shards: list[Path], tokenizer_json: Path, truncated: frozenset[str], batch: tuple[int, int]) -> None:
    """The child: every row the main process will not check itself, in input order."""
    init_worker(parent, 1)  # one Rust thread (the other core imports transformers), Ctrl-C left to the parent
    try:
        from tokenizers import Tokenizer

        backend = Tokenizer.from_file(str(tokenizer_json))
        conn.send(("tokenizer", fingerprint(backend)))  # a short message: the pipe holds it until it is read
        views = []
        for path in shards:
            try:
                views.append(shard_view(path))
            except InputError:  # the main process reports it, and leaves the shard out as here
                continue
        index = DocIndex.build(views)
        rejected = rejected_positions(folder / REJECTS_NAME)
        findings = Findings()
        conservation = Conservation(backend, views, DropPolicy.from_options(manifest.options), findings, truncated)
        claims = Claims()
        for chunk in batches(source_rows(manifest, inputs, Findings()), *batch):  # reading: the main process's
            rows = [(row, row_claims(row, index, claims)) for row in chunk]
            conservation.check([(row, docs) for row, docs in rows
                                if docs is not None and (row.source, row.index) not in rejected])
        conn.send(("done", findings, conservation.allowed))
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which decides
        conn.send(("error", f"{type(err).__name__}: {err}"))
    finally:
        conn.close()
