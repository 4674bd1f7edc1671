#!/usr/bin/env python3
"""Audit time vs prepare time on the shared bench corpus, side by side in one run, as whole processes.

    .venv/bin/python benchmarks/bench_audit.py [--rows 20000] [--tokenizer qwen2.5-instruct] [--repeat 1]

Builds `../shared/bench/make_corpus.py ROWS` once, then times, each as a whole process with warm
caches (one untimed warm-up of each first): the floor (`../shared/bench/floor.py`: read, render,
encode, nothing else), `prepare` (API call in a fresh interpreter, the same work as `sftdata prepare`),
`sftdata audit OUT --json` (full: shards, re-derivation of every document and conservation from the
raw rows) and `sftdata audit OUT --shards-only --json`. Prints one JSON object: seconds (median over
--repeat) and the ratios audit / floor and audit / prepare. Targets: full audit <= 1.2x the floor
process (issue "an audit that proves or fails"), <= 2x prepare.
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
PY = sys.executable

PREPARE = """
import sys
from sftdata.config import resolve_config
from sftdata.prepare import prepare
cfg = resolve_config(None, {"tokenizer": sys.argv[2], "max_length": 2048})
prepare([sys.argv[1]], sys.argv[3], cfg, overwrite=True)
"""


def timed(cmd: list[str]) -> tuple[float, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - t
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--tokenizer", default="qwen2.5-instruct")
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_audit_"))
    corpus = work / f"corpus_{a.rows}.jsonl"
    subprocess.run([PY, str(SHARED / "bench" / "make_corpus.py"), str(a.rows), str(corpus)], check=True,
                   capture_output=True)
    tok = str(SHARED / "fixtures" / "tokenizers" / a.tokenizer)
    out = work / "out"
    jobs = {
        "floor_s": [PY, str(SHARED / "bench" / "floor.py"), str(corpus), tok],
        "prepare_s": [PY, "-c", PREPARE, str(corpus), tok, str(out)],
        "audit_s": [PY, "-m", "sftdata", "audit", str(out), "--json", "--sample", "8"],
        "audit_shards_only_s": [PY, "-m", "sftdata", "audit", str(out), "--json", "--shards-only"],
    }
    times: dict[str, list[float]] = {k: [] for k in jobs}
    audit_json: dict = {}
    for i in range(a.repeat + 1):  # the first round warms the caches and is not counted
        for name, cmd in jobs.items():
            seconds, stdout = timed(cmd)
            if i:
                times[name].append(seconds)
            if name == "audit_s" and stdout.strip():
                audit_json = json.loads(stdout)
    med = {k: round(statistics.median(v), 2) for k, v in times.items()}
    print(json.dumps({
        "rows": a.rows, "tokenizer": a.tokenizer, **med,
        "audit_over_floor": round(med["audit_s"] / med["floor_s"], 3),
        "audit_over_prepare": round(med["audit_s"] / med["prepare_s"], 3),
        "shards_only_over_prepare": round(med["audit_shards_only_s"] / med["prepare_s"], 3),
        "audit_passed": audit_json.get("passed"), "audit_errors": audit_json.get("errors"),
        "conservation_checked": next((c["checked"] for c in audit_json.get("checks", [])
                                      if c["name"] == "conservation"), None),
        "audit_inner_timings": audit_json.get("timings"),
        "documents": audit_json.get("stats", {}).get("totals", {}).get("documents"),
    }))


if __name__ == "__main__":
    main()
