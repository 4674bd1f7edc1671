#!/usr/bin/env python3
"""sftdata's trainer vs TRL's SFTTrainer on one GPU: same model, data, sequence length, tokens per step.

Model: a Qwen2.5-0.5B-shaped model (24 layers, hidden 896, 14 heads / 2 KV heads, vocab 151,936, tied
embeddings), random init from the same seed for both. Data: the bench corpus
(`../shared/bench/make_corpus.py`), prepared by `sftdata prepare` with the Qwen2.5 tokenizer into
rows of 4,096 tokens. TRL gets exactly the same documents (input_ids + labels, one per row) and
packs them itself (`packing=True`, BFD, padding-free), so both see the same tokens and the same
supervised positions. Both: bf16 autocast over fp32 weights, fused AdamW (0.9, 0.95), lr 1e-4 with
3 warmup steps then cosine, clip 1.0, one 4,096-token row per micro-step, `--grad-accum` micro-steps.

Printed per trainer (one JSON line each, then a table): attention path, whether documents are
isolated (measured: logits of a packed row's second document vs that document alone), tokens/s
(median over steps after `--warmup-steps`), supervised tokens/s, MFU (same FLOP formula for both:
`sftdata.train.model.step_flops`, per real token, causal attention per document) and the loss curve.

Two phases, because the GPU machine has torch + transformers but not pydantic / datasets / trl and
cannot reach a registry:

  # on a CPU machine, in the repo root: corpus + shards + model config (+ wheels to carry)
  python benchmarks/train_gpu.py prepare --rows 20000 --data bench_gpu
  python benchmarks/train_gpu.py wheels --dest .whl           # pip download for the GPU's Python 3.12
  # on the GPU (carry bench_gpu and .whl; install the wheels to /tmp/site; PYTHONPATH=/tmp/site:.)
  python benchmarks/train_gpu.py run --data bench_gpu --steps 30 --grad-accum 4 [--ours-attention sdpa,flex_attention]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

QWEN25_05B = {
    "model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
    "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768,
    "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": True, "hidden_act": "silu",
}
"""Qwen/Qwen2.5-0.5B-Instruct's config.json (shape only; weights are random)."""

WHEELS = ["pydantic==2.*", "pydantic-core", "annotated-types", "typing-inspection", "polars",
          "trl==1.16.*", "datasets", "dill", "multiprocess", "pyarrow"]
"""What the GPU machine lacks (its image has torch, transformers, pyarrow, rich, typer, pyyaml, jinja2)."""


# -- phase 1: CPU -----------------------------------------------------------------------------

def cmd_prepare(a: argparse.Namespace) -> None:
    from sftdata.config import resolve_config
    from sftdata.prepare import prepare

    a.data.mkdir(parents=True, exist_ok=True)
    corpus = a.data / "corpus.jsonl"
    subprocess.run([sys.executable, str(SHARED / "bench" / "make_corpus.py"), str(a.rows), str(corpus)], check=True)
    tok = SHARED / "fixtures" / "tokenizers" / "qwen2.5-instruct"
    prepare([str(corpus)], a.data / "shards", resolve_config(None, {"tokenizer": str(tok), "max_length": 4096}),
            overwrite=True)
    (a.data / "qwen2.5-0.5b.json").write_text(json.dumps(QWEN25_05B, indent=2))
    # the tokenizer travels with the data (the final model is saved with it)
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(tok).save_pretrained(a.data / "tokenizer")
    corpus.unlink()
    print(f"wrote {a.data}: shards at 4096, model config, tokenizer")


def cmd_wheels(a: argparse.Namespace) -> None:
    plats = [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")]
    for spec in WHEELS:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.12", "--implementation", "cp", *plats, "-d", str(a.dest), spec],
                       check=False)


# -- phase 2: GPU -----------------------------------------------------------------------------

def documents(shards_dir: Path) -> list[tuple[list[int], list[int]]]:
    """Every document of the shards as (input_ids, labels), in stored order."""
    from sftdata.train.data import ShardSet

    shards = ShardSet(shards_dir)
    docs = []
    for i in range(len(shards)):
        row = shards[i]
        start = 0
        for n in row.doc_lens.tolist():
            docs.append((row.input_ids[start:start + n].tolist(), row.labels[start:start + n].tolist()))
            start += n
    return docs


def isolation_gap(model, packed_inputs: dict, doc_slice: slice, alone_ids) -> float:
    """Max |logit| difference of one document inside a packed row vs run alone (0 = isolated)."""
    import torch

    cuda = alone_ids.device.type == "cuda"
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
        packed = model(**packed_inputs, use_cache=False).logits[0, doc_slice].float()
        alone = model(input_ids=alone_ids[None], use_cache=False).logits[0].float()
    return float((packed - alone).abs().max())


