"""Crash safety: the `DIR.incomplete/` folder, its typed journal, resume, and the final rename.

A run writes into `DIR.incomplete/`: shard parts `part-WWWWW-SSSS.arrow`, `rejects.jsonl` and
`journal.jsonl`. Every journal line is one typed entry (`JournalHeader`, `WindowEntry`, `DoneEntry`,
pydantic, tagged by `kind`), written and read back by the same model:

- the header (written atomically: temp file + rename) holds the job's fingerprint *and what it was
  made of* (inputs, options, tokenizer files, template hash, version), so a refused `--resume` can
  name what differs instead of printing two hashes;
- each `WindowEntry` commits one packing window *after* its shard parts (each written to a temp
  name, fsynced, renamed) and the rejects so far are fsynced: the window's part figures, the byte
  length of `rejects.jsonl` and the number of input records consumed;
- a `DoneEntry` is written before the parts are renamed to `shard-i-of-N.arrow`.

Resume (`--resume`) reads the journal up to the last complete line (a torn last line, from a kill or
a power cut mid-append, is ignored), deletes stale parts (written but never committed) and temp
files, truncates `rejects.jsonl` to the committed length and continues from the committed record
position. Each window is a pure function of the records it holds, so the result is byte-identical
to an uninterrupted run; `tests/test_kill_anywhere.py` checks this with SIGKILLs at 20 seeded
moments (notes/issue-13-kill.md). `manifest.json` is written last, then the folder is renamed to
`DIR`, so a folder named `DIR` with a manifest is always complete; anything else is never taken for
finished. Every step of resume is itself safe to kill: it only deletes what no commit refers to and
replaces the journal atomically.

Fault points (`sftdata.faults`) mark where the kill tests stop a run; they cost nothing otherwise.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from sftdata.errors import InputError
from sftdata.faults import crash_point, fault_point
from sftdata.manifest import INCOMPLETE_SUFFIX, MANIFEST_NAME, REJECTS_NAME, Manifest, shard_name

JOURNAL_NAME = "journal.jsonl"
TMP_SUFFIX = ".tmp"
"""Files being written (`part-…arrow.PID.tmp`, `journal.jsonl.tmp`, `manifest.json.tmp`): never committed."""

__all__ = [
    "JOURNAL_NAME", "TMP_SUFFIX", "DoneEntry", "Journal", "JournalHeader", "JournalState", "PartEntry", "WindowEntry",
    "crash_point", "differences", "final_shard_names", "finalize", "fsync_dir", "incomplete_dir", "part_name",
]


def incomplete_dir(out: Path) -> Path:
    """`OUT.incomplete`: where a run writes until it is complete."""
    return out.with_name(out.name + INCOMPLETE_SUFFIX)


def part_name(window: int, index: int) -> str:
    """`part-00003-0001.arrow`: the second shard part of window 3 (renamed to a shard name at the end)."""
    return f"part-{window:05d}-{index:04d}.arrow"


def fsync_dir(path: Path) -> None:
    """Make the folder's entries (new, renamed, deleted files) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- the entries --------------------------------------------------------------------------------------
class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JournalHeader(_Entry):
    """First line: which job this folder belongs to, and what its fingerprint was made of."""

    kind: Literal["header"] = "header"
    fingerprint: str
    inputs: list[dict[str, Any]]
    """As hashed for the fingerprint: `path` (as given), `sha256`, `split`, ..."""
    options: dict[str, Any]
    """`PipelineConfig.output_options()`: the options that shape the output."""
    tokenizer_files: dict[str, str]
    chat_template_sha256: str | None
    version: str

    @classmethod
    def of(cls, *, fingerprint: str, inputs: list[dict[str, Any]], options: dict[str, Any],
           tokenizer_files: dict[str, str], chat_template: str | None, version: str) -> JournalHeader:
        """The header of a job, from the same values its fingerprint was computed from."""
        template = hashlib.sha256(chat_template.encode("utf-8")).hexdigest() if chat_template is not None else None
        return cls(fingerprint=fingerprint, inputs=inputs, options=options, tokenizer_files=tokenizer_files,
                   chat_template_sha256=template, version=version)

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> JournalHeader:
        """The header of the job that made a finished folder (to name what differs from a new job)."""
        return cls.of(fingerprint=manifest.fingerprint, inputs=[i.model_dump() for i in manifest.inputs],
                      options=manifest.options, tokenizer_files=manifest.tokenizer.files,
                      chat_template=manifest.chat_template, version=manifest.sftdata_version)


