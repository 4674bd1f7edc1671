"""The pipeline config of `sftdata prepare`: one closed model, from YAML, with flags on top.

Every option of the job lives here (the mask engine's `MaskOptions` is embedded as `mask`), so a
pipeline file in `pipelines/` and the command line say the same things with the same names. Unknown
keys are errors; all problems are reported at once, each with the file and the key path.

Options split in two: those that change the output (recorded in the manifest and the fingerprint)
and those that only change how the job runs (`workers`, `chunk_size`): see `output_options`. That
split is what lets `--workers 1` and `--workers 2` produce byte-identical folders.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticKnownError

from sftdata.chat.options import MaskOptions
from sftdata.errors import ConfigError
from sftdata.readers import DEFAULT_MAX_ROW_BYTES
from sftdata.records import MAX_FIELD_CHARS

RUN_ONLY_FIELDS = frozenset({"workers", "chunk_size", "tokenizer", "engine", "ray_address"})
"""Fields that do not change the output (the tokenizer is recorded by its files' hashes instead)."""


class Engine(StrEnum):
    """Where `prepare` runs its stages (a run-only choice: the output is byte-identical)."""

    local = "local"
    """This machine: inline, or a pool of `workers` spawned processes (default; imports nothing of Ray)."""
    ray = "ray"
    """Ray Data on a Ray cluster (`ray_address`, or a local Ray): read, validate and encode in parallel,
    pack centrally from lengths, write shards in Ray tasks."""


class TooLong(StrEnum):
    """What happens to a document longer than `max_length`."""

    reject = "reject"
    """Reject it with `too_long` (default): nothing is trained on a cut conversation."""
    truncate = "truncate"
    """Keep the start, cut the last reply short so the document still ends on supervised tokens;
    listed in the manifest's `truncated_docs`. A document whose first reply starts beyond
    `max_length` is rejected with `prompt_too_long`."""


READ_FIELDS = ("format", "column_map", "split", "oasst_paths", "max_chars", "max_row_bytes")
"""Fields of `ReadOptions`; as top-level keys of a pipeline config (the layout before `read:`) they
are moved into `read` (see `PipelineConfig`)."""


class ReadOptions(BaseModel):
    """How raw inputs become records: one typed set, recorded in the manifest and passed whole to
    validation on every path (local `prepare`, `--engine ray`, `validate`, and read back by `audit`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    format: str = "auto"
    """Input format: auto | alpaca | sharegpt | messages | prompt_completion | oasst."""
    column_map: dict[str, str] | None = None
    """Renames input columns before the format is applied, e.g. {"context": "input"} for Dolly."""
    split: str | None = None
    """Split of a Hugging Face dataset input (e.g. `train`)."""
    oasst_paths: Literal["all", "top"] = "all"
    """OpenAssistant trees: every root-to-leaf path, or only the top-ranked one."""
    max_chars: int = Field(default=MAX_FIELD_CHARS, ge=1)
    """Largest text field in characters; a longer one rejects its record as `oversize_field`."""
    max_row_bytes: int = Field(default=DEFAULT_MAX_ROW_BYTES, ge=1)
    """Largest input row in bytes (default 32 MiB); a longer row is rejected without being parsed."""


def _auto_or_count(value: Any) -> Any:
    """`workers`: "auto" or a count >= 1, with one error for a bad value (not one per member of the union)."""
    if value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (
            isinstance(value, str) and not value.strip().lstrip("-").isdigit()):
        raise PydanticKnownError("int_parsing")
    if int(value) < 1:
        raise PydanticKnownError("greater_than_equal", {"ge": 1})
    return int(value)


class PipelineConfig(BaseModel):
    """Everything `sftdata prepare` needs besides the inputs and the output folder."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    tokenizer: str | None = None
    """Tokenizer folder or hub id (`--tokenizer` overrides it)."""
    read: ReadOptions = Field(default_factory=ReadOptions)
    """How inputs are read into records (format, column map, split, OASST paths, size limits)."""
    mask: MaskOptions = Field(default_factory=MaskOptions)
    """How conversations become ids and supervision masks (masking, control tokens, template...)."""
    max_length: int = Field(default=2048, ge=2)
    """Tokens per row; also the longest document allowed."""
    too_long: TooLong = TooLong.reject
    """Policy for documents longer than `max_length`."""
    pack: bool = True
    """Pack documents into rows of `max_length` (best-fit decreasing); False writes one per row."""
    pack_window: int = Field(default=32768, ge=1)
    """Documents planned together. Inputs larger than this are packed window by window, which bounds
    memory (about 8 bytes per token of one window) at a cost of at most one part-filled row per window."""
    shuffle: bool = True
    """Shuffle the rows of each window (deterministic, from `seed`)."""
    seed: int = 0
    """Seed of the row shuffle."""
    rows_per_shard: int = Field(default=8192, ge=1)
    """Most rows in one shard file."""
    max_reject_fraction: float = Field(default=0.01, ge=0.0, le=1.0)
    """Above this fraction of rejected records the run still writes everything, then exits 1."""
    workers: Annotated[Annotated[int, Field(ge=1)] | Literal["auto"], BeforeValidator(_auto_or_count)] = "auto"
    """Processes that render and tokenize: `auto` (default) = cores minus one for the main process, and a
    number is capped the same way (`SFTDATA_CPUS` overrides the cores); 1 encodes in the main process, which
    is what 2 cores get (see `sftdata.pool`)."""
    chunk_size: int = Field(default=512, ge=1)
    """Records sent to a worker at once."""
    engine: Engine = Engine.local
    """Where the work runs: `local` (this machine) or `ray` (Ray Data; needs `pip install 'sftdata[ray]'`).
    Same output bytes either way."""
    ray_address: str | None = None
    """Ray cluster to join with `engine: ray` (e.g. `ray://head:10001` or `auto`); none starts a local Ray."""

    @model_validator(mode="before")
    @classmethod
    def _read_keys_into_read(cls, data: Any) -> Any:
        """Accept the layout before `read:` existed: top-level `format:`, `column_map:`... move into `read`
        (a top-level value wins over a nested one, so a flag overrides a YAML `read:` block)."""
        if not isinstance(data, dict) or not any(k in data for k in READ_FIELDS):
            return data
        data = dict(data)
        read = data.get("read")
        read = dict(read) if isinstance(read, dict) else (read.model_dump() if isinstance(read, ReadOptions) else {})
        for key in READ_FIELDS:
            if key in data:
                read[key] = data.pop(key)
        data["read"] = read
        return data

    def output_options(self) -> dict[str, Any]:
        """The options that shape the output, as JSON data (manifest `options`, fingerprint)."""
        return self.model_dump(mode="json", exclude=set(RUN_ONLY_FIELDS))


def _format_errors(err: ValidationError, origin: str) -> str:
    lines = []
    for e in err.errors(include_url=False):
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (allowed here: see `sftdata prepare --help` or schemas/)")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    return f"{origin}: {len(lines)} problem(s) in the pipeline config:\n" + "\n".join(lines)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "column_map":
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a pipeline YAML file into a dict (an empty file is an empty config)."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the pipeline config ({err.strerror}); check the --config "
                          "path") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err}); fix the syntax at the line shown") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a pipeline config must be a mapping of keys to values, got {type(data).__name__}")
    return data


