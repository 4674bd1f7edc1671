"""The manifest: what a prepared folder holds, how it was made, and everything `audit` needs.

`manifest.json` is written last, so its presence means the folder is complete. It holds no
timings, host names or absolute output paths, so that the same inputs and options give a
byte-identical manifest wherever and however often the job runs. Timings go to `--json` and logs.

Shards (`shard-00000-of-00004.arrow`) are Arrow IPC *stream* files with the columns of
`SHARD_SCHEMA`; `labels` are aligned with `input_ids` (unshifted, -100 = no loss) and every document
in a row starts with label -100. The schema metadata key `sftdata` holds
`{"format_version": ..., "fingerprint": ...}`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
REJECTS_NAME = "rejects.jsonl"
INCOMPLETE_SUFFIX = ".incomplete"

SHARD_SCHEMA = pa.schema(
    [
        pa.field("input_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("labels", pa.list_(pa.int32()), nullable=False),
        pa.field("doc_lens", pa.list_(pa.int32()), nullable=False),
        pa.field("doc_ids", pa.list_(pa.string()), nullable=False),
    ]
)


def shard_name(index: int, count: int) -> str:
    """`shard-00003-of-00008.arrow` (datasets' naming, zero-padded so names sort)."""
    return f"shard-{index:05d}-of-{count:05d}.arrow"


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputFile(_Closed):
    path: str
    """As given on the command line (relative paths stay relative)."""
    sha256: str
    """Of the file's bytes, or of the dataset's fingerprint for a Hugging Face dataset."""
    format: str
    """The format used (detected or named)."""
    split: str | None = None


class TokenizerInfo(_Closed):
    path: str
    """As given (folder or hub id)."""
    files: dict[str, str]
    """File name -> sha256 of each tokenizer file that was loaded."""


class ShardInfo(_Closed):
    file: str
    sha256: str
    rows: int
    documents: int
    tokens: int
    supervised_tokens: int


class Counts(_Closed):
    rows_in: int
    """Records read (an OASST tree counts one per root-to-leaf path). Always docs_written + rejected."""
    docs_written: int
    rejected: int
    reasons: dict[str, int] = Field(default_factory=dict)
    """Reason code -> number of records rejected with it (a record with two reasons counts in both)."""
    truncated: int = 0
    """Documents cut to `max_length` (written, counted here too)."""


class Packing(_Closed):
    packed: bool
    capacity: int
    rows: int
    tokens: int
    efficiency: float
    """Real tokens / (rows * capacity)."""
    lower_bound_rows: int
    """ceil(tokens / capacity): no packing can use fewer rows."""
    lower_bound_efficiency: float
    seed: int


class Manifest(_Closed):
    format_version: int = FORMAT_VERSION
    sftdata_version: str
    fingerprint: str
    """sha256 over input contents, options, tokenizer files, chat template and sftdata version."""
    inputs: list[InputFile]
    tokenizer: TokenizerInfo
    chat_template: str | None
    """The template text used (after any override), so `audit` can re-render every record."""
    options: dict[str, Any]
    """The full pipeline config as resolved (format, column map, mask options, max_length, ...)."""
    shards: list[ShardInfo]
    counts: Counts
    packing: Packing
    truncated_docs: list[str] = Field(default_factory=list)
    """doc_ids of documents cut by the `truncate` policy (their last span may not end on end-of-turn)."""
    max_reject_fraction: float
    over_reject_limit: bool

    def to_json_text(self) -> str:
        """Canonical text: sorted keys, two-space indent, trailing newline (byte-stable)."""
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def load(cls, folder: str | Path) -> Manifest:
        return cls.model_validate_json(Path(folder, MANIFEST_NAME).read_text(encoding="utf-8"))
