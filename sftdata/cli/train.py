"""`sftdata train`: a thin layer over `sftdata.train.train` (torch is imported only when it runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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


def register(app: typer.Typer) -> None:
    app.command("train", epilog=EPILOG, help="Train a causal LM on prepared shards (needs the `train` extra: torch).")(
        train_command)


def train_command(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML TrainConfig; flags override it.")] = None,
    shards: Annotated[Path | None, typer.Option(help="Folder written by `sftdata prepare`.")] = None,
    model: Annotated[str | None, typer.Option(help="Model folder or hub id.")] = None,
    model_config: Annotated[str | None, typer.Option(
        "--model-config", help="Random init instead: tiny-llama, tiny-qwen2 or a config JSON.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps (else --epochs).")] = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the shards when --max-steps is unset.")] = None,
    eval_shards: Annotated[Path | None, typer.Option(help="Held-out prepared folder.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (default 2e-5).")] = None,
    micro_batch_size: Annotated[int | None, typer.Option(help="Packed rows per forward pass per rank.")] = None,
    grad_accum: Annotated[int | None, typer.Option(help="Micro-batches per optimizer step per rank.")] = None,
    log_every: Annotated[int | None, typer.Option(help="Write a metrics line every N steps.")] = None,
    eval_every: Annotated[int | None, typer.Option(help="Evaluate every N steps (and at start and end).")] = None,
    save_every: Annotated[int | None, typer.Option(help="Write a resumable checkpoint every N steps.")] = None,
    resume: Annotated[str | None, typer.Option(help="`latest` or a checkpoint folder.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the init, the shuffle and dropout.")] = None,
    warmup_steps: Annotated[int | None, typer.Option(help="Linear warmup steps (default 3% of the run).")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="AdamW weight decay on matrices.")] = None,
    max_grad_norm: Annotated[float | None, typer.Option(help="Gradient clipping norm.")] = None,
    precision: Annotated[str | None, typer.Option(help="auto | fp32 | bf16.")] = None,
    attention: Annotated[str | None, typer.Option(
        help="auto | flash_attention_2 | sdpa | flex_attention | eager.")] = None,
    parallel: Annotated[str | None, typer.Option(help="ddp | fsdp (under torchrun).")] = None,
    activation_checkpointing: Annotated[bool | None, typer.Option(
        "--activation-checkpointing/--no-activation-checkpointing", help="Recompute activations in backward.")] = None,
    compile: Annotated[bool | None, typer.Option("--compile/--no-compile", help="torch.compile each layer.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu | cuda (default: cuda when available).")] = None,
    tokenizer: Annotated[str | None, typer.Option(help="Tokenizer to save with the model.")] = None,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress", help="Progress bar.")] = None,
) -> None:
    from sftdata.train.config import load_config

    cfg = load_config(
        config, shards=shards, model=model, model_from_config=model_config, out=out, max_steps=max_steps,
        epochs=epochs, eval_shards=eval_shards, lr=lr, micro_batch_size=micro_batch_size, grad_accum=grad_accum,
        log_every=log_every, eval_every=eval_every, save_every=save_every, resume=resume, seed=seed,
        warmup_steps=warmup_steps, weight_decay=weight_decay, max_grad_norm=max_grad_norm, precision=precision,
        attention=attention, parallel=parallel, activation_checkpointing=activation_checkpointing, compile=compile,
        device=device, tokenizer=tokenizer, progress=progress)
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
