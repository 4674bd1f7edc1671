#!/usr/bin/env python3
"""`prepare --engine local` vs `--engine ray` on one machine, as whole processes, in one run.

usage: bench_ray.py [--rows 200000] [--runs 1] [--tokenizer DIR] [--max-length 2048] [--plan-sizes 100000,1000000]

Builds the corpus with `../shared/bench/make_corpus.py`, then alternates whole-process runs of
`prepare` with the local engine (`--workers 1` and `--workers 2`) and with the Ray engine (the child
starts a local Ray with every CPU of the machine, dashboard off: Ray's start-up is part of what a
user pays on one machine). Checks that all outputs are byte-identical, prints each run's wall time,
the medians, the ratios to local `--workers 2`, the Ray phase timings (plan, encode on Ray Data,
collect metadata on the driver, write) and the time `plan_packs` takes on N random lengths: the
central step of the Ray engine.
"""

from __future__ import annotations

import argparse
import hashlib
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


def child(engine: str, workers: int, corpus: str, out: str, tokenizer: str, max_length: int) -> None:
    """The measured process: one `prepare` run; prints its timings as one JSON line."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    from sftdata.config import PipelineConfig
    from sftdata.prepare import prepare

    if engine == "ray":
        import ray

        ray.init(include_dashboard=False, log_to_driver=False)
    t1 = time.perf_counter()
    config = PipelineConfig(tokenizer=tokenizer, max_length=max_length, engine=engine, workers=workers)
    result = prepare([corpus], out, config)
    t2 = time.perf_counter()
    print(json.dumps({"startup_s": round(t1 - t0, 3), "prepare_s": round(t2 - t1, 3), "timings": result.timings,
                      "docs": result.manifest.counts.docs_written, "tokens": result.manifest.packing.tokens}))


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def plan_seconds(n: int, capacity: int) -> float:
    """Wall time of `plan_packs` on `n` random lengths (the driver's central step)."""
    import numpy as np

    from sftdata.pack import plan_packs

    lengths = np.random.default_rng(0).integers(16, capacity, size=n).astype(np.int32)
    t = time.perf_counter()
    plan_packs(lengths, capacity)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--tokenizer", default=str(DEFAULT_TOKENIZER))
    ap.add_argument("--max-length", type=int, default=2048)
    ap.add_argument("--plan-sizes", default="100000,1000000")
    ap.add_argument("--child", nargs=3, metavar=("ENGINE", "WORKERS", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--corpus", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.corpus, args.child[2], args.tokenizer, args.max_length)
        return
    for n in [int(x) for x in args.plan_sizes.split(",") if x]:
        seconds = plan_seconds(n, args.max_length)
        print(f"plan_packs on {n:,} random lengths (capacity {args.max_length}): {seconds:.3f} s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        subprocess.run([sys.executable, str(BENCH / "make_corpus.py"), str(args.rows), str(corpus)], check=True,
                       capture_output=True)
        print(f"corpus: {args.rows:,} rows, {corpus.stat().st_size / 1e6:.0f} MB", flush=True)
        variants = [("local", 1), ("local", 2), ("ray", 1)]
        times: dict[str, list[float]] = {}
        digests: dict[str, str] = {}
        for run in range(args.runs):
            for engine, workers in variants:
                name = f"{engine} --workers {workers}" if engine == "local" else "ray (local Ray, all CPUs)"
                out = Path(tmp) / f"out-{engine}-{workers}-{run}"
                cmd = [sys.executable, __file__, "--child", engine, str(workers), str(out), "--corpus", str(corpus),
                       "--tokenizer", args.tokenizer, "--max-length", str(args.max_length)]
                t = time.perf_counter()
                done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
                wall = time.perf_counter() - t
                if done.returncode not in (0, 1):
                    sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
                report = json.loads(done.stdout.strip().splitlines()[-1])
                times.setdefault(name, []).append(wall)
                digests[f"{name} #{run}"] = digest(out)
                print(f"run {run} {name}: {wall:.1f} s  {json.dumps(report)}", flush=True)
        reference = statistics.median(times["local --workers 2"])
        print("\nmedian wall time (whole process) and ratio to local --workers 2:")
        for name, values in times.items():
            med = statistics.median(values)
            print(f"  {name:28s} {med:8.1f} s   {med / reference:5.2f}x   ({args.rows / med:,.0f} rows/s)")
        same = len(set(digests.values())) == 1
        print(f"outputs byte-identical across engines and runs: {same}")
        if not same:
            sys.exit(1)


if __name__ == "__main__":
    main()
