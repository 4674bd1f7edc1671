#!/usr/bin/env python3
"""`sftdata train` vs TRL `SFTTrainer` on the same shards, model and batch geometry: steps/s and supervised tokens/s.

Both read the same prepared folder in stored order (sftdata: `shuffle=False`; TRL:
`sftdata.hf.dataset(DIR)` with `padding_free=True, packing=False, max_length=None` and
`train_sampling_strategy="sequential"`), `--micro-batch-size` packed rows per micro-step, `--grad-accum`
micro-steps per optimizer step, so every step of the two runs trains the very same tokens with the same
labels. Both: the same weights (SmolLM2-135M-Instruct from `../shared/models/smollm2.py`), AdamW
(0.9, 0.95) without weight decay, lr `--lr` with `--warmup` linear warmup steps then cosine, clip 1.0,
no activation checkpointing (TRL turns it on by default; off here as in `sftdata train`), fp32 on CPU,
bf16 autocast on a GPU, the same attention implementation (`--attention`, sdpa by default).

Timing: a wall-clock mark at the end of every optimizer step (after a CUDA sync on a GPU); the first
`--skip` steps are warm-up and not counted; steps/s and supervised tokens/s are over the remaining
steps, and the figure that matters is the ratio sftdata / TRL from the same run. The first-step losses
of the two are printed side by side: on CPU in fp32 they agree to ~1e-5 (tests/test_hf_loss.py), which
shows the runs really train the same thing.

Data: alpaca_en_demo from `../shared/fixtures` prepared with the model's tokenizer at `--max-length`
(or `--shards DIR` for any prepared folder). `--tiny` checks the script in seconds instead: the
bundled example and tokenizer, a random 2-layer Llama (no ../shared needed).

usage:
  python benchmarks/bench_trainers.py        # SmolLM2-135M, 8 steps of 2 rows x 512 (~3 min on 2 idle cores, est.)
  python benchmarks/bench_trainers.py --steps 30 --skip 5 --micro-batch-size 8 --max-length 2048   # on a GPU
  python benchmarks/bench_trainers.py --tiny --steps 4 --skip 1                  # check the script
Prints one JSON line per trainer, then the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def prepare_data(a: argparse.Namespace, tokenizer: str) -> Path:
    """The prepared folder both trainers read."""
    from sftdata.config import resolve_config
    from sftdata.prepare import prepare
    from sftdata.tinytok import EXAMPLE_PATH

    if a.shards is not None:
        return a.shards
    source = EXAMPLE_PATH if a.tiny else SHARED / "fixtures/datasets/llama_factory/alpaca_en_demo.json"
    out = a.out / "shards"
    config = resolve_config(None, {"tokenizer": tokenizer, "max_length": a.max_length, "max_reject_fraction": 0.05})
    prepare([str(source)], out, config, overwrite=True)
    return out


def model_source(a: argparse.Namespace) -> tuple[str | None, str | None, str]:
    """(model folder, tiny preset, tokenizer folder)."""
    if a.tiny:
        from sftdata.tinytok import TOKENIZER_DIR

        return None, "tiny-llama", str(TOKENIZER_DIR)
    folder = subprocess.run([sys.executable, str(SHARED / "models" / "smollm2.py")], check=True,
                            capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return folder, None, folder


def rates(marks: list[float], tokens: list[int], supervised: list[int], skip: int) -> dict:
    """Steps/s, tokens/s and supervised tokens/s over the steps after the first `skip` (marks[i] = end of step i)."""
    seconds = marks[-1] - marks[skip - 1] if skip > 0 else marks[-1] - marks[0]
    first = skip if skip > 0 else 1
    steps = len(marks) - first
    return {"timed_steps": steps, "seconds": round(seconds, 3), "steps_per_s": steps / seconds,
            "tokens_per_s": sum(tokens[first:]) / seconds, "supervised_tokens_per_s": sum(supervised[first:]) / seconds}


def step_counts(shards: Path, a: argparse.Namespace) -> tuple[list[int], list[int]]:
    """Tokens and supervised targets of each optimizer step (rows in stored order, the same for both)."""
    from sftdata.train.data import ShardSet, collate

    shard_set = ShardSet(shards)
    per_step = a.micro_batch_size * a.grad_accum
    tokens, supervised = [], []
    for step in range(a.steps):
        rows = [shard_set[(step * per_step + k) % len(shard_set)] for k in range(per_step)]
        batch = collate(rows)
        tokens.append(batch.tokens)
        supervised.append(batch.supervised)
    return tokens, supervised


def run_sftdata(a, shards: Path, model: str | None, preset: str | None, tokenizer: str, cuda: bool) -> dict:
    import torch

    from sftdata.train import TrainConfig
    from sftdata.train.loop import Trainer

    cfg = TrainConfig(shards=shards, model=model, model_from_config=preset, tokenizer=tokenizer,
                      out=a.out / "sftdata", max_steps=a.steps, lr=a.lr, warmup_steps=a.warmup,
                      micro_batch_size=a.micro_batch_size, grad_accum=a.grad_accum, shuffle=False,
                      precision="bf16" if cuda else "fp32", attention=a.attention, save_final=False,
                      progress=False, seed=0, device="cuda" if cuda else "cpu")
    trainer = Trainer(cfg)
    marks, losses = [], []
    start = time.perf_counter()
    for step in range(a.steps):
        loss, *_ = trainer.train_step(step)
        trainer.scheduler.step()
        if cuda:
            torch.cuda.synchronize()
        marks.append(time.perf_counter())
        losses.append(loss)
    return {"trainer": "sftdata train", "attention": trainer.attn, "marks": [m - start for m in marks],
            "losses": losses}


def run_trl(a, shards: Path, model: str | None, preset: str | None, tokenizer: str, cuda: bool) -> dict:
    import torch
    from transformers import AutoTokenizer, PrinterCallback, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    import sftdata.hf
    from sftdata.train.model import build_model

    tok = AutoTokenizer.from_pretrained(tokenizer)
    net = build_model(model, preset, vocab_size=len(tok), attn=a.attention, seed=0)

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.marks: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            self.marks.append(time.perf_counter())

    clock = Clock()
    args = SFTConfig(output_dir=str(a.out / "trl"), padding_free=True, packing=False, max_length=None,
                     per_device_train_batch_size=a.micro_batch_size, gradient_accumulation_steps=a.grad_accum,
                     train_sampling_strategy="sequential", max_steps=a.steps, learning_rate=a.lr,
                     lr_scheduler_type="cosine", warmup_steps=a.warmup, weight_decay=0.0, max_grad_norm=1.0,
                     adam_beta1=0.9, adam_beta2=0.95, optim="adamw_torch_fused" if cuda else "adamw_torch",
                     bf16=cuda, use_cpu=not cuda, gradient_checkpointing=False, logging_steps=1, report_to=[],
                     save_strategy="no", dataloader_num_workers=0, seed=0, disable_tqdm=True)
    trainer = SFTTrainer(model=net, args=args, train_dataset=sftdata.hf.dataset(shards), processing_class=tok,
                         callbacks=[clock, sftdata.hf.IsolationCheck()])
    trainer.remove_callback(PrinterCallback)  # no dict printed per step
    start = time.perf_counter()
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"trainer": "TRL SFTTrainer", "attention": net.config._attn_implementation,
            "marks": [m - start for m in clock.marks], "losses": losses}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--skip", type=int, default=2, help="warm-up steps not timed")
    ap.add_argument("--micro-batch-size", type=int, default=2, help="packed rows per micro-step")
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--max-length", type=int, default=512, help="row length when preparing the data")
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--attention", default="sdpa", help="sdpa | eager | flash_attention_2 (GPU)")
    ap.add_argument("--shards", type=Path, default=None, help="a prepared folder (default: prepare alpaca_en_demo)")
    ap.add_argument("--tiny", action="store_true", help="bundled data + random tiny Llama: checks the script")
    ap.add_argument("--out", type=Path, default=Path("/tmp/sftdata-bench-trainers"))
    a = ap.parse_args()
    if a.skip >= a.steps:
        raise SystemExit(f"--skip {a.skip} leaves no timed step of --steps {a.steps}")

    import torch

    cuda = torch.cuda.is_available()
    a.out.mkdir(parents=True, exist_ok=True)
    model, preset, tokenizer = model_source(a)
    shards = prepare_data(a, tokenizer)
    tokens, supervised = step_counts(shards, a)
    results = []
    for run in (run_sftdata, run_trl):
        r = run(a, shards, model, preset, tokenizer, cuda)
        r.update(rates(r.pop("marks"), tokens, supervised, a.skip))
        r["first_loss"] = r["losses"][0]
        results.append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "losses"}), flush=True)
    ours, trl = results
    device = torch.cuda.get_device_name() if cuda else f"CPU ({os.cpu_count()} cores)"
    print(f"\n{device} | {'tiny-llama' if a.tiny else 'SmolLM2-135M-Instruct'} | {a.steps} steps ({a.skip} warm-up) "
          f"x {a.micro_batch_size * a.grad_accum} rows of <= {a.max_length} tokens | attention {a.attention}")
    print(f"first-step loss: sftdata {ours['first_loss']:.6f}  TRL {trl['first_loss']:.6f}")
    print(json.dumps({"ratio_steps_per_s": round(ours["steps_per_s"] / trl["steps_per_s"], 3),
                      "ratio_supervised_tokens_per_s": round(ours["supervised_tokens_per_s"]
                                                             / trl["supervised_tokens_per_s"], 3)}))


if __name__ == "__main__":
    main()