def run_ours(a, attention: str, cfg_path: Path) -> dict:
    import torch

    from sftdata.train import TrainConfig
    from sftdata.train.attention import model_inputs
    from sftdata.train.data import collate
    from sftdata.train.loop import Trainer

    out = a.out / f"ours-{attention}"
    cfg = TrainConfig(shards=a.data / "shards", model_from_config=str(cfg_path), tokenizer=str(a.data / "tokenizer"),
                      out=out, max_steps=a.steps, lr=a.lr, warmup_steps=3, micro_batch_size=1,
                      grad_accum=a.grad_accum, log_every=1, precision="bf16" if a.cuda else "fp32",
                      attention=attention, save_final=False,
                      progress=False, compile=a.compile, activation_checkpointing=a.checkpointing, seed=0)
    _reset_memory(a)
    trainer = Trainer(cfg)
    result = trainer.run()
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steady = [x for x in lines if x["split"] == "train" and x["step"] > a.warmup_steps]
    # isolation probe on a row with >= 2 documents
    row = next(trainer.shards[i] for i in range(len(trainer.shards)) if len(trainer.shards[i].doc_lens) >= 2)
    batch = collate([row])
    n0, n1 = int(row.doc_lens[0]), int(row.doc_lens[1])
    gap = isolation_gap(trainer.hf_model, model_inputs(batch, trainer.attn, trainer.d.device), slice(n0, n0 + n1),
                        torch.as_tensor(row.input_ids[n0:n0 + n1].astype("int64"), device=trainer.d.device))
    return {
        "trainer": f"sftdata ({attention})", "attention": result.attention, "isolation_max_logit_gap": gap,
        "tokens_per_s": statistics.median(x["tokens_per_s"] for x in steady),
        "supervised_tokens_per_s": statistics.median(x["supervised_tokens_per_s"] for x in steady),
        "mfu": statistics.median(x["mfu"] for x in steady) if steady[0]["mfu"] is not None else None,
        "peak_mem_gib": _peak_memory(a),
        "loss": [round(result.losses[k], 4) for k in sorted(result.losses) if result.losses[k] is not None],
        "tokens_per_step": result.tokens / result.steps,
    }


def run_trl(a, cfg_path: Path, flops_per_token: float, peak: float | None) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from sftdata.train.model import build_model, load_tokenizer

    docs = documents(a.data / "shards")
    ds = Dataset.from_dict({"input_ids": [d[0] for d in docs], "labels": [d[1] for d in docs]})
    tok = load_tokenizer([str(a.data / "tokenizer")])
    model = build_model(None, str(cfg_path), vocab_size=len(tok), attn=a.trl_attention, seed=0)

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.marks: list[tuple[float, int]] = []

        def on_step_end(self, args, state, control, **kw):
            if a.cuda:
                torch.cuda.synchronize()
            self.marks.append((time.perf_counter(), int(state.num_input_tokens_seen)))

    clock = Clock()
    args = SFTConfig(output_dir=str(a.out / "trl"), packing=True, max_length=4096, per_device_train_batch_size=1,
                     gradient_accumulation_steps=a.grad_accum, max_steps=a.steps, learning_rate=a.lr,
                     lr_scheduler_type="cosine", warmup_steps=3, weight_decay=0.0, max_grad_norm=1.0,
                     adam_beta1=0.9, adam_beta2=0.95, optim="adamw_torch_fused" if a.cuda else "adamw_torch",
                     bf16=a.cuda, use_cpu=not a.cuda, logging_steps=1,
                     report_to=[], save_strategy="no", include_num_input_tokens_seen="non_padding",
                     dataloader_num_workers=0, seed=0, gradient_checkpointing=a.checkpointing)
    _reset_memory(a)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, callbacks=[clock])
    trainer.train()
    rates = [(t1 - t0, n1 - n0) for (t0, n0), (t1, n1) in zip(clock.marks, clock.marks[1:], strict=False)]
    steady = rates[a.warmup_steps - 1:] if len(rates) >= a.warmup_steps else rates
    tps = statistics.median(n / t for t, n in steady)
    # isolation probe: the collator's own batch for a packed row with >= 2 documents
    packed = next(ex for ex in trainer.train_dataset if len(ex["seq_lengths"]) >= 2)
    batch = trainer.data_collator([packed])
    dev = trainer.model.device
    inputs = {k: (v.to(dev) if hasattr(v, "to") else v) for k, v in batch.items() if k not in ("labels",)}
    n0, n1 = packed["seq_lengths"][0], packed["seq_lengths"][1]
    gap = isolation_gap(trainer.model, inputs, slice(n0, n0 + n1),
                        torch.tensor(packed["input_ids"][n0:n0 + n1], device=dev))
    losses = [round(h["loss"], 4) for h in trainer.state.log_history if "loss" in h]
    sup_frac = sum(sum(x != -100 for x in d[1][1:]) for d in docs) / sum(len(d[0]) for d in docs)
    return {
        "trainer": "TRL SFTTrainer", "attention": model.config._attn_implementation,
        "isolation_max_logit_gap": gap, "tokens_per_s": tps, "supervised_tokens_per_s": tps * sup_frac,
        "mfu": round(tps * flops_per_token / peak, 4) if peak else None,
        "peak_mem_gib": _peak_memory(a), "loss": losses,
        "tokens_per_step": statistics.median(n for _, n in steady),
    }


