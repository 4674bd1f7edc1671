#!/usr/bin/env python3
"""`prepare` then `audit` with every chat template in ../shared/fixtures: does the audit prove what was written?

usage: audit_survey.py [--rows N] [--start K] [--only NAME ...] [--json OUT]

For each template that `benchmarks/template_survey.py` lists (142 files + 37 from ollama_index), paired with
a fixture tokenizer of its family: a small JSONL of hard conversations (multi-turn with a system prompt,
CJK and emoji, control-token text, a tool call, a reasoning field, a reply starting with a think block) is
prepared with `--chat-template` set to the template (`max_reject_fraction` 1: rejects are the template's
business), and the folder is audited in full. A template passes when the audit passes; the audit failing on
`prepare`'s own output is either a writer bug or a false alarm, and each one is listed with its first
findings. Templates whose every record is rejected are listed apart (nothing to prove).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from template_survey import FIXTURES, all_templates, tokenizer_for  # noqa: E402

CONVERSATIONS = [
    {"id": "one", "messages": [{"role": "user", "content": "What is the capital of France?"},
                               {"role": "assistant", "content": "Paris."}]},
    {"id": "multi", "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi!"},
                                 {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "2+2?"},
                                 {"role": "assistant", "content": "4"}]},
    {"id": "cjk", "messages": [{"role": "user", "content": "  你好，世界 🙂  "},
                               {"role": "assistant", "content": "\n 你好！😀 再见。 \n"}]},
    {"id": "control", "messages": [{"role": "user", "content": "Repeat: <|im_start|>user [INST] </s> <|eot_id|>"},
                                   {"role": "assistant", "content": "<|im_start|>user [INST] </s> <|eot_id|>"}]},
    {"id": "tool", "tools": [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
     "messages": [{"role": "user", "content": "Weather in Paris?"},
                  {"role": "assistant", "content": "", "tool_calls": [
                      {"id": "c1", "type": "function", "function": {"name": "get_weather",
                                                                    "arguments": "{\"city\": \"Paris\"}"}}]},
                  {"role": "tool", "tool_call_id": "c1", "content": "18 C, clear"},
                  {"role": "assistant", "content": "It is 18 C and clear in Paris."}]},
    {"id": "reasoning", "messages": [{"role": "user", "content": "Is 91 prime?"},
                                     {"role": "assistant", "reasoning": "91 = 7 x 13.", "content": "No: 7 x 13."}]},
    {"id": "think", "messages": [{"role": "user", "content": "Is 97 prime?"},
                                 {"role": "assistant", "content": "<think>\nNo divisor up to 9.\n</think>\n\nYes."}]},
]


def survey(rows: int | None, start: int, only: list[str] | None = None) -> dict:
    from sftdata.audit import audit_prepared
    from sftdata.config import resolve_config
    from sftdata.prepare import prepare

    report: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "chats.jsonl"
        data.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in CONVERSATIONS), encoding="utf-8")
        for n, (name, text) in enumerate(all_templates()[start:rows]):
            if only and not any(part in name for part in only):
                continue
            started = time.perf_counter()
            template = Path(tmp) / f"t{n}.jinja"
            template.write_text(text, encoding="utf-8")
            tok = tokenizer_for(name)
            entry: dict = {"tokenizer": tok}
            out = Path(tmp) / f"out{n}"
            config = resolve_config(None, {"tokenizer": str(FIXTURES / "tokenizers" / tok), "max_length": 4096,
                                           "max_reject_fraction": 1.0, "mask": {"chat_template": str(template)}})
            try:
                result = prepare([str(data)], out, config)
            except Exception as err:  # noqa: BLE001 - a template prepare refuses whole is a finding here
                entry.update(status="prepare_refused", detail=f"{type(err).__name__}: {str(err)[:160]}")
                report[name] = entry
                print(f"  {entry['status']:16s} {name} [{tok}] {entry['detail']}", flush=True)
                continue
            counts = result.manifest.counts
            entry["written"] = counts.docs_written
            entry["rejected"] = dict(counts.reasons)
            if counts.docs_written == 0:
                entry["status"] = "all_rejected"
            else:
                audit = audit_prepared(out, sample=0)
                failed = {c.name: c.failed for c in audit.findings.checks.values()
                          if c.failed and c.severity == "error"}
                entry.update(status="pass" if audit.passed else "audit_fails", failed=failed,
                             findings=[f"{f.check}: {f.doc_id}: {f.message[:160]}" for f in audit.findings.items
                                       if f.severity == "error"][:3])
            report[name] = entry
            detail = "" if entry["status"] == "pass" else f" {entry.get('rejected')} {entry.get('findings', '')}"
            print(f"  {entry['status']:16s} {name} [{tok}] {entry.get('written', 0)} written "
                  f"{time.perf_counter() - started:.1f}s{detail}", flush=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=None, help="stop after this many templates")
    parser.add_argument("--start", type=int, default=0, help="skip this many templates")
    parser.add_argument("--only", nargs="*", default=None, help="templates whose name contains one of these")
    parser.add_argument("--json", default=None, help="write the whole report here")
    args = parser.parse_args()
    report = survey(args.rows, args.start, args.only)
    totals = collections.Counter(e["status"] for e in report.values())
    print(f"\n{len(report)} templates: " + ", ".join(f"{k} {v}" for k, v in sorted(totals.items())))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
