"""Crash safety: the `DIR.incomplete/` folder, its journal, resume, and the final rename.

A run writes into `DIR.incomplete/`: shard parts `part-WWWWW-SSSS.arrow`, `rejects.jsonl` and
`journal.jsonl`. The journal's first line is a header with the job's fingerprint; each later line
commits one packing window *after* its shard parts and the rejects so far are fsynced: the window's
shard figures, the byte length of `rejects.jsonl` and the number of input records consumed. A final
`{"done": true}` line is written before the shards are renamed to `shard-i-of-N.arrow`.

Resume (`--resume`) reads the journal, keeps only fully written lines, deletes parts of uncommitted
windows, truncates `rejects.jsonl` to the committed length and continues from the committed record
position. Because each window is a pure function of the records it holds, the result is byte-identical
to an uninterrupted run. `manifest.json` is written last, then the folder is renamed to `DIR`, so
a folder named `DIR` with a manifest is always complete; anything else is never taken for finished.

Fault injection for the kill tests: `SFTDATA_CRASH_AT=window:N|done|renamed|manifest` makes the
process SIGKILL itself at that point (one environment lookup per commit; costs nothing otherwise).
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sftdata.errors import InputError
from sftdata.manifest import INCOMPLETE_SUFFIX, MANIFEST_NAME, REJECTS_NAME, shard_name

JOURNAL_NAME = "journal.jsonl"


def crash_point(name: str) -> None:
    """SIGKILL this process when `SFTDATA_CRASH_AT` names this point (tests only)."""
    if os.environ.get("SFTDATA_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def incomplete_dir(out: Path) -> Path:
    return out.with_name(out.name + INCOMPLETE_SUFFIX)


def part_name(window: int, index: int) -> str:
    return f"part-{window:05d}-{index:04d}.arrow"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class JournalState:
    """What the journal says was committed."""

    windows: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    formats: dict[str, str] = field(default_factory=dict)
    """Input -> detected format, recorded with `done` (a resumed finish reads no input)."""

    @property
    def next_row(self) -> int:
        return self.windows[-1]["next_row"] if self.windows else 0

    @property
    def rejects_offset(self) -> int:
        return self.windows[-1]["rejects_offset"] if self.windows else 0


class Journal:
    """Append-only commit log in `DIR.incomplete/journal.jsonl` (one fsync per window)."""

    def __init__(self, folder: Path, fingerprint: str) -> None:
        self.folder = folder
        self.path = folder / JOURNAL_NAME
        self.fingerprint = fingerprint

    def start(self) -> None:
        """A fresh journal holding only the header."""
        self._append({"fingerprint": self.fingerprint}, mode="w")

    def load(self) -> JournalState:
        """Committed state; lines after a torn (partly written) line are ignored.

        Raises:
            InputError: the folder belongs to a job with other inputs or options.
        """
        state = JournalState()
        try:
            lines = self.path.read_text(encoding="utf-8").split("\n")
        except FileNotFoundError:
            raise InputError(f"{self.folder}: no journal, so there is nothing to resume; run again without "
                             "--resume") from None
        complete = [line for line in lines[:-1]]  # the last element is "" or a torn line
        if not complete or json.loads(complete[0]).get("fingerprint") != self.fingerprint:
            raise InputError(f"{self.folder} was started with other inputs or options (fingerprint differs); "
                             "run without --resume to start over, or use the original inputs and options")
        for line in complete[1:]:
            entry = json.loads(line)
            if entry.get("done"):
                state.done = True
                state.formats = entry.get("formats", {})
            else:
                state.windows.append(entry)
        return state

    def rewind(self, state: JournalState) -> None:
        """Drop everything not committed: stray parts, the rejects tail, torn journal lines."""
        keep = {s["part"] for w in state.windows for s in w["shards"]}
        if not state.done:
            for part in self.folder.glob("part-*.arrow"):
                if part.name not in keep:
                    part.unlink()
        rejects = self.folder / REJECTS_NAME
        with open(rejects, "ab") as f:
            f.truncate(state.rejects_offset)
        lines = [json.dumps({"fingerprint": self.fingerprint}, sort_keys=True)]
        lines += [json.dumps(w, sort_keys=True) for w in state.windows]
        if state.done:
            lines.append(json.dumps({"done": True, "formats": state.formats}, sort_keys=True))
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)

    def commit(self, entry: dict[str, Any]) -> None:
        self._append(entry)
        crash_point(f"window:{entry['window']}")

    def mark_done(self, formats: dict[str, str]) -> None:
        self._append({"done": True, "formats": formats})
        crash_point("done")

    def _append(self, entry: dict[str, Any], mode: str = "a") -> None:
        with open(self.path, mode, encoding="utf-8") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())


def final_shard_names(state: JournalState) -> list[tuple[str, str]]:
    """(part name, final shard name) for every committed shard, in order."""
    parts = [s["part"] for w in state.windows for s in w["shards"]]
    return [(p, shard_name(i, len(parts))) for i, p in enumerate(parts)]


def finalize(folder: Path, out: Path, state: JournalState, manifest_text: str) -> None:
    """Rename parts to shard names, write the manifest last, rename the folder to `out` (idempotent)."""
    for part, final in final_shard_names(state):
        if (folder / part).exists():
            os.replace(folder / part, folder / final)
        elif not (folder / final).exists():
            raise InputError(f"{folder}: shard part {part} is missing; run again without --resume")
    crash_point("renamed")
    tmp = folder / (MANIFEST_NAME + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(manifest_text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / MANIFEST_NAME)
    crash_point("manifest")
    (folder / JOURNAL_NAME).unlink(missing_ok=True)
    fsync_dir(folder)
    os.replace(folder, out)
    fsync_dir(out.parent)
