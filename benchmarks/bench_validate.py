#!/usr/bin/env python3
"""Validation cost against the floor: `sftdata validate` and `floor.py` as whole processes, side by side.

Builds `make_corpus.py N` (default 20,000 real conversations), then alternates the two commands
(`--repeats` times each after one warm-up of each, so that both see warm file caches and the same
machine load) and prints one JSON line: median wall seconds of each, validate's rows/s, the ratio
validate / floor, and the same ratio for validate's own work (its `--json` `seconds`: read, validate and
count without interpreter start-up and imports, i.e. what validation adds inside a `prepare` process).
The design target is "well under 10 %" (prepare must stay within 1.25x of the floor).

usage: benchmarks/bench_validate.py [--rows N] [--repeats R] [--tokenizer DIR]
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
TOKENIZERS = ROOT.parent / "shared" / "fixtures" / "tokenizers"


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return seconds, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokenizer", default=str(TOKENIZERS / "qwen2.5-instruct"))
    args = parser.parse_args()
    if not BENCH.is_dir():
        sys.exit(f"{BENCH} is absent: the benchmark needs ../shared/bench beside the checkout")
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        subprocess.run([sys.executable, str(BENCH / "make_corpus.py"), str(args.rows), str(corpus)], check=True,
                       capture_output=True)
        validate = [sys.executable, "-m", "sftdata", "validate", str(corpus), "--json"]
        floor = [sys.executable, str(BENCH / "floor.py"), str(corpus), args.tokenizer]
        timed(validate), timed(floor)  # warm-up: file cache, bytecode
        v_times, v_inner, f_times = [], [], []
        report: dict = {}
        for _ in range(args.repeats):
            seconds, out = timed(validate)
            v_times.append(seconds)
            report = json.loads(out)
            v_inner.append(report["seconds"])  # read + validate + count, without interpreter start and imports
            f_times.append(timed(floor)[0])
    v, f, vi = statistics.median(v_times), statistics.median(f_times), statistics.median(v_inner)
    print(json.dumps({
        "rows": args.rows, "accepted": report.get("accepted"), "repeats": args.repeats,
        "validate_s": round(v, 3), "floor_s": round(f, 3), "validate_rows_per_s": round(args.rows / v),
        "validate_over_floor": round(v / f, 4), "validate_work_s": round(vi, 3),
        "validate_work_over_floor": round(vi / f, 4), "validate_runs_s": [round(x, 3) for x in v_times],
        "floor_runs_s": [round(x, 3) for x in f_times], "tokenizer": Path(args.tokenizer).name,
    }))


if __name__ == "__main__":
    main()
