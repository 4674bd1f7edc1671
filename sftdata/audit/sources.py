"""The source rows a manifest names, read back by the audit alone (no writer reader or adapter).

Inputs are looked up as given in the manifest (relative to the working directory), then relative to
the prepared folder's parent and the folder itself. An input that cannot be found, or whose sha256
differs from the manifest's, FAILS the `input_available` check: without the source the audit cannot
prove the documents, and a proof that quietly shrinks to shard checks is no proof. `--shards-only`
asks for the weaker audit by name.

Each input is read with `sftdata.audit.raw` and each row interpreted with `sftdata.audit.normal`,
under the read options the manifest records (any manifest version): the format each input was read
as, the column map, the split and the OASST path choice. A document's id is the record's own `id`,
`SOURCE:ROW` with SOURCE as given in the manifest, or `TREE:LEAF` for an OASST path; documents the
writer split per reasoning turn are `ID#K`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from sftdata.audit.findings import Finding, Findings, Severity
from sftdata.audit.normal import RawRecord, apply_column_map, read_row
from sftdata.audit.raw import raw_rows
from sftdata.errors import InputError
from sftdata.fingerprint import input_sha256
from sftdata.manifest import Manifest

AVAILABLE = ("input_available", "every input the manifest names is present with the sha256 prepare recorded")


def resolve_input(given: str, folder: Path) -> Path | None:
    """Where an input named in the manifest is now (None when it cannot be found)."""
    for candidate in (Path(given), folder.parent / given, folder / given):
        if candidate.exists():
            return candidate
    return None


def rejected_positions(path: Path) -> set[tuple[str, int]]:
    """(source, row index) of every line of `rejects.jsonl`."""
    out: set[tuple[str, int]] = set()
    if path.is_file():
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    item = json.loads(line)
                    out.add((item.get("source"), int(item.get("index"))))
                except (ValueError, TypeError):
                    continue
    return out


def available_inputs(manifest: Manifest, folder: Path, findings: Findings) -> list[tuple[Path, int]] | None:
    """(path now, position in the manifest) of every input, or None when one is missing or changed
    (each such input is a located `input_available` failure)."""
    findings.check(*AVAILABLE, len(manifest.inputs))
    found: list[tuple[Path, int]] = []
    ok = True
    for n, info in enumerate(manifest.inputs):
        path = resolve_input(info.path, folder)
        if path is None:
            ok = False
            findings.fail(Finding(AVAILABLE[0], Severity.error, f"input {info.path!r} not found (looked in the "
                                  f"working directory and beside {folder}); restore it, or pass --shards-only for "
                                  "the weaker shard-only audit", expected=info.sha256, found="missing"))
            continue
        digest = input_sha256(str(path))
        if digest != info.sha256:
            ok = False
            findings.fail(Finding(AVAILABLE[0], Severity.error, f"input {info.path!r} changed since prepare (sha256 "
                                  "differs): its documents cannot be proven; restore it, or pass --shards-only",
                                  expected=info.sha256, found=digest))
            continue
        found.append((path, n))
    return found if ok else None


def batches(rows: Iterator[RawRecord], max_rows: int, max_chars: int) -> Iterator[list[RawRecord]]:
    """Rows in batches of at most `max_rows` rows and about `max_chars` characters their documents render from."""
    chunk: list[RawRecord] = []
    chars = 0
    for row in rows:
        chunk.append(row)
        chars += row.chars
        if len(chunk) >= max_rows or chars >= max_chars:
            yield chunk
            chunk, chars = [], 0
    if chunk:
        yield chunk


def source_rows(manifest: Manifest, inputs: list[tuple[Path, int]], findings: Findings) -> Iterator[RawRecord]:
    """Every raw row of every input, interpreted under the manifest's read options, in input order."""
    read = manifest.read_options()
    mapping = read.get("column_map") or None
    top = read.get("oasst_paths") == "top"
    for path, n in inputs:
        info = manifest.inputs[n]
        try:
            rows = raw_rows(path, info.split or read.get("split"))
            for index, row in rows:
                yield read_row(apply_column_map(row, mapping), info.format, info.path, index, top)
        except InputError as err:
            findings.fail(Finding(AVAILABLE[0], Severity.error, str(err), expected=info.sha256, found="unreadable"))
