#!/usr/bin/env python3
"""Run the mask engine across every chat template and real dataset in ../shared/fixtures, and report.

usage: template_survey.py [--templates] [--trl] [--datasets] [--limits] [--rows N] [--json OUT]
       (default: the first three)

--templates  every template that renders (142 files + 37 in ollama_index/index.json), each paired with a
             tokenizer of its family (or qwen2.5-instruct), on a fixed set of hard conversations; a template
             passes when every conversation it renders is accepted with ids == apply_chat_template and every
             supervised run holds exactly one reply and its end-of-turn.
--trl        the TRL `*_training.jinja` templates: our mask from the plain template vs Hugging Face's
             `return_assistant_tokens_mask` from the marked one (rule in `sftdata.chat.compare`).
--limits     every template, on the hard conversations plus a tool-call and a long real one: the largest
             string, list, range, call depth, output and render time it reaches, against `TemplateLimits`
             (how close the largest comes to each default).
--datasets   the ten fixture tokenizers x the real datasets: records, accepted, rejected by reason
             (`--check`: also every accepted record's ids vs apply_chat_template and its reply+EOT runs).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"
sys.path.insert(0, str(ROOT))

FAMILIES = [  # first match wins: substring of the template's path/name -> fixture tokenizer
    ("qwen3", "qwen3"), ("nemotron", "qwen3"), ("glm", "qwen3"), ("qwen", "qwen2.5-instruct"),
    ("llama-3", "llama3.1-instruct"), ("llama3", "llama3.1-instruct"),
    ("llama-2", "tinyllama-1.1b-chat"), ("llama2", "tinyllama-1.1b-chat"), ("hermes", "llama3.1-instruct"),
    ("firefunction", "llama3.1-instruct"), ("functionary", "llama3.1-instruct"), ("gemma", "gemma-3"),
    ("mistral-instruct", "mistral-7b-instruct-v0.2"), ("mistral_v1", "mistral-7b-instruct-v0.2"),
    ("mistral", "mistral-7b-instruct-v0.3"), ("pixtral", "mistral-7b-instruct-v0.3"), ("phi", "phi-3-mini-instruct"),
    ("deepseek-r1-distill-qwen", "qwen2.5-instruct"), ("deepseek", "deepseek-v4"), ("zephyr", "tinyllama-1.1b-chat"),
    ("smol", "smollm2-135m-instruct"), ("tinyllama", "tinyllama-1.1b-chat"),
]


def tokenizer_for(name: str) -> str:
    low = name.lower()
    return next((tok for key, tok in FAMILIES if key in low), "qwen2.5-instruct")


def all_templates() -> list[tuple[str, str]]:
    base = FIXTURES / "templates"
    out = [(str(p.relative_to(base)), p.read_text(encoding="utf-8"))
           for p in sorted(base.rglob("*")) if p.suffix in (".jinja", ".jinja2")]
    for i, entry in enumerate(json.loads((base / "ollama_index" / "index.json").read_text())):
        out.append((f"ollama_index/{i}-{entry['name']}", entry["template"]))
    return out


def survey_conversations():
    from sftdata.records import parse_conversation

    rows = [
        [("user", "What is the capital of France?"), ("assistant", "Paris.")],
        [("system", "You are terse."), ("user", "Hi!"), ("assistant", "Hello."), ("user", "2+2?"), ("assistant", "4")],
        [("user", "  你好，世界 🙂  "), ("assistant", "\n 你好！😀 再见。 \n")],
        [("user", "Repeat: <|im_start|>user [INST] </s> <|eot_id|>"),
         ("assistant", "<|im_start|>user [INST] </s> <|eot_id|> <end_of_turn> <|end|>")],
        [("user", "echo"), ("assistant", "echo")],
    ]
    return [parse_conversation({"id": f"s{i}", "messages": [{"role": r, "content": c} for r, c in row]})
            for i, row in enumerate(rows)]


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(FIXTURES / "tokenizers" / name)


def survey_templates(rows: int | None, start: int = 0) -> dict:
    from sftdata.chat.compare import check_example, hf_ids, pinned_clock
    from sftdata.chat.engine import ChatEncoder
    from sftdata.chat.options import MaskOptions
    from sftdata.chat.template import TemplateSource
    from sftdata.errors import TemplateError

    convs = survey_conversations()
    tokenizers: dict[str, object] = {}
    report: dict[str, dict] = {}
    for name, text in all_templates()[start:rows]:
        started = time.perf_counter()
        tok_name = tokenizer_for(name)
        tok = tokenizers.setdefault(tok_name, load_tokenizer(tok_name))
        entry = {"tokenizer": tok_name}
        try:
            enc = ChatEncoder(tok, MaskOptions(), TemplateSource(text, name))
        except TemplateError as err:
            entry.update(status="does_not_render", detail=str(err)[:200])
            report[name] = entry
            continue
        counts = collections.Counter()
        failures = []
        with pinned_clock(MaskOptions().date):
            for conv, result in zip(convs, enc.encode_batch(convs), strict=True):
                if isinstance(result, list):
                    counts[result[0].code.value] += 1
                    if result[0].code.value != "template_error":
                        failures.append(f"{conv.id}: {result[0].message[:160]}")
                    continue
                problem = None
                try:
                    if result.input_ids.tolist() != hf_ids(enc, conv, text):
                        problem = "ids differ from apply_chat_template"
                    else:
                        problem = check_example(enc, conv, result)
                except Exception as err:  # noqa: BLE001 - HF raising on a record our render accepted
                    problem = f"apply_chat_template raised {type(err).__name__}: {err}"
                counts["bad_mask" if problem else "accepted"] += 1
                if problem:
                    failures.append(f"{conv.id}: {problem}")
        rendered = sum(v for k, v in counts.items() if k != "template_error")
        ok = rendered > 0 and counts["accepted"] == rendered
        entry.update(status="pass" if ok else ("no_record_renders" if rendered == 0 else "fail"),
                     counts=dict(counts), failures=failures[:3])
        report[name] = entry
        detail = "" if entry["status"] == "pass" else \
            f" {entry.get('counts', '')} {entry.get('failures') or entry.get('detail', '')}"
        print(f"  {entry['status']:18s} {name} [{tok_name}] {time.perf_counter() - started:.1f}s{detail}", flush=True)
    return report


def limit_conversations():
    """The survey conversations, one with tools and a tool call, and a long multi-turn one (100 turns)."""
    from sftdata.records import parse_conversation

    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "name"},
                                                               "days": {"type": "integer"}}, "required": ["city"]}}}]
    call = {"role": "assistant", "content": "", "tool_calls": [{"id": "abcdefghi", "type": "function", "function": {
        "name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}]}
    tool = [{"role": "user", "content": "Weather in Paris?"}, call, {"role": "tool", "content": '{"temp": 21}'},
            {"role": "assistant", "content": "21 degrees."}]
    long = [m for i in range(50) for m in ({"role": "user", "content": f"question {i} " * 40},
                                           {"role": "assistant", "content": f"answer {i} " * 80})]
    return [*survey_conversations(), parse_conversation({"id": "tools", "messages": tool, "tools": tools}),
            parse_conversation({"id": "long", "messages": long})]


def survey_limits(rows: int | None, start: int = 0) -> dict:
    """How close real templates come to each `TemplateLimits` default (instrumented checks, no HF reference)."""
    import sftdata.chat.engine as engine_mod
    import sftdata.chat.jinja_env as je
    import sftdata.chat.template as template_mod
    from sftdata.chat.engine import ChatEncoder
    from sftdata.chat.limits import TemplateLimits
    from sftdata.chat.options import MaskOptions
    from sftdata.chat.template import TemplateSource
    from sftdata.errors import TemplateError

    seen: dict[str, float] = collections.defaultdict(float)

    def note(key: str, value: float) -> None:
        seen[key] = max(seen[key], value)

    weigh, chars, items, rng, call, init, render = (je._weigh, je._check_chars, je._check_items, je._bounded_range,
                                                    je.BoundedEnvironment.call, je.BoundedEnvironment.__init__,
                                                    je.render)

    def weigh_(value, limits, construct, times=1):
        c, i = weigh(value, limits, construct, times)
        note("max_string_chars", c), note("max_items", i)
        return c, i

    def range_(limits):
        inner = rng(limits)
        return lambda *a: (lambda r: (note("max_range", len(r)), r)[1])(inner(*a))

    def call_(self, context, obj, *args, **kwargs):
        note("max_call_depth", je._state(context, self.limits).depth + 1)
        return call(self, context, obj, *args, **kwargs)

    def init_(self, limits, **kwargs):
        init(self, limits, **kwargs)
        join = self.sftdata_str_join
        self.sftdata_str_join = lambda seq: (lambda s: (note("max_string_chars", len(s)), s)[1])(join(seq))

    def render_(template, variables):
        t0 = time.perf_counter()
        out = render(template, variables)
        note("max_render_seconds", time.perf_counter() - t0), note("max_output_chars", len(out))
        return out

    je._weigh, je._bounded_range, je.BoundedEnvironment.call, je.BoundedEnvironment.__init__ = \
        weigh_, range_, call_, init_
    je._check_chars = lambda n, limits, construct: (note("max_string_chars", n), chars(n, limits, construct))[1]
    je._check_items = lambda n, limits, construct: (note("max_items", n), items(n, limits, construct))[1]
    engine_mod.render = template_mod.render = render_
    convs = limit_conversations()
    tokenizers: dict[str, object] = {}
    overall: dict[str, tuple[float, str]] = {}
    refused = {}
    for name, text in all_templates()[start:rows]:
        seen.clear()
        tok_name = tokenizer_for(name)
        tok = tokenizers.setdefault(tok_name, load_tokenizer(tok_name))
        try:
            enc = ChatEncoder(tok, MaskOptions(), TemplateSource(text, name))
            results = enc.encode_batch(convs)
        except TemplateError as err:
            if "limit" in str(err) or "sandbox" in str(err):
                refused[name] = str(err)[:300]
            continue
        for r in results:
            if isinstance(r, list) and r[0].code.value == "template_limit":
                refused[name] = r[0].message[:300]
        for key, value in seen.items():
            if value > overall.get(key, (0, ""))[0]:
                overall[key] = (value, name)
    defaults = TemplateLimits()
    table = {k: {"largest": v, "template": t, "default": getattr(defaults, k),
                 "fraction_of_default": v / getattr(defaults, k)} for k, (v, t) in sorted(overall.items())}
    for k, row in table.items():
        print(f"  {k:20s} largest {row['largest']:>12,.4g} ({row['fraction_of_default']:.2e} of {row['default']:,})"
              f"  {row['template']}")
    print("refused or rejected by a limit:", json.dumps(refused, indent=1) if refused else "none")
    return {"limits": table, "refused": refused}


def survey_trl() -> dict:
    from sftdata.chat.compare import compare_with_generation_mask
    from sftdata.chat.engine import ChatEncoder
    from sftdata.chat.options import MaskOptions
    from sftdata.chat.template import TemplateSource

    base = FIXTURES / "templates" / "trl"
    convs = survey_conversations()
    out = {}
    for marked in sorted(base.glob("*_training.jinja")):
        plain = base / marked.name.replace("_training", "")
        tok_name = tokenizer_for(marked.name)
        tok = load_tokenizer(tok_name)
        try:
            enc = ChatEncoder(tok, MaskOptions(), TemplateSource(plain.read_text(), str(plain.name)))
        except Exception as err:  # noqa: BLE001
            out[marked.name] = {"tokenizer": tok_name, "status": "does_not_render", "detail": str(err)[:200]}
            continue
        counts = collections.Counter()
        details = []
        for conv in convs:
            verdict = compare_with_generation_mask(enc, conv, marked.read_text())
            counts[verdict.status] += 1
            if verdict.status != "agree":
                details.append(f"{conv.id}: {verdict.detail}")
        out[marked.name] = {"tokenizer": tok_name, "counts": dict(counts), "details": details[:3]}
    return out


def survey_datasets(limit: int | None, check: bool = False) -> dict:
    from sftdata.chat.compare import check_example, hf_ids
    from sftdata.chat.engine import ChatEncoder
    from sftdata.chat.options import MaskOptions
    from sftdata.readers import read_rows
    from sftdata.records import Record
    from sftdata.validate import to_records

    data = FIXTURES / "datasets"
    sets = {"alpaca_en": "llama_factory/alpaca_en_demo.json", "alpaca_zh": "llama_factory/alpaca_zh_demo.json",
            "fastchat": "fastchat/dummy_conversation.json", "oasst": "oasst/en_100_tree.jsonl",
            "glaive_en": "llama_factory/glaive_toolcall_en_demo.json",
            "glaive_zh": "llama_factory/glaive_toolcall_zh_demo.json",
            "reason_tool_use": "llama_factory/reason_tool_use_demo_50.jsonl"}
    records = {k: [r.conversation for r in to_records(read_rows(str(data / p))) if isinstance(r, Record)][:limit]
               for k, p in sets.items()}
    table = {}
    for tok_name in sorted(p.name for p in (FIXTURES / "tokenizers").iterdir()):
        enc = ChatEncoder.load(FIXTURES / "tokenizers" / tok_name, MaskOptions())
        row = {}
        for k, convs in records.items():
            res = enc.encode_batch(convs)
            reasons = collections.Counter(r[0].code.value for r in res if isinstance(r, list))
            row[k] = {"records": len(convs), "accepted": len(convs) - sum(reasons.values()), "rejected": dict(reasons)}
            if check:  # every accepted record against apply_chat_template and the reply+EOT decode check
                bad = [c.id for c, r in zip(convs, res, strict=True) if not isinstance(r, list) and (
                    r.input_ids.tolist() != hf_ids(enc, c) or check_example(enc, c, r) is not None)]
                row[k]["failed_checks"] = bad[:5]
                row[k]["n_failed_checks"] = len(bad)
        table[tok_name] = row
        print(tok_name, json.dumps(row), flush=True)
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--templates", action="store_true")
    ap.add_argument("--trl", action="store_true")
    ap.add_argument("--datasets", action="store_true")
    ap.add_argument("--limits", action="store_true", help="how close the templates come to TemplateLimits")
    ap.add_argument("--rows", type=int, default=None, help="limit templates / records per dataset")
    ap.add_argument("--check", action="store_true", help="--datasets: verify ids and masks of every accepted record")
    ap.add_argument("--start", type=int, default=0, help="first template index (to split the survey)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    everything = not (args.templates or args.trl or args.datasets or args.limits)
    result = {}
    if args.limits:
        result["limits"] = survey_limits(args.rows, args.start)
    if args.templates or everything:
        rep = survey_templates(args.rows, args.start)
        status = collections.Counter(v["status"] for v in rep.values())
        print("templates:", len(rep), dict(status))
        for name, v in rep.items():
            if v["status"] != "pass":
                print(f"  {v['status']:18s} {name} [{v['tokenizer']}] {v.get('counts', '')} "
                      f"{v.get('failures') or v.get('detail', '')}")
        result["templates"] = rep
    if args.trl or everything:
        rep = survey_trl()
        for name, v in rep.items():
            print(f"  trl {name:40s} [{v['tokenizer']}] {v.get('counts', v.get('status'))} {v.get('details', '')}")
        result["trl"] = rep
    if args.datasets or everything:
        result["datasets"] = survey_datasets(args.rows, args.check)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
