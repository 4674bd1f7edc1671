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
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sftdata.chat.options import MaskOptions
from sftdata.errors import ConfigError

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


class PipelineConfig(BaseModel):
    """Everything `sftdata prepare` needs besides the inputs and the output folder."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    tokenizer: str | None = None
    """Tokenizer folder or hub id (`--tokenizer` overrides it)."""
    format: str = "auto"
    """Input format: auto | alpaca | sharegpt | messages | prompt_completion | oasst."""
    column_map: dict[str, str] | None = None
    """Renames input columns before the format is applied, e.g. {"context": "input"} for Dolly."""
    split: str | None = None
    """Split of a Hugging Face dataset input (e.g. `train`)."""
    oasst_paths: Literal["all", "top"] = "all"
    """OpenAssistant trees: every root-to-leaf path, or only the top-ranked one."""
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
    workers: int = Field(default=1, ge=1)
    """Processes that render and tokenize (spawned, so safe whatever TOKENIZERS_PARALLELISM is)."""
    chunk_size: int = Field(default=512, ge=1)
    """Records sent to a worker at once."""
    engine: Engine = Engine.local
    """Where the work runs: `local` (this machine) or `ray` (Ray Data; needs `pip install 'sftdata[ray]'`).
    Same output bytes either way."""
    ray_address: str | None = None
    """Ray cluster to join with `engine: ray` (e.g. `ray://head:10001` or `auto`); none starts a local Ray."""

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


def resolve_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """The config from a YAML file (optional) with flag values on top, validated once.

    Args:
        path: a pipeline YAML file, or None for defaults.
        overrides: values from flags; None values mean "not given" and are ignored. Nested mask
            options go under `mask` (e.g. {"mask": {"masking": "last"}}).

    Raises:
        ConfigError: listing every problem (unknown keys, wrong types, out-of-range values) at once.
    """
    data = load_yaml(path) if path is not None else {}
    clean = {k: v for k, v in (overrides or {}).items() if v is not None}
    if isinstance(clean.get("mask"), dict):
        clean["mask"] = {k: v for k, v in clean["mask"].items() if v is not None}
    merged = _merge(data, clean)
    try:
        return PipelineConfig.model_validate(merged)
    except ValidationError as err:
        origin = f"{path} (with command-line flags)" if path is not None else "command-line flags"
        raise ConfigError(_format_errors(err, origin)) from None
