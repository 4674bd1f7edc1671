#!/usr/bin/env python3
"""Render + tokenize + mask a corpus as one whole process, timed beside the floor and TRL in one run.

usage: bench_encode.py [--rows 20000] [--runs 3] [--tokenizer DIR] [--no-trl]

Builds the corpus with `../shared/bench/make_corpus.py`, then alternates whole-process runs of
`../shared/bench/floor.py` (import, load, read, render, encode: the work no pipeline can skip), this
file's `--child` mode (import, load, read, validate into `Conversation`s, render + prefix renders +
encode + prove masks with `ChatEncoder.encode_batch`) and `../shared/bench/trl_baseline.py`, and prints
the median wall and CPU time of each and the ratios to the floor. Runs alternate so that load from other
processes on the machine hits all three alike.

The child loads the tokenizer as `prepare` does (`sftdata.chat.tokenizer`: no transformers for a folder
with `tokenizer.json`) and reports whether transformers was imported (`transformers_imported`, expected
false); the floor imports it (~2.5 s of its ~8 s on 2 cores).
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
BENCH = ROOT.parent / "shared" / "bench"
DEFAULT_TOKENIZER = ROOT.parent / "shared" / "fixtures" / "tokenizers" / "qwen2.5-instruct"


def child(corpus: str, tokenizer: str, batch: int) -> None:
    """The measured process: the engine over the whole corpus, in batches."""
    t0 = time.perf_counter()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sftdata.chat.engine import ChatEncoder
    from sftdata.chat.options import MaskOptions
    from sftdata.records import Conversation

    enc = ChatEncoder.load(tokenizer, MaskOptions())
    t1 = time.perf_counter()
    with open(corpus, encoding="utf-8") as f:
        convs = [Conversation.model_validate(json.loads(line)) for line in f]
    t2 = time.perf_counter()
    accepted = tokens = supervised = 0
    for i in range(0, len(convs), batch):
        for r in enc.encode_batch(convs[i:i + batch]):
            if not isinstance(r, list):
                accepted += 1
                for doc in getattr(r, "documents", (r,)):  # an `Encoded` record holds several documents
                    tokens += len(doc)
                    supervised += doc.n_supervised
    t3 = time.perf_counter()
    print(json.dumps({"rows": len(convs), "accepted": accepted, "tokens": tokens, "supervised": supervised,
                      "transformers_imported": "transformers" in sys.modules,
                      "import_load_s": round(t1 - t0, 3), "read_validate_s": round(t2 - t1, 3),
                      "encode_mask_s": round(t3 - t2, 3), "total_s": round(t3 - t0, 3)}))


def timed(cmd: list[str]) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds (user + system of the child, all threads), peak RSS (MB) and its last line.

    CPU seconds are reported beside wall time because the benchmark machine is often shared: wall time
    then measures the neighbours as much as the work, CPU time much less so."""
    t = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode().strip(), err.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed:\n{stderr[-3000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss / 1024, stdout.splitlines()[-1] if stdout else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tokenizer", default=str(DEFAULT_TOKENIZER))
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--no-trl", action="store_true")
    ap.add_argument("--child", nargs=2, metavar=("CORPUS", "TOKENIZER"))
    args = ap.parse_args()
    if args.child:
        child(*args.child, args.batch)
        return
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        corpus = str(Path(tmp) / "corpus.jsonl")
        subprocess.run([py, str(BENCH / "make_corpus.py"), str(args.rows), corpus], check=True, capture_output=True)
        cmds = {"floor": [py, str(BENCH / "floor.py"), corpus, args.tokenizer],
                "sftdata": [py, __file__, "--batch", str(args.batch), "--child", corpus, args.tokenizer]}
        if not args.no_trl:
            cmds["trl"] = [py, str(BENCH / "trl_baseline.py"), corpus, args.tokenizer]
        for cmd in cmds.values():  # warm the page cache and imports once, untimed
            if cmd is not cmds.get("trl"):
                timed(cmd)
        times: dict[str, list[float]] = {k: [] for k in cmds}
        cpus: dict[str, list[float]] = {k: [] for k in cmds}
        rss: dict[str, list[float]] = {k: [] for k in cmds}
        for run in range(args.runs):
            for name, cmd in cmds.items():
                dt, cpu, mb, line = timed(cmd)
                times[name].append(dt)
                cpus[name].append(cpu)
                rss[name].append(mb)
                print(f"run {run + 1} {name:8s} {dt:7.2f} s wall {cpu:7.2f} s cpu {mb:6.0f} MB  {line}", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpus.items()}
    med_rss = {k: statistics.median(v) for k, v in rss.items()}
    print(json.dumps({"rows": args.rows, "runs": args.runs, "median_wall_s": {k: round(v, 2) for k, v in med.items()},
                      "wall_ratio_to_floor": {k: round(v / med["floor"], 2) for k, v in med.items()},
                      "median_cpu_s": {k: round(v, 2) for k, v in med_cpu.items()},
                      "cpu_ratio_to_floor": {k: round(v / med_cpu["floor"], 2) for k, v in med_cpu.items()},
                      "peak_rss_mb": {k: round(v) for k, v in med_rss.items()},
                      "rss_ratio_to_floor": {k: round(v / med_rss["floor"], 2) for k, v in med_rss.items()}}))


if __name__ == "__main__":
    main()