def _nest_read(data: dict[str, Any]) -> dict[str, Any]:
    """Top-level read keys moved under `read`, so that YAML and flags merge key by key whatever layout each uses."""
    if not any(k in data for k in READ_FIELDS):
        return data
    out = {k: v for k, v in data.items() if k not in READ_FIELDS}
    read = dict(data["read"]) if isinstance(data.get("read"), dict) else {}
    read.update({k: data[k] for k in READ_FIELDS if k in data})
    out["read"] = read
    return out


def resolve_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """The config from a YAML file (optional) with flag values on top, validated once.

    Args:
        path: a pipeline YAML file, or None for defaults.
        overrides: values from flags; None values mean "not given" and are ignored. Nested mask
            options go under `mask` (e.g. {"mask": {"masking": "last"}}); read options under `read`
            or at the top level by their own names (e.g. {"format": "alpaca"}), as in a YAML file.

    Raises:
        ConfigError: listing every problem (unknown keys, wrong types, out-of-range values) at once.
    """
    data = load_yaml(path) if path is not None else {}
    clean = {k: v for k, v in (overrides or {}).items() if v is not None}
    for key in ("mask", "read"):
        if isinstance(clean.get(key), dict):
            clean[key] = {k: v for k, v in clean[key].items() if v is not None}
    merged = _merge(_nest_read(data), _nest_read(clean))
    try:
        return PipelineConfig.model_validate(merged)
    except ValidationError as err:
        origin = f"{path} (with command-line flags)" if path is not None else "command-line flags"
        raise ConfigError(_format_errors(err, origin)) from None
