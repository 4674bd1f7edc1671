#!/usr/bin/env python3
"""What the template bounds cost: the engine's renders with the bounded sandbox vs Jinja's plain sandbox.

usage: bench_template_bounds.py [--rows 20000] [--corpus FILE.jsonl] [--tokenizer DIR] [--runs 5]

Renders every bench-corpus conversation as the engine does (the full conversation, then one prefix with
the generation prompt per assistant turn) with `sftdata.chat.jinja_env.compile_template` (bounded) and
with a plain `ImmutableSandboxedEnvironment` carrying the same globals and the output count the render
had before the bounds (unbounded otherwise), alternating, `--runs`
times each. Prints the medians, their ratio, the extra seconds, and checks the texts are identical. The
bounds' cost on `prepare` is `extra seconds / prepare wall time` (take the wall time from
`benchmarks/bench_prepare.py` on the same corpus and machine); the goal is <= 2 %.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))


def workload(conversations: list[list[dict]]) -> list[tuple[list[dict], bool]]:
    jobs = []
    for messages in conversations:
        jobs.append((messages, False))
        jobs.extend((messages[:k], True) for k, m in enumerate(messages) if m["role"] == "assistant")
    return jobs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--corpus", type=Path, default=None, help="an existing messages JSONL (else made with make_corpus)")
    ap.add_argument("--tokenizer", type=Path, default=SHARED / "fixtures/tokenizers/qwen2.5-instruct")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from sftdata.chat.jinja_env import _tojson, compile_template, render

    corpus = args.corpus
    if corpus is None:
        corpus = Path(tempfile.mkdtemp()) / "corpus.jsonl"
        subprocess.run([sys.executable, str(SHARED / "bench/make_corpus.py"), str(args.rows), str(corpus)], check=True,
                       capture_output=True)
    conversations = [json.loads(line)["messages"] for line in corpus.read_text().splitlines() if line.strip()]
    config = json.loads((args.tokenizer / "tokenizer_config.json").read_text())
    source = config.get("chat_template") or (args.tokenizer / "chat_template.jinja").read_text()
    special = {k: v if isinstance(v, str) else v.get("content") for k, v in config.items()
               if k.endswith("_token") and v is not None}
    bounded = compile_template(source, "26 Jul 2024")
    plain_env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    plain_env.globals.update({k: v for k, v in bounded.globals.items() if k not in ("range", "lipsum", "namespace")})
    plain_env.filters["tojson"] = _tojson
    plain = plain_env.from_string(source)
    jobs = workload(conversations)
    base_b = {**bounded.globals, **special, "date_string": "26 Jul 2024", "tools": None, "documents": None}
    base_p = {**plain.globals, **special, "date_string": "26 Jul 2024", "tools": None, "documents": None}

    def run_bounded() -> list[str]:
        return [render(bounded, {**base_b, "messages": m, "add_generation_prompt": g}) for m, g in jobs]

    def run_plain() -> list[str]:  # the render before the bounds: output counted, nothing else
        out = []
        for m, g in jobs:
            ctx = plain.new_context({**base_p, "messages": m, "add_generation_prompt": g}, shared=True)
            chunks, total = [], 0
            for chunk in plain.root_render_func(ctx):
                total += len(chunk)
                if total > 4_000_000:
                    raise RuntimeError("too long")
                chunks.append(chunk)
            out.append("".join(chunks))
        return out

    times: dict[str, list[float]] = {"bounded": [], "plain": []}
    texts = {}
    for _ in range(args.runs):
        for name, fn in (("plain", run_plain), ("bounded", run_bounded)):
            t0 = time.process_time()
            texts[name] = fn()
            times[name].append(time.process_time() - t0)
    assert texts["bounded"] == texts["plain"], "the bounded sandbox rendered different text"
    med = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({"conversations": len(conversations), "renders": len(jobs), "runs": args.runs,
                      "cpu_s_median": med, "ratio_bounded_to_plain": round(med["bounded"] / med["plain"], 4),
                      "extra_cpu_s": round(med["bounded"] - med["plain"], 4),
                      "pid": os.getpid()}, indent=1))


if __name__ == "__main__":
    main()
