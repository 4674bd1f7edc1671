"""Re-reading the source records a manifest names, to re-derive every document from scratch.

The audit reads the inputs again with the project's readers and validation (`sftdata.readers`,
`sftdata.validate`): those turn rows into `Conversation`s and share no code with the mask engine.
Inputs are looked up as given in the manifest (relative to the working directory), then relative to
the prepared folder's parent. An input that is missing or whose sha256 differs from the manifest's is
reported as a warning and its documents are not re-derived (the shard-only checks still run).

A document's id is the record's own `id`, or `SOURCE:ROW` with SOURCE as given in the manifest
(whatever path the audit found the file under), which is what the writer stores in `doc_ids`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sftdata.audit.findings import Finding, Severity
from sftdata.manifest import Manifest


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One validated record ready to render: template messages, tools and per-message train flags."""

    doc_id: str
    source: str
    index: int
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    train: list[bool | None]


def resolve_input(given: str, folder: Path) -> Path | None:
    """Where an input named in the manifest is now (None when it cannot be found)."""
    for candidate in (Path(given), folder.parent / given, folder / given):
        if candidate.exists():
            return candidate
    return None


def source_records(manifest: Manifest, folder: Path, notes: list[Finding]) -> Iterator[SourceRecord]:
    """Every valid record of every input the manifest names, in input order.

    Rejected rows are skipped (they are in `rejects.jsonl`); unavailable inputs add a warning to `notes`.
    """
    from sftdata.fingerprint import input_sha256
    from sftdata.readers import read_rows
    from sftdata.validate import to_records

    options = manifest.options
    fmt = options.get("format", "auto")
    column_map = options.get("column_map")
    for info in manifest.inputs:
        path = resolve_input(info.path, folder)
        if path is None:
            notes.append(Finding("input_available", Severity.warning,
                                 f"input {info.path!r} not found: its documents are checked from the shards alone"))
            continue
        if input_sha256(str(path)) != info.sha256:
            notes.append(Finding("input_available", Severity.warning,
                                 f"input {info.path!r} changed since prepare (sha256 differs): its documents are "
                                 "checked from the shards alone", expected=info.sha256))
            continue
        for item in to_records(read_rows(str(path), split=info.split), fmt=fmt, column_map=column_map):
            conv = getattr(item, "conversation", None)
            if conv is None:
                continue  # a reject: the writer has it in rejects.jsonl
            doc_id = conv.id if conv.id is not None else f"{info.path}:{item.index}"
            yield SourceRecord(doc_id=doc_id, source=info.path, index=item.index,
                               messages=conv.to_template_messages(), tools=conv.tools,
                               train=[m.train for m in conv.messages])
