"""`TrainConfig`: the closed, typed configuration of `sftdata train` (no torch import here).

One Pydantic model with `extra="forbid"`: a misspelt key is an error that names the key, not a
silently ignored option. The YAML file and the command-line flags fill the same model (flags win),
and every problem is reported at once. Defaults are the usual ones for full fine-tuning of a chat
model (lr 2e-5, 3% warmup then cosine, weight decay 0.0, clip 1.0): a config with `shards`,
`model` and `out` is a complete, sensible run.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sftdata.errors import ConfigError


class Precision(StrEnum):
    """Numeric precision of the forward/backward pass (master weights and optimizer stay fp32)."""

    auto = "auto"
    """bf16 autocast on a GPU, fp32 on CPU."""
    fp32 = "fp32"
    """Everything in fp32 (the reference; what the equality tests use)."""
    bf16 = "bf16"
    """bf16 autocast (fp32 weights, bf16 matmuls)."""


class Attention(StrEnum):
    """How documents packed into one row are kept from attending to each other."""

    auto = "auto"
    """flash_attention_2 when `flash_attn` is installed and a GPU is used, else sdpa."""
    flash_attention_2 = "flash_attention_2"
    """FlashAttention varlen: rows are concatenated, `cu_seqlens` from `doc_lens` (no mask tensor, no padding)."""
    sdpa = "sdpa"
    """PyTorch SDPA with a block-diagonal causal bool mask built from `doc_lens` (B x 1 x L x L)."""
    flex_attention = "flex_attention"
    """FlexAttention with a document `BlockMask` (sparse: skips the off-diagonal blocks)."""
    eager = "eager"
    """Plain matmul attention with an additive block-diagonal mask (slow; a reference)."""


class Parallel(StrEnum):
    """How several ranks (`torchrun --nproc-per-node N`) share the work."""

    ddp = "ddp"
    """DistributedDataParallel: every rank holds the whole model (fits one GPU)."""
    fsdp = "fsdp"
    """FSDP2 (`fully_shard` per decoder layer): parameters, gradients and optimizer state sharded."""


class TrainConfig(BaseModel):
    """Everything a training run needs; `shards`, `model` (or `model_from_config`) and `out` are required."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), use_attribute_docstrings=True)

    shards: Path
    """Folder written by `sftdata prepare` (manifest.json + shard-*.arrow)."""
    out: Path
    """Output folder: metrics.jsonl, checkpoints/, final/ (save_pretrained model + tokenizer)."""
    model: str | None = None
    """A local Hugging Face model folder or a hub id (pretrained weights)."""
    model_from_config: str | None = None
    """Instead of `model`: random init from a config, `tiny-llama` / `tiny-qwen2` or a config JSON file."""
    tokenizer: str | None = None
    """Tokenizer to save with the final model; default: the shards' manifest tokenizer, else `model`."""
    eval_shards: Path | None = None
    """Held-out folder written by `sftdata prepare`; evaluated at step 0, every `eval_every` and at the end."""

    max_steps: int | None = Field(default=None, ge=1)
    """Optimizer steps to run; when unset, `epochs` passes over the shards."""
    epochs: float = Field(default=1.0, gt=0)
    """Passes over the shards when `max_steps` is unset (fractions allowed)."""
    lr: float = Field(default=2e-5, gt=0)
    """Peak learning rate, reached after warmup."""
    min_lr_ratio: float = 0.0
    """The cosine schedule ends at `lr * min_lr_ratio`."""
    warmup_steps: int | None = None
    """Linear warmup steps; when unset, `warmup_ratio` of the total steps."""
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    """Warmup as a fraction of the total steps, used when `warmup_steps` is unset."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay, applied to matrices only (not to norms or biases)."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas (on the command line: `--betas 0.9,0.95`)."""
    max_grad_norm: float | None = 1.0
    """Clip the global gradient norm to this; None turns clipping off."""
    micro_batch_size: int = Field(default=1, ge=1)
    """Packed rows per forward pass on each rank."""
    grad_accum: int = Field(default=1, ge=1)
    """Micro-batches per optimizer step on each rank."""
    shuffle: bool = True
    """Shuffle rows every epoch (a pure function of `seed` and the epoch, so resume is exact)."""
    seed: int = 0
    """Seed of the init, the shuffle and dropout."""

    precision: Precision = Precision.auto
    """Numeric precision of the forward and backward pass."""
    attention: Attention = Attention.auto
    """How the documents packed into one row are kept from attending to each other."""
    activation_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward pass: less memory for about one more forward."""
    compile: bool = False
    """`torch.compile` the model (rows are then padded to the packing capacity to keep shapes static)."""
    parallel: Parallel = Parallel.ddp
    """How ranks share the work under `torchrun`."""
    device: str | None = None
    """`cpu` or `cuda`; default: cuda when available."""

    log_every: int = Field(default=10, ge=1)
    """Write a metrics line every N steps."""
    eval_every: int | None = Field(default=None, ge=1)
    """Evaluate on `eval_shards` every N steps (and at the start and the end)."""
    save_every: int | None = Field(default=None, ge=1)
    """Write a resumable checkpoint every N steps (and keep the last `keep_checkpoints`)."""
    keep_checkpoints: int = Field(default=2, ge=1)
    """Checkpoints kept under OUT/checkpoints; older ones are removed."""
    resume: str | None = None
    """`latest` (newest checkpoint under OUT/checkpoints) or a checkpoint folder."""
    save_final: bool = True
    """Write OUT/final with `save_pretrained` (model + tokenizer) at the end."""
    peak_tflops: float | None = None
    """Peak dense bf16 TFLOP/s per GPU for MFU; default: looked up from the GPU name."""
    progress: bool = True
    """Show a progress bar on rank 0."""

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        problems = []
        if (self.model is None) == (self.model_from_config is None):
            problems.append("give exactly one of `model` (folder or hub id) and `model_from_config` "
                            "(tiny-llama or a config JSON)")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def load_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Read a YAML config (optional) and apply `overrides` (flags; None means "not given").

    Raises:
        ConfigError: naming the file and every invalid or unknown key at once.
    """
    import yaml

    data: dict[str, Any] = {}
    where = "command-line flags"
    if path is not None:
        where = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise ConfigError(f"{path}: config file not found; pass an existing YAML file to --config") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err}); fix the syntax") from err
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of TrainConfig keys, got {type(loaded).__name__}")
        data = dict(loaded or {})
        where = f"{path} (+ flags)" if any(v is not None for v in overrides.values()) else str(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            key = ".".join(str(p) for p in e["loc"]) or "config"
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = f"unknown key (allowed: {', '.join(sorted(TrainConfig.model_fields))})"
            lines.append(f"  {key}: {msg}")
        raise ConfigError(f"{where}: invalid training config:\n" + "\n".join(lines)) from None
