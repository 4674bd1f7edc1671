"""The training loop: shards -> micro-batches -> loss normalised over the whole step -> AdamW.

One optimizer step on each rank: collate its `grad_accum` micro-batches (`data.step_rows`), count
their supervised targets, all-reduce the count N (and the real tokens), then for each micro-batch
backpropagate `sum(token losses) * world / N` (no gradient sync until the last one), clip, step.
A step whose N is 0 on every rank is skipped with a warning: the data position and the schedule
advance, the weights do not, and metrics.jsonl records `skipped: true` (never a NaN or a silent 0).

Everything a step depends on is either in a checkpoint (weights, AdamW moments, scheduler, RNG) or
a pure function of the config and the step number (which rows), so a resumed run reproduces the
uninterrupted run's losses exactly (tests/test_train_resume.py).
"""

from __future__ import annotations

import math
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sftdata.errors import ConfigError
from sftdata.train import distributed
from sftdata.train.attention import flat_targets, model_inputs, resolve_attention
from sftdata.train.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from sftdata.train.config import Parallel, Precision, TrainConfig
from sftdata.train.data import Batch, ShardSet, collate, step_rows, steps_per_epoch
from sftdata.train.loss import forward_loss_sum
from sftdata.train.metrics import MetricsLog, Throughput
from sftdata.train.model import build_model, load_tokenizer, peak_flops, step_flops


@dataclass
class TrainResult:
    """What a run did; the same figures are in OUT/metrics.jsonl."""

    steps: int
    """Optimizer steps completed (including skipped ones), counted from the start of the run."""
    losses: dict[int, float | None] = field(default_factory=dict)
    """Step (1-based) -> train loss per supervised token of that step; None for a skipped step."""
    eval_losses: dict[int, float] = field(default_factory=dict)
    """Step -> held-out loss per supervised token (step 0 = before training)."""
    tokens: int = 0
    supervised_tokens: int = 0
    seconds: float = 0.0
    attention: str = ""
    """The attention path used (flash_attention_2, sdpa, flex_attention, eager)."""
    final_dir: Path | None = None
    metrics_path: Path | None = None


