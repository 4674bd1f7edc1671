"""`rejects.jsonl`: one JSON line per rejected record, written as the run goes.

Each line holds the source (as given), the 0-based row `index` (JSONL: line number - 1), the record
`id` if any, every reason (`code`, `message`, `path`) and the raw row, or the raw text where the row
was not valid JSON. Lines are UTF-8 with non-ASCII kept readable; a raw value that cannot be encoded
(lone surrogates) or dumped (nesting beyond the encoder's limit) falls back to ASCII escapes or to
its `repr`, so writing a reject never fails. The file appears only when complete (`PATH.incomplete`
is renamed on close), like every other output of sftdata.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from pydantic import BaseModel, ConfigDict

from sftdata.reasons import Reason
from sftdata.records import Reject

INCOMPLETE = ".incomplete"


class RejectReason(BaseModel):
    """One problem of a rejected record."""

    model_config = ConfigDict(extra="forbid")

    code: Reason
    message: str
    """What is wrong and, where it helps, how to fix it."""
    path: str | None = None
    """Where in the row, e.g. `messages[2].content`; null for the whole row."""


class RejectLine(BaseModel):
    """One line of `rejects.jsonl` (its JSON Schema is `schemas/reject.schema.json`)."""

    model_config = ConfigDict(extra="allow")

    source: str
    """The input as given (file path or dataset name)."""
    index: int
    """0-based row index in that input (JSONL: line number - 1)."""
    id: str | None = None
    reasons: list[RejectReason]
    raw: Any = None
    """The raw row, or the raw text where it was not valid JSON."""


def reject_line(reject: Reject) -> str:
    """One reject as a JSON line (without the newline); never raises."""
    payload = reject.to_json()
    try:
        line = json.dumps(payload, ensure_ascii=False)
        line.encode("utf-8")
        return line
    except UnicodeEncodeError:
        return json.dumps(payload, ensure_ascii=True)
    except (RecursionError, ValueError, TypeError):
        return json.dumps({**payload, "raw": _safe_repr(reject.raw)}, ensure_ascii=True)


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)[:100_000]
    except RecursionError:
        return f"<{type(value).__name__} nested too deeply to write>"


class RejectWriter:
    """Streams rejects to `path` (via `path.incomplete`, renamed on a clean close)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.count = 0
        self._tmp = self.path.with_name(self.path.name + INCOMPLETE)
        self._file: IO[str] | None = None

    def __enter__(self) -> RejectWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self._tmp, "w", encoding="utf-8")  # noqa: SIM115 - closed in __exit__
        return self

    def write(self, reject: Reject) -> None:
        assert self._file is not None, "use RejectWriter as a context manager"
        self._file.write(reject_line(reject) + "\n")
        self.count += 1

    def __call__(self, reject: Reject) -> None:
        self.write(reject)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._file is not None
        self._file.close()
        if exc_type is None:
            os.replace(self._tmp, self.path)
