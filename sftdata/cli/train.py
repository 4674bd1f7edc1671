"""`sftdata train`: a thin layer over `sftdata.train.train` (torch is imported only when it runs).

The options are `TrainConfig`'s fields, derived by `sftdata.cli.flags` (names, help and defaults
come from the model); only `--config` is declared here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sftdata.cli.flags import model_flags, overrides, with_flags
from sftdata.train.config import TrainConfig

EPILOG = """
Examples:

  sftdata train --shards out/shards --model HuggingFaceTB/SmolLM2-135M-Instruct --out runs/a --max-steps 200

  sftdata train --config train.yaml --lr 1e-5            # flags override the YAML

  sftdata train --shards s --model-config tiny-llama --out runs/t --max-steps 60 --lr 1e-3 --log-every 1

  torchrun --nproc-per-node 8 -m sftdata train --config train.yaml    # DDP (parallel: fsdp for big models)

Writes OUT/metrics.jsonl (step, split, loss, lr, tokens_per_s, supervised_tokens_per_s, mfu),
OUT/checkpoints/step-N (with --save-every; resume with --resume latest) and OUT/final
(save_pretrained model + tokenizer).
"""


ALIASES = {"model_from_config": "--model-config"}
"""Older option names kept working (the long option is always the field name)."""

FLAGS = model_flags(TrainConfig, aliases=ALIASES)
"""One option per `TrainConfig` field (`sftdata.cli.flags`)."""


def register(app: typer.Typer) -> None:
    app.command("train", epilog=EPILOG, help="Train a causal LM on prepared shards (needs the `train` extra: torch).")(
        train_command)


@with_flags(FLAGS)
def train_command(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML TrainConfig; flags override it.",
                                                show_default=False)] = None,
    **values: Any,
) -> None:
    from sftdata.train.config import load_config

    cfg = load_config(config, **overrides(FLAGS, values))
    try:
        import torch  # noqa: F401
    except ImportError as err:
        from sftdata.errors import ConfigError

        raise ConfigError("`sftdata train` needs torch: pip install 'sftdata[train]'") from err
    from sftdata.train import train

    result = train(cfg)
    if result.final_dir is not None:
        typer.echo(f"model saved to {result.final_dir}")
    last = next((v for k, v in sorted(result.losses.items(), reverse=True) if v is not None), None)
    evals = " ".join(f"eval@{k}={v:.4f}" for k, v in sorted(result.eval_losses.items()))
    typer.echo(f"{result.steps} steps, {result.tokens} tokens in {result.seconds:.1f}s, last train loss "
               f"{last if last is None else round(last, 4)} {evals} ({result.attention} attention)")
