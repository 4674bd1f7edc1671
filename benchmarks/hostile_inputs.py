#!/usr/bin/env python3
"""Run `sftdata prepare` / `validate` on hostile templates and rows, each under a hard memory cap, and report.

usage: hostile_inputs.py [--tokenizer DIR] [--cap-gib 3] [--timeout 60] [--root CHECKOUT] [--only NAME]

Each case is a whole `python -m sftdata` process with `RLIMIT_AS` set to `--cap-gib` (so a case that
would grow without bound ends with MemoryError at the cap instead of waking the kernel's OOM killer on
a shared machine) and killed after `--timeout` seconds. Reported per case: exit code, wall and CPU
time, peak RSS of the process (rusage of the waited-for child; CPU time is the figure to compare on a
busy machine) and the last line of its output. `--root` runs another checkout
(e.g. a `git worktree` of the commit before the bounds) with this interpreter, to measure "before".
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

BOMBS = {  # name -> template code run before a plain ChatML template (so it runs in the probes)
    "none (baseline)": "",
    "string_mul": "{% set s = 'a' * 1000000000 %}",
    "string_doubling_loop": "{% set ns = namespace(s='a') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
                            "{% endfor %}",
    "recursive_macro_doubling": "{% macro f(s, n) %}{% if n > 0 %}{{ f(s ~ s, n - 1) }}{% else %}{{ s|length }}"
                                "{% endif %}{% endmacro %}{% set x = f('a', 40) %}",
    "list_mul": "{% set l = [0] * 1000000000 %}",
    "list_doubling_loop": "{% set ns = namespace(l=[0]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}"
                          "{% endfor %}",
    "nested_range": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "huge_join": "{% set s = range(100000)|join('x' * 100000) %}",
    "shared_list_repr": "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = [ns.l, ns.l] %}"
                        "{% endfor %}{% set s = ns.l|string %}",
    "padding": "{% set s = 'a'.center(1000000000) %}",
    "percent_width": "{% set s = '%1000000000d' % 1 %}",
    "int_power": "{% set n = 10 ** 100000000 %}",
    "deep_recursion": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{% set x = f(0) %}",
    "sandbox_escape": "{{ cycler.__init__.__globals__.os.system('touch /tmp/sftdata-pwned') }}",
}


def write_gzip_bomb(path: Path, line_bytes: int) -> None:
    """A .jsonl.gz: a good row, one line holding a `line_bytes` JSON string, a good row (streamed, tiny)."""
    good = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})
    with gzip.open(path, "wb", compresslevel=6) as f:
        f.write(good.encode() + b"\n")
        f.write(b'{"messages": [{"role": "user", "content": "')
        block = b"a" * (1 << 20)
        for _ in range(line_bytes >> 20):
            f.write(block)
        f.write(b'"}, {"role": "assistant", "content": "x"}]}\n')
        f.write(good.encode() + b"\n")


def run_case(cmd: list[str], env: dict[str, str], cap: int, timeout: float) -> dict:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=limit)
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        timed_out = True
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = usage.ru_maxrss  # KiB, the largest child so far
    lines = [x for x in out.decode("utf-8", "replace").splitlines() if x.strip()]
    return {"rc": proc.returncode, "wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "timed_out": timed_out, "peak_rss_kib_so_far": peak,
            "last": lines[-1][:200] if lines else ""}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", default=str(ROOT.parent / "shared/fixtures/tokenizers/qwen2.5-instruct"))
    ap.add_argument("--cap-gib", type=float, default=3.0)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--root", default=str(ROOT), help="the checkout to run (default: this one)")
    ap.add_argument("--gzip-line-mib", type=int, default=1536)
    ap.add_argument("--only", action="append")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": args.root, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cap = int(args.cap_gib * 2**30)
    tmp = Path(tempfile.mkdtemp(prefix="hostile-"))
    row = tmp / "one.jsonl"
    row.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                            {"role": "assistant", "content": "hello"}]}) + "\n")
    cases = dict(BOMBS)
    cases["gzip_line"] = None
    for name, bomb in cases.items():
        if args.only and name not in args.only:
            continue
        if bomb is None:
            data = tmp / "bomb.jsonl.gz"
            write_gzip_bomb(data, args.gzip_line_mib << 20)
            cmd = [sys.executable, "-m", "sftdata", "validate", str(data)]
        else:
            slug = name.split()[0]
            (tmp / f"{slug}.jinja").write_text(bomb + CHAT)
            cmd = [sys.executable, "-m", "sftdata", "prepare", str(row), "-t", args.tokenizer, "--workers", "1",
                   "--chat-template", str(tmp / f"{slug}.jinja"), "-o", str(tmp / f"out-{slug}")]
        # a fresh interpreter per case, so that RUSAGE_CHILDREN's maximum is this case's own
        runner = (f"import json,sys;sys.path.insert(0,{str(Path(__file__).parent)!r});import hostile_inputs as h;"
                  f"print(json.dumps(h.run_case(json.loads(sys.argv[1]), json.loads(sys.argv[2]), {cap}, "
                  f"{args.timeout})))")
        res = json.loads(subprocess.run([sys.executable, "-c", runner, json.dumps(cmd), json.dumps(env)],
                                        capture_output=True, text=True, check=True).stdout)
        res["peak_rss_mib"] = round(res.pop("peak_rss_kib_so_far") / 1024)
        print(json.dumps({"case": name, **res}), flush=True)


if __name__ == "__main__":
    main()
