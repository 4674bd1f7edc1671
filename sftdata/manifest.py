"""The manifest: what a prepared folder holds, how it was made, and everything `audit` needs.

`manifest.json` is written last, so its presence means the folder is complete. It holds no
timings, host names or absolute output paths, so that the same inputs and options give a
byte-identical manifest wherever and however often the job runs. Timings go to `--json` and logs.

Shards (`shard-00000-of-00004.arrow`) are Arrow IPC *stream* files with the columns of
`SHARD_SCHEMA`; `labels` are aligned with `input_ids` (unshifted, -100 = no loss) and every document
in a row starts with label -100. The schema metadata key `sftdata` holds
`{"format_version": ..., "fingerprint": ...}`.

Format versions (every version is still read; `read_options` gives the read options of any of them):
- 1: read options at the top of `options` (`format`, `column_map`, `split`, `oasst_paths`).
- 2: read options nested as `options.read` (`format`, `column_map`, `split`, `oasst_paths`,
  `max_chars`, `max_row_bytes`), the same `ReadOptions` that every validation path is given.
A manifest of a version newer than this code is refused with a message naming both versions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

FORMAT_VERSION = 2
READ_DEFAULTS: dict[str, Any] = {"format": "auto", "column_map": None, "split": None, "oasst_paths": "all",
                                 "max_chars": 1_000_000, "max_row_bytes": 32 * 2**20}
"""Read options a version-1 manifest did not record, at the values that version always used."""
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
    """Records read (an OASST tree counts one per root-to-leaf path). Always docs_written - split_docs + rejected."""
    docs_written: int
    """Documents written: one per accepted record, plus `split_docs`."""
    rejected: int
    reasons: dict[str, int] = Field(default_factory=dict)
    """Reason code -> number of records rejected with it (a record with two reasons counts in both)."""
    truncated: int = 0
    """Documents cut to `max_length` (written, counted here too)."""
    allowed_drops: dict[str, int] = Field(default_factory=dict)
    """Drop kind (`tools`, `system`, `name`, ...) -> texts the template left out under `--allow-drop KIND`."""
    context_drops: dict[str, int] = Field(default_factory=dict)
    """Kind (`reasoning`) -> texts of unsupervised turns the template drops exactly as at inference (earlier
    thoughts under `--masking last` or `--reasoning-history last`): the one allowed exception, never silent."""
    split_docs: int = 0
    """Documents `ID#K` added for assistant turns whose reasoning the full render drops (split or R1-style)."""
    split_tokens: int = 0
    """Tokens of those added documents."""


def conservation_counts(found: dict[str, int]) -> dict[str, Any]:
    """`Counts` fields from the engine's per-record counts (`allowed_drop.KIND`, `context_drop.KIND`,
    `split_docs`, `split_tokens`), summed over the run."""
    drops = {k.split(".", 1)[1]: v for k, v in sorted(found.items()) if k.startswith("allowed_drop.")}
    context = {k.split(".", 1)[1]: v for k, v in sorted(found.items()) if k.startswith("context_drop.")}
    return {"allowed_drops": drops, "context_drops": context, "split_docs": found.get("split_docs", 0),
            "split_tokens": found.get("split_tokens", 0)}


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
    format_version: int = Field(default=FORMAT_VERSION, ge=1, le=FORMAT_VERSION)
    """Layout version of this manifest (see the module docstring); newer than this code is refused."""
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

    def read_options(self) -> dict[str, Any]:
        """The read options the folder was made with, whatever the manifest's version (defaults filled in)."""
        nested = self.options.get("read")
        given = nested if isinstance(nested, dict) else {k: self.options[k] for k in READ_DEFAULTS if k in self.options}
        return {**READ_DEFAULTS, **given}

    def to_json_text(self) -> str:
        """Canonical text: sorted keys, two-space indent, trailing newline (byte-stable)."""
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def load(cls, folder: str | Path) -> Manifest:
        return cls.model_validate_json(Path(folder, MANIFEST_NAME).read_text(encoding="utf-8"))
