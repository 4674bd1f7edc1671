#!/usr/bin/env python3
"""`sftdata prepare` as a whole process, beside the floor and TRL, in one run; plus planning 1 M lengths.

usage: bench_prepare.py [--rows 20000] [--runs 3] [--trl-runs 1] [--tokenizer DIR] [--max-length 2048] [--no-trl]

Builds the corpus with `../shared/bench/make_corpus.py`, reads it once (warm page cache), then alternates
whole-process runs of `../shared/bench/floor.py` (import, load, read, render, encode: the work no pipeline
can skip), `sftdata prepare` (read, validate, render, tokenize, prove masks, pack, write shards, rejects and
manifest) with `--workers 1` and `--workers 2`, and `../shared/bench/trl_baseline.py` (default and
`--num-proc 2`). Runs alternate so that load from other processes hits all of them alike; the medians and
the ratios to the floor are printed as a table and as one JSON line. TRL's own preparation time (`trl_s`,
around `SFTTrainer(...)`) is reported beside its whole process, with its packing efficiency.
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


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (user + system, with reaped children) and the last stdout line of a process.

    CPU time is the load-robust figure on a shared machine: wall time there mostly measures the others.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if code not in (0, 1):
        raise SystemExit(f"{cmd[1]} failed ({code}):\n{stderr[-3000:]}")
    lines = stdout.strip().splitlines()
    return seconds, usage.ru_utime + usage.ru_stime, lines[-1] if lines else ""


def plan_million(runs: int) -> dict[str, float]:
    """Median wall and CPU seconds of `plan_packs` on 1 M uniform random lengths (capacity 2048)."""
    import numpy as np

    from sftdata.pack import pack_stats, plan_packs

    lengths = np.random.default_rng(0).integers(1, 2049, 1_000_000)
    walls, cpus = [], []
    for _ in range(runs):
        w, c = time.perf_counter(), time.process_time()
        plan = plan_packs(lengths, 2048)
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    stats = pack_stats(lengths, plan, 2048)
    return {"plan_1m_wall_s": round(statistics.median(walls), 3), "plan_1m_cpu_s": round(statistics.median(cpus), 3),
            "plan_1m_efficiency": round(stats.efficiency, 5),
            "plan_1m_lower_bound_efficiency": round(stats.lower_bound_efficiency, 5)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--trl-runs", type=int, default=1)
    ap.add_argument("--tokenizer", default=str(DEFAULT_TOKENIZER))
    ap.add_argument("--max-length", type=int, default=2048)
    ap.add_argument("--no-trl", action="store_true")
    args = ap.parse_args()
    py = sys.executable
    sftdata = [py, "-m", "sftdata", "prepare"]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = str(Path(tmp) / "corpus.jsonl")
        subprocess.run([py, str(BENCH / "make_corpus.py"), str(args.rows), corpus], check=True, capture_output=True)
        Path(corpus).read_bytes()  # warm the page cache
        common = ["--tokenizer", args.tokenizer, "--max-length", str(args.max_length), "--json", "--overwrite"]
        cmds = {
            "floor": [py, str(BENCH / "floor.py"), corpus, args.tokenizer],
            "prepare": [*sftdata, corpus, "--out", f"{tmp}/w1", *common],
            "prepare_workers2": [*sftdata, corpus, "--out", f"{tmp}/w2", *common, "--workers", "2"],
        }
        trl = {
            "trl": [py, str(BENCH / "trl_baseline.py"), corpus, args.tokenizer, "--max-length", str(args.max_length)],
            "trl_num_proc2": [py, str(BENCH / "trl_baseline.py"), corpus, args.tokenizer, "--max-length",
                              str(args.max_length), "--num-proc", "2"],
        }
        times: dict[str, list[float]] = {k: [] for k in [*cmds, *([] if args.no_trl else trl)]}
        cpu: dict[str, list[float]] = {k: [] for k in times}
        last: dict[str, str] = {}
        # the floor and sftdata alternate first (the figures that matter most), TRL's slow runs come last
        schedule = [(run, name, cmd) for run in range(args.runs) for name, cmd in cmds.items()]
        if not args.no_trl:
            schedule += [(run, name, cmd) for run in range(args.trl_runs) for name, cmd in trl.items()]
        for run, name, cmd in schedule:
            seconds, cpu_s, line = timed(cmd)
            times[name].append(seconds)
            cpu[name].append(cpu_s)
            last[name] = line
            print(f"run {run}: {name} {seconds:.2f} s wall {cpu_s:.2f} s cpu {line}", file=sys.stderr, flush=True)
        same = _same_bytes(Path(tmp, "w1"), Path(tmp, "w2"))
    median = {k: statistics.median(v) for k, v in times.items() if v}
    median_cpu = {k: statistics.median(v) for k, v in cpu.items() if v}
    floor = median["floor"]
    prep = json.loads(last["prepare"])
    result = {
        "rows": args.rows, "runs": args.runs, "max_length": args.max_length,
        "median_s": {k: round(v, 2) for k, v in median.items()},
        "ratio_to_floor": {k: round(v / floor, 3) for k, v in median.items()},
        "median_cpu_s": {k: round(v, 2) for k, v in median_cpu.items()},
        "cpu_ratio_to_floor": {k: round(v / median_cpu["floor"], 3) for k, v in median_cpu.items()},
        "prepare_packing": prep["packing"], "prepare_counts": prep["counts"],
        "prepare_phases_s": prep["timings"],
        "workers1_equals_workers2_bytes": same,
        **plan_million(3),
    }
    for name in ("trl", "trl_num_proc2"):
        if name in last:
            t = json.loads(last[name])
            result[f"{name}_inner_s"] = t["trl_s"]
            result[f"{name}_inner_ratio_to_floor"] = round(t["trl_s"] / floor, 3)
            result[f"{name}_pack_efficiency"] = t["trl_pack_efficiency"]
    _table(result)
    print(json.dumps(result))


def _same_bytes(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.iterdir())
    return names == sorted(p.name for p in b.iterdir()) and all((a / n).read_bytes() == (b / n).read_bytes()
                                                               for n in names)


def _table(r: dict) -> None:
    print(f"\n{r['rows']:,} rows, max_length {r['max_length']}, median of {r['runs']} whole-process runs",
          file=sys.stderr)
    print(f"{'process':<20}{'wall s':>10}{'x floor':>10}{'cpu s':>10}{'x floor':>10}", file=sys.stderr)
    for name, s in r["median_s"].items():
        print(f"{name:<20}{s:>10.2f}{r['ratio_to_floor'][name]:>10.3f}{r['median_cpu_s'][name]:>10.2f}"
              f"{r['cpu_ratio_to_floor'][name]:>10.3f}", file=sys.stderr)
    p = r["prepare_packing"]
    print(f"packing: efficiency {p['efficiency']:.4f}, lower bound {p['lower_bound_efficiency']:.4f} "
          f"({p['rows']} rows, bound {p['lower_bound_rows']})", file=sys.stderr)
    if "trl_pack_efficiency" in r:
        print(f"TRL: preparation {r['trl_inner_s']:.2f} s ({r['trl_inner_ratio_to_floor']:.2f}x floor), packing "
              f"efficiency {r['trl_pack_efficiency']:.4f}", file=sys.stderr)
    print(f"plan_packs on 1 M random lengths: {r['plan_1m_wall_s']:.2f} s wall, {r['plan_1m_cpu_s']:.2f} s CPU",
          file=sys.stderr)
    print(f"--workers 1 and --workers 2 byte-identical: {r['workers1_equals_workers2_bytes']}", file=sys.stderr)


if __name__ == "__main__":
    main()