def make_schedule(optimizer: torch.optim.Optimizer, total: int, warmup: int, min_ratio: float):
    """Linear warmup to the peak lr over `warmup` steps, then cosine down to `min_ratio` of it."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices only; fused kernel on GPU."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    fused = device.type == "cuda"
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=fused)


class Trainer:
    """Holds the pieces of one run; `run()` does the work. Built by `train(config)`."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.d = distributed.setup(cfg.device)
        self.shards = ShardSet(cfg.shards)
        self.eval_shards = ShardSet(cfg.eval_shards) if cfg.eval_shards else None
        self.attn = resolve_attention(cfg.attention, self.d.device)
        on_gpu = self.d.device.type == "cuda"
        self.bf16 = cfg.precision == Precision.bf16 or (cfg.precision == Precision.auto and on_gpu)
        vocab_needed = max(self.shards.max_token_id(), self.eval_shards.max_token_id() if self.eval_shards else 0) + 1
        self.tokenizer = load_tokenizer([cfg.tokenizer, self.shards.manifest.tokenizer.path or None, cfg.model])
        torch.manual_seed(cfg.seed)
        # a model from a config gets the tokenizer's whole vocabulary, so that the saved model and tokenizer agree
        vocab = max(vocab_needed, len(self.tokenizer) if self.tokenizer is not None else 0)
        model = build_model(cfg.model, cfg.model_from_config, vocab_size=vocab, attn=self.attn, seed=cfg.seed)
        n_embed = model.get_input_embeddings().weight.shape[0]
        if vocab_needed > n_embed:
            raise ConfigError(f"{cfg.shards}: token id {vocab_needed - 1} >= the model's vocabulary ({n_embed}); "
                              "the shards were prepared with another tokenizer than this model's")
        self.keep_logits = "logits_to_keep" in _forward_params(model)
        if cfg.activation_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.to(self.d.device)
        if cfg.compile:
            for layer in distributed.decoder_layers(model) or [model]:
                layer.compile()
        self.hf_model = model
        self.model = distributed.wrap(model, self.d, cfg.parallel, self.bf16)
        self.sharded = cfg.parallel == Parallel.fsdp
        self.optimizer = make_optimizer(self.model, cfg, self.d.device)
        self.rows_per_step = cfg.micro_batch_size * cfg.grad_accum * self.d.world
        self.per_epoch = steps_per_epoch(len(self.shards), self.rows_per_step)
        if self.per_epoch == 0:
            raise ConfigError(f"{cfg.shards}: {len(self.shards)} rows < {self.rows_per_step} rows per step "
                              f"(micro_batch_size x grad_accum x ranks); lower micro_batch_size or grad_accum")
        self.total = cfg.max_steps or max(1, math.ceil(cfg.epochs * self.per_epoch))
        warmup = cfg.warmup_steps if cfg.warmup_steps is not None else int(cfg.warmup_ratio * self.total)
        self.scheduler = make_schedule(self.optimizer, self.total, warmup, cfg.min_lr_ratio)
        self.pad_to = max(self.shards.capacity, self.eval_shards.capacity if self.eval_shards else 0) \
            if cfg.compile else None
        self.peak = peak_flops(self.d.device, cfg.peak_tflops)

    # -- one optimizer step ------------------------------------------------------------------
    def autocast(self):
        if not self.bf16:
            return nullcontext()
        return torch.autocast(self.d.device.type, dtype=torch.bfloat16)

    def micro_batches(self, step: int) -> list[Batch]:
        cfg = self.cfg
        plan = step_rows(len(self.shards), step, micro_batch_size=cfg.micro_batch_size, grad_accum=cfg.grad_accum,
                         world=self.d.world, rank=self.d.rank, seed=cfg.seed, shuffle=cfg.shuffle)
        return [collate([self.shards[i] for i in rows], self.pad_to) for rows in plan]

    def accumulate(self, step: int) -> tuple[float | None, int, int, float]:
        """Forward + backward of this rank's micro-batches of `step`; gradients left in `.grad`.

        Returns (loss per supervised token, tokens, supervised tokens, FLOPs), all summed over ranks;
        the loss is None (and nothing is run) when the step has no supervised token anywhere.
        """
        batches = self.micro_batches(step)
        local_flops = sum(step_flops(self.hf_model, b.tokens, [n for r in b.doc_lens for n in r]) for b in batches)
        n_sup, n_tok, flops = distributed.all_reduce_sum(
            [sum(b.supervised for b in batches), sum(b.tokens for b in batches), local_flops], self.d.device)
        if n_sup == 0:
            warnings.warn(f"step {step + 1}: no supervised token in any of its {self.rows_per_step} rows; "
                          "step skipped (weights unchanged)", stacklevel=2)
            return None, int(n_tok), 0, flops
        self.model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.d.device)
        scale = self.d.world / n_sup  # DDP / FSDP average over ranks; this turns it back into a sum / N
        for m, batch in enumerate(batches):
            inputs = model_inputs(batch, self.attn, self.d.device)
            targets = torch.from_numpy(flat_targets(batch, self.attn)).to(self.d.device)
            with distributed.no_sync(self.model, m == len(batches) - 1):
                with self.autocast():
                    s = forward_loss_sum(self.model, inputs, targets, self.keep_logits)
                (s * scale).backward()
            loss_sum += s.detach()
        (total_loss,) = distributed.all_reduce_sum([loss_sum.item()], self.d.device)
        return total_loss / n_sup, int(n_tok), int(n_sup), flops

    def apply(self) -> float:
        """Clip, take the optimizer step, clear gradients; returns the gradient norm before clipping."""
        max_norm = self.cfg.max_grad_norm if self.cfg.max_grad_norm is not None else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)

    def train_step(self, step: int) -> tuple[float | None, float | None, int, int, float]:
        """One optimizer step: (loss, grad_norm, tokens, supervised, flops); loss None when skipped."""
        loss, n_tok, n_sup, flops = self.accumulate(step)
        grad_norm = None if loss is None else self.apply()
        return loss, grad_norm, n_tok, n_sup, flops

    @torch.no_grad()
    def evaluate(self) -> float:
        """Held-out loss per supervised token; every rank runs the same number of forwards."""
        assert self.eval_shards is not None
        model = self.model if self.sharded else self.hf_model
        model.eval()
        n, mb, world = len(self.eval_shards), self.cfg.micro_batch_size, self.d.world
        rounds = math.ceil(n / (mb * world))
        total = count = 0.0
        for k in range(rounds):
            lo = (k * world + self.d.rank) * mb
            rows = list(range(lo, min(lo + mb, n)))
            batch = collate([self.eval_shards[i] for i in (rows or [0])], self.pad_to)
            targets = torch.from_numpy(flat_targets(batch, self.attn)).to(self.d.device)
            with self.autocast():
                s = forward_loss_sum(model, model_inputs(batch, self.attn, self.d.device), targets, self.keep_logits)
            if rows:  # a rank past the end ran row 0 only to keep FSDP's collectives in step
                total += s.item()
                count += batch.supervised
        total, count = distributed.all_reduce_sum([total, count], self.d.device)
        return total / count if count else float("nan")

    # -- the run ----------------------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg, d = self.cfg, self.d
        start = 0
        if not cfg.resume and any((cfg.out / "checkpoints").glob("step-??????")):
            raise ConfigError(f"{cfg.out} already holds checkpoints of another run; pass --resume latest to continue "
                              "it, or choose another --out")
        if cfg.resume:
            state = load_checkpoint(find_checkpoint(cfg.out, cfg.resume), self.model, self.optimizer, self.scheduler,
                                    rank=d.rank, sharded=self.sharded)
            start = int(state["step"])
        log = MetricsLog(cfg.out / "metrics.jsonl", enabled=d.main, resume_step=start if cfg.resume else None)
        result = TrainResult(steps=start, attention=self.attn, metrics_path=log.path)
        t0 = time.perf_counter()
        if self.eval_shards is not None and start == 0:
            self._log_eval(0, log, result)
        meter = Throughput()
        window_loss = window_sup = 0.0
        progress = _progress(enabled=cfg.progress and d.main, total=self.total, start=start)
        with progress:
            task = progress.add_task("train", total=self.total, completed=start)
            for step in range(start, self.total):
                lr = self.scheduler.get_last_lr()[0]  # the lr this step uses
                loss, grad_norm, n_tok, n_sup, flops = self.train_step(step)
                with warnings.catch_warnings():  # a skipped step still advances the schedule
                    warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
                    self.scheduler.step()
                done = step + 1
                meter.add(n_tok, n_sup, flops)
                result.tokens += n_tok
                result.supervised_tokens += n_sup
                result.losses[done] = loss
                if loss is None:
                    log.write({"step": done, "split": "train", "loss": None, "skipped": True, "lr": lr})
                else:
                    window_loss += loss * n_sup
                    window_sup += n_sup
                if loss is not None and (done % cfg.log_every == 0 or done == self.total):
                    rates = meter.take(self.peak * d.world if self.peak else None)
                    log.write({"step": done, "split": "train", "loss": round(window_loss / window_sup, 6),
                               "lr": lr,
                               "grad_norm": round(grad_norm, 6), **rates, "tokens": result.tokens})
                    progress.update(task, description=f"loss {window_loss / window_sup:.4f}")
                    window_loss = window_sup = 0.0
                if self.eval_shards is not None and cfg.eval_every and done % cfg.eval_every == 0 and done < self.total:
                    self._log_eval(done, log, result)
                if cfg.save_every and done % cfg.save_every == 0 and done < self.total:
                    save_checkpoint(cfg.out, done, self.model, self.optimizer, self.scheduler,
                                    {"tokens": result.tokens, "config": cfg.model_dump(mode="json")},
                                    rank=d.rank, sharded=self.sharded, keep=cfg.keep_checkpoints)
                progress.update(task, completed=done)
                result.steps = done
        if self.eval_shards is not None and self.total > start:
            self._log_eval(self.total, log, result)
        result.seconds = time.perf_counter() - t0
        if cfg.save_final:
            result.final_dir = self._save_final()
        return result

    def _log_eval(self, step: int, log: MetricsLog, result: TrainResult) -> None:
        loss = self.evaluate()
        result.eval_losses[step] = loss
        log.write({"step": step, "split": "eval", "loss": round(loss, 6), "tokens": result.tokens})

    def _save_final(self) -> Path:
        """OUT/final: `save_pretrained` model (fp32) + tokenizer, loadable by transformers."""
        final = self.cfg.out / "final"
        state = None
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            state = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if self.d.main:
            model = distributed.unwrap(self.hf_model)
            model.save_pretrained(final, state_dict=state)
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(final)
            else:
                warnings.warn(f"no tokenizer found to save in {final}; pass --tokenizer", stacklevel=2)
        if self.d.world > 1:
            torch.distributed.barrier()
        return final


def _forward_params(model: torch.nn.Module) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)


def _progress(*, enabled: bool, total: int, start: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    disable=not enabled)


def train(config: TrainConfig) -> TrainResult:
    """Train on prepared shards as `config` says; see `sftdata.train` for the guarantees."""
    trainer = Trainer(config)
    try:
        return trainer.run()
    finally:
        distributed.teardown()