def _reset_memory(a) -> None:
    import torch

    if a.cuda:
        torch.cuda.reset_peak_memory_stats()


def _peak_memory(a) -> float:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 1) if a.cuda else 0.0


def cmd_run(a: argparse.Namespace) -> None:
    import torch

    from sftdata.train.data import ShardSet
    from sftdata.train.model import build_model, peak_flops, step_flops

    a.cuda = torch.cuda.is_available()
    if not a.cuda and not a.smoke:
        raise SystemExit("this benchmark needs a GPU (--smoke runs a tiny model on CPU to check the script)")
    a.out.mkdir(parents=True, exist_ok=True)
    cfg_path = a.data / "qwen2.5-0.5b.json"
    if a.smoke:
        cfg_path = a.out / "tiny-qwen2.json"
        cfg_path.write_text(json.dumps({**QWEN25_05B, "hidden_size": 64, "intermediate_size": 128,
                                        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}))
    shards = ShardSet(a.data / "shards")
    meta = build_model(None, str(cfg_path), vocab_size=1, attn="sdpa", seed=0)
    sample = [shards[i] for i in range(min(len(shards), 64))]
    tokens = sum(len(r.input_ids) for r in sample)
    flops_per_token = step_flops(meta, tokens, [int(n) for r in sample for n in r.doc_lens]) / tokens
    del meta
    peak = peak_flops(torch.device("cuda" if a.cuda else "cpu"), None)
    results = []
    for attention in [x for x in a.ours_attention.split(",") if x]:
        results.append(run_ours(a, attention, cfg_path))
        print(json.dumps(results[-1]), flush=True)
        if a.cuda:
            torch.cuda.empty_cache()
    if not a.skip_trl:
        results.append(run_trl(a, cfg_path, flops_per_token, peak))
        print(json.dumps(results[-1]), flush=True)
    device_name = torch.cuda.get_device_name() if a.cuda else "CPU (smoke)"
    print(f"\n{device_name} | torch {torch.__version__} | {a.steps} steps x {a.grad_accum} rows "
          f"of <= 4096 tokens")
    print(f"{'trainer':28} {'attention':18} {'isolated':>8} {'tok/s':>9} {'sup tok/s':>9} {'MFU':>6} {'GiB':>5} "
          f"{'loss first->last':>18}")
    base = results[-1]["tokens_per_s"] if not a.skip_trl else None
    for r in results:
        iso = "yes" if r["isolation_max_logit_gap"] < 0.1 else f"NO {r['isolation_max_logit_gap']:.2f}"
        mfu = f"{r['mfu']:.3f}" if r["mfu"] is not None else "-"
        ratio = f" ({r['tokens_per_s'] / base:.2f}x TRL)" if base else ""
        print(f"{r['trainer']:28} {r['attention']:18} {iso:>8} {r['tokens_per_s']:9.0f} "
              f"{r['supervised_tokens_per_s']:9.0f} {mfu:>6} {r['peak_mem_gib']:5.1f} "
              f"{r['loss'][0]:8.3f} -> {r['loss'][-1]:.3f}{ratio}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--data", type=Path, default=Path("bench_gpu"))
    w = sub.add_parser("wheels")
    w.add_argument("--dest", type=Path, default=Path(".whl"))
    r = sub.add_parser("run")
    r.add_argument("--data", type=Path, default=Path("bench_gpu"))
    r.add_argument("--out", type=Path, default=Path("/tmp/train_gpu"))
    r.add_argument("--steps", type=int, default=30)
    r.add_argument("--grad-accum", type=int, default=4)
    r.add_argument("--lr", type=float, default=1e-4)
    r.add_argument("--warmup-steps", type=int, default=5, help="steps left out of the throughput median")
    r.add_argument("--ours-attention", default="sdpa,flex_attention")
    r.add_argument("--trl-attention", default="sdpa")
    r.add_argument("--compile", action="store_true")
    r.add_argument("--checkpointing", action="store_true")
    r.add_argument("--skip-trl", action="store_true")
    r.add_argument("--smoke", action="store_true", help="tiny model on CPU: checks the script, measures nothing")
    a = ap.parse_args()
    {"prepare": cmd_prepare, "wheels": cmd_wheels, "run": cmd_run}[a.cmd](a)


if __name__ == "__main__":
    main()