class PartEntry(_Entry):
    """One shard part of a committed window (a manifest `ShardInfo` once renamed)."""

    part: str
    sha256: str
    rows: int
    documents: int
    tokens: int
    supervised_tokens: int


class WindowEntry(_Entry):
    """One committed packing window: its parts, and the running totals after it."""

    kind: Literal["window"] = "window"
    window: int
    next_row: int
    """Input records consumed (written or rejected) up to the end of this window."""
    rejects_offset: int
    """Byte length of `rejects.jsonl` at this commit."""
    rejected: int
    docs_written: int
    reasons: dict[str, int]
    """Reject counts by reason code so far."""
    rows: int
    tokens: int
    shards: list[PartEntry]
    truncated_docs: list[str]
    conservation: dict[str, int] = Field(default_factory=dict)
    """Conservation counts so far (`allowed_drop.KIND`, `context_drop.reasoning`, `split_docs`, `split_tokens`)."""


class DoneEntry(_Entry):
    """Every window is committed; what is left is renaming and the manifest."""

    kind: Literal["done"] = "done"
    formats: dict[str, str] = Field(default_factory=dict)
    """Input -> detected format (a resumed finish reads no input)."""


Entry = Annotated[JournalHeader | WindowEntry | DoneEntry, Field(discriminator="kind")]
_ENTRY: TypeAdapter[JournalHeader | WindowEntry | DoneEntry] = TypeAdapter(Entry)


def entry_line(entry: JournalHeader | WindowEntry | DoneEntry) -> str:
    """One journal line (without the newline)."""
    return entry.model_dump_json()


def parse_line(line: str) -> JournalHeader | WindowEntry | DoneEntry:
    """The typed entry of one complete journal line (raises `ValidationError` when it is not one)."""
    return _ENTRY.validate_json(line)


class JournalState:
    """What the journal says was committed."""

    def __init__(self, windows: list[WindowEntry] | None = None, done: bool = False,
                 formats: dict[str, str] | None = None) -> None:
        self.windows: list[WindowEntry] = windows or []
        self.done = done
        self.formats: dict[str, str] = formats or {}
        """Input -> detected format, recorded with `done`."""

    @property
    def last(self) -> WindowEntry | None:
        return self.windows[-1] if self.windows else None

    @property
    def next_row(self) -> int:
        return self.windows[-1].next_row if self.windows else 0

    @property
    def rejects_offset(self) -> int:
        return self.windows[-1].rejects_offset if self.windows else 0


def differences(old: JournalHeader, new: JournalHeader) -> list[str]:
    """What differs between two jobs, one readable line each (`option seed: 0 -> 7`)."""
    found = []
    old_paths, new_paths = [i.get("path") for i in old.inputs], [i.get("path") for i in new.inputs]
    if len(old.inputs) != len(new.inputs):
        found.append(f"inputs: {old_paths} -> {new_paths}")
    for k, (o, n) in enumerate(zip(old.inputs, new.inputs, strict=False)):
        name = n.get("path") if o.get("path") == n.get("path") else f"{o.get('path')} -> {n.get('path')}"
        for key in sorted(set(o) | set(n)):
            if key in ("path", "format") or o.get(key) == n.get(key):
                continue
            what = "content changed, " if key == "sha256" else ""
            found.append(f"input {k + 1} ({name}): {what}{key} {_short(o.get(key))} -> {_short(n.get(key))}")
    old_opts, new_opts = _flat(old.options), _flat(new.options)
    for key in sorted(set(old_opts) | set(new_opts)):
        o, n = (repr(opts[key]) if key in opts else "(unset)" for opts in (old_opts, new_opts))
        if o != n:
            found.append(f"option {key}: {o} -> {n}")
    for name in sorted(set(old.tokenizer_files) | set(new.tokenizer_files)):
        o, n = old.tokenizer_files.get(name), new.tokenizer_files.get(name)
        if o != n:
            found.append(f"tokenizer file {name}: {_short(o) if o else '(absent)'} -> {_short(n) if n else '(absent)'}")
    if old.chat_template_sha256 != new.chat_template_sha256:
        found.append(f"chat template: sha256 {_short(old.chat_template_sha256)} -> {_short(new.chat_template_sha256)}")
    if old.version != new.version:
        found.append(f"sftdata version: {old.version} -> {new.version}")
    if not found and old.fingerprint != new.fingerprint:
        found.append(f"fingerprint {_short(old.fingerprint)} -> {_short(new.fingerprint)}")
    return found


