#!/usr/bin/env python3
"""A real fine-tune on CPU: SmolLM2-135M-Instruct on alpaca_en_demo, prepared by sftdata, trained by sftdata.

1. `python ../shared/models/smollm2.py` materialises the pretrained model as a Hugging Face folder.
2. `sftdata.prepare` packs alpaca_en_demo with the model's own tokenizer at --max-length (default
   1,024): the first records for training, the last --holdout records as a held-out set.
3. `sftdata.train` fine-tunes for --steps optimizer steps (fp32 on CPU), evaluating the held-out
   loss before the first step and after the last.
4. The saved OUT/final folder is loaded back with `AutoModelForCausalLM` and generates a reply.

Prints one JSON line: held-out loss before/after, train losses, seconds per step, tokens/s, and
the generated text. About 9 s per 1,024-token step on 2 idle cores (more when the CPUs are shared).

usage: python benchmarks/train_smollm2.py [--steps 8] [--lr 3e-5] [--holdout 48] [--out /tmp/smollm2-ft]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--holdout", type=int, default=48, help="last N alpaca records held out for eval")
    ap.add_argument("--out", type=Path, default=Path("/tmp/sftdata-smollm2-ft"))
    a = ap.parse_args()

    model_dir = subprocess.run([sys.executable, str(SHARED / "models" / "smollm2.py")], check=True,
                               capture_output=True, text=True).stdout.strip().splitlines()[-1]
    from sftdata.config import resolve_config
    from sftdata.prepare import prepare
    from sftdata.train import TrainConfig, train

    shutil.rmtree(a.out, ignore_errors=True)
    a.out.mkdir(parents=True)
    records = json.loads((SHARED / "fixtures/datasets/llama_factory/alpaca_en_demo.json").read_text())
    (a.out / "train.json").write_text(json.dumps(records[:-a.holdout]))
    (a.out / "heldout.json").write_text(json.dumps(records[-a.holdout:]))
    t = time.perf_counter()
    pcfg = resolve_config(None, {"tokenizer": model_dir, "max_length": a.max_length})
    prepare([str(a.out / "train.json")], a.out / "shards", pcfg)
    prepare([str(a.out / "heldout.json")], a.out / "eval", pcfg)
    prepare_s = time.perf_counter() - t

    cfg = TrainConfig(shards=a.out / "shards", eval_shards=a.out / "eval", model=model_dir, out=a.out / "run",
                      max_steps=a.steps, lr=a.lr, warmup_steps=1, micro_batch_size=1, grad_accum=1, log_every=1,
                      precision="fp32", device="cpu", progress=False)
    result = train(cfg)
    metrics = [json.loads(x) for x in (a.out / "run" / "metrics.jsonl").read_text().splitlines()]
    train_lines = [m for m in metrics if m["split"] == "train"]

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(result.final_dir)
    model = AutoModelForCausalLM.from_pretrained(result.final_dir, dtype=torch.float32)
    prompt = tok.apply_chat_template([{"role": "user", "content": "Give three tips for staying healthy."}],
                                     add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=48, do_sample=False)
    reply = tok.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)

    evals = result.eval_losses
    summary = {
        "model": "SmolLM2-135M-Instruct", "steps": result.steps, "lr": a.lr, "max_length": a.max_length,
        "train_rows": json.loads((a.out / "shards/manifest.json").read_text())["packing"]["rows"],
        "heldout_records": a.holdout, "prepare_s": round(prepare_s, 1),
        "heldout_loss_before": round(evals[0], 4), "heldout_loss_after": round(evals[result.steps], 4),
        "heldout_loss_change": round(evals[result.steps] - evals[0], 4),
        "train_losses": [m["loss"] for m in train_lines],
        "train_s": round(result.seconds, 1),
        "tokens_per_s_median": sorted(m["tokens_per_s"] for m in train_lines)[len(train_lines) // 2],
        "attention": result.attention, "generated": reply,
    }
    tokens = [m["tokens"] for m in train_lines]
    per_step = [b - a_ for a_, b in zip([0, *tokens[:-1]], tokens, strict=True)]
    step_s = sorted(n / m["tokens_per_s"] for n, m in zip(per_step, train_lines, strict=True))
    summary["s_per_step_median"] = round(step_s[len(step_s) // 2], 2)
    print(json.dumps(summary, ensure_ascii=False))


if __name__ == "__main__":
    main()
