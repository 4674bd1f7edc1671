#!/usr/bin/env python3
"""Peak memory of `sftdata prepare` as the input grows: 20,000 rows vs 200,000 rows (target <= 1.2x).

usage: bench_memory.py [--small 20000] [--large 200000] [--tokenizer DIR] [--workers 1]

Each run is a whole `python -m sftdata prepare` process; its peak resident set size is read from the
kernel (`os.wait4` rusage `ru_maxrss`, the high-water mark of that one process). Memory stays flat
because inputs are streamed, at most `2 * workers` batches are in flight, rejects go straight to
disk, and packing is planned per window of `pack_window` documents (32,768 by default), so the
largest live object is one window's tokens (~8 bytes each) however long the input is.
The 200k run takes several minutes on two shared cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT.parent / "shared" / "bench"
DEFAULT_TOKENIZER = ROOT.parent / "shared" / "fixtures" / "tokenizers" / "qwen2.5-instruct"


def peak_rss(cmd: list[str]) -> tuple[float, float, dict]:
    """(peak RSS in MiB, wall seconds, the --json line) of one whole process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    stdout = proc.stdout.read().decode() if proc.stdout else ""
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit(f"prepare failed ({code}):\n{stderr[-3000:]}")
    return usage.ru_maxrss / 1024, seconds, json.loads(stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=20_000)
    ap.add_argument("--large", type=int, default=200_000)
    ap.add_argument("--tokenizer", default=str(DEFAULT_TOKENIZER))
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    py = sys.executable
    result: dict = {"workers": args.workers}
    with tempfile.TemporaryDirectory() as tmp:
        for label, rows in (("small", args.small), ("large", args.large)):
            corpus = f"{tmp}/{rows}.jsonl"
            subprocess.run([py, str(BENCH / "make_corpus.py"), str(rows), corpus], check=True, capture_output=True)
            cmd = [py, "-m", "sftdata", "prepare", corpus, "--tokenizer", args.tokenizer, "--out", f"{tmp}/{label}",
                   "--max-length", "2048", "--workers", str(args.workers), "--json"]
            rss, seconds, line = peak_rss(cmd)
            result[label] = {"rows": rows, "peak_rss_mib": round(rss, 1), "seconds": round(seconds, 1),
                             "docs_written": line["counts"]["docs_written"], "packing": line["packing"]["efficiency"]}
            print(f"{rows:>8,} rows: peak RSS {rss:,.0f} MiB in {seconds:.0f} s", file=sys.stderr)
            os.remove(corpus)
    result["ratio"] = round(result["large"]["peak_rss_mib"] / result["small"]["peak_rss_mib"], 3)
    print(f"peak RSS ratio {args.large:,} / {args.small:,} rows: {result['ratio']:.3f} (target <= 1.2)",
          file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