def _flat(options: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _short(value: Any) -> str:
    text = str(value)
    return text[:12] + "…" if isinstance(value, str) and len(text) == 64 else repr(value)


# -- the journal --------------------------------------------------------------------------------------
class Journal:
    """Append-only commit log in `DIR.incomplete/journal.jsonl` (one fsync per window)."""

    def __init__(self, folder: Path, header: JournalHeader) -> None:
        self.folder = folder
        self.path = folder / JOURNAL_NAME
        self.header = header

    def start(self) -> None:
        """A fresh journal holding only the header (atomic: there is a journal with its header, or none)."""
        self._replace([self.header])

    def load(self) -> JournalState | None:
        """Committed state, or None when there is nothing to resume (no journal, or no complete header).

        Lines after the last newline (a torn append) are ignored.

        Raises:
            InputError: the folder belongs to a job with other inputs or options (naming what differs),
                or a complete line is damaged.
        """
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        lines = data.split(b"\n")[:-1]  # the last element is b"" or a torn line
        if not lines:
            return None
        entries = []
        for number, line in enumerate(lines, 1):
            try:
                entries.append(parse_line(line))
            except ValidationError as err:
                raise InputError(f"{self.path}: line {number} is damaged ({err.errors()[0]['msg']}); run "
                                 "without --resume to start over") from None
        header = entries[0]
        if not isinstance(header, JournalHeader):
            raise InputError(f"{self.path}: line 1 is a {header.kind} entry, not the header; run without "
                             "--resume to start over")
        if header.fingerprint != self.header.fingerprint:
            raise InputError(f"{self.folder} was started with other inputs or options: "
                             + "; ".join(differences(header, self.header))
                             + ". Run without --resume to start over, or use the original inputs and options")
        state = JournalState()
        for entry in entries[1:]:
            if isinstance(entry, WindowEntry):
                state.windows.append(entry)
            elif isinstance(entry, DoneEntry):
                state.done, state.formats = True, entry.formats
        return state

    def rewind(self, state: JournalState) -> None:
        """Drop everything not committed: stale parts, temp files, the rejects tail, a torn journal line.

        Safe to kill at any point: it only deletes what no commit refers to, and replaces the journal
        atomically.
        """
        keep = {s.part for w in state.windows for s in w.shards}
        for path in sorted(self.folder.iterdir()):
            stale_part = not state.done and path.name.startswith("part-") and path.name not in keep
            if stale_part or path.name.endswith(TMP_SUFFIX):
                path.unlink()
        fault_point("rewind.parts")
        with open(self.folder / REJECTS_NAME, "ab") as f:
            f.truncate(state.rejects_offset)
            os.fsync(f.fileno())
        fault_point("rewind.rejects")
        entries: list[JournalHeader | WindowEntry | DoneEntry] = [self.header, *state.windows]
        if state.done:
            entries.append(DoneEntry(formats=state.formats))
        self._replace(entries)

    def commit(self, entry: WindowEntry) -> None:
        """Commit one window whose parts and rejects are fsynced (its parts' names made durable first)."""
        fsync_dir(self.folder)
        fault_point("commit")
        self._append(entry)
        crash_point(f"window:{entry.window}")

    def mark_done(self, formats: dict[str, str]) -> None:
        self._append(DoneEntry(formats=formats))
        fault_point("done")
        crash_point("done")

    def _append(self, entry: WindowEntry | DoneEntry) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(entry_line(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _replace(self, entries: list[JournalHeader | WindowEntry | DoneEntry]) -> None:
        tmp = self.path.with_name(JOURNAL_NAME + TMP_SUFFIX)
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("".join(entry_line(e) + "\n" for e in entries))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fsync_dir(self.folder)


def final_shard_names(state: JournalState) -> list[tuple[str, str]]:
    """(part name, final shard name) for every committed shard, in order."""
    parts = [s.part for w in state.windows for s in w.shards]
    return [(p, shard_name(i, len(parts))) for i, p in enumerate(parts)]


def finalize(folder: Path, out: Path, state: JournalState, manifest_text: str) -> None:
    """Rename parts to shard names, write the manifest last, rename the folder to `out` (idempotent)."""
    for part, final in final_shard_names(state):
        if (folder / part).exists():
            os.replace(folder / part, folder / final)
            fault_point("finalize.rename")
        elif not (folder / final).exists():
            raise InputError(f"{folder}: shard part {part} is missing; run again without --resume")
    crash_point("renamed")
    tmp = folder / (MANIFEST_NAME + TMP_SUFFIX)
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(manifest_text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / MANIFEST_NAME)
    fault_point("finalize.manifest")
    crash_point("manifest")
    (folder / JOURNAL_NAME).unlink(missing_ok=True)
    fsync_dir(folder)
    fault_point("finalize.folder")
    os.replace(folder, out)
    fsync_dir(out.parent)
