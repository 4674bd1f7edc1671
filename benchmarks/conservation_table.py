"""Issue 10's Must-show table: every fixture dataset x the fixture tokenizers -> documents written, rejects by
reason, and documents with any text missing (must be 0).

    HF_HUB_OFFLINE=1 python benchmarks/conservation_table.py [--sample N] [--tokenizers a,b] [--datasets x,y]

"Text missing" is measured on the *decoded ids* of each accepted record's documents (not on the render the
engine checked): every system / user / tool / assistant text, name, tool-call name and argument, tool
definition string and reasoning (field or leading think block) must be there, unless the engine counted it
as an allowed or context drop. `--sample 0` runs every record. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
DATASETS = {
    "alpaca_en": "llama_factory/alpaca_en_demo.json", "alpaca_zh": "llama_factory/alpaca_zh_demo.json",
    "glaive_en": "llama_factory/glaive_toolcall_en_demo.json",
    "glaive_zh": "llama_factory/glaive_toolcall_zh_demo.json",
    "v1_sft": "llama_factory/v1_sft_demo.jsonl", "reason_tool_use": "llama_factory/reason_tool_use_demo_50.jsonl",
    "identity": "llama_factory/identity.json", "fastchat": "fastchat/dummy_conversation.json",
    "oasst": "oasst/en_100_tree.jsonl",
    "dolly": "dolly/databricks-dolly-15k.sample.jsonl",
}
COLUMN_MAPS = {"dolly": {"context": "input", "response": "output"}}


def load_records(name: str, sample: int) -> list:
    """Validated conversations of one fixture dataset (every `len // sample`-th, `sample` at most)."""
    from sftdata.formats import FormatOptions, apply_column_map, get_format, resolve_format
    from sftdata.readers import read_rows
    from sftdata.records import parse_conversation

    rows = []
    for raw in read_rows(str(SHARED / "datasets" / DATASETS[name])):
        row = raw.data
        if isinstance(row, dict):
            rows.append(apply_column_map(row, COLUMN_MAPS.get(name, {})))
    fmt = resolve_format(name, rows[:64])
    convs = []
    for row in rows:
        for cand in get_format(fmt).convert(row, FormatOptions()):
            conv = parse_conversation(cand.data) if cand.data is not None else None
            if conv is not None and not isinstance(conv, list):
                convs.append(conv)
    if sample and len(convs) > sample:
        convs = convs[:: len(convs) // sample][:sample]
    return convs


def missing_in_documents(enc, conv, result) -> list[str]:
    """Paths of the record's texts that none of its decoded documents holds (allowed/context drops aside)."""
    from sftdata.chat.conservation import Haystack, missing_texts
    from sftdata.records import Role, thought_of
    from sftdata.tokens import Encoded, documents_of

    docs = documents_of(result)
    decoded = Haystack(" ".join(enc.tokenizer.decode(d.input_ids.tolist()) for d in docs))
    counts = result.counts if isinstance(result, Encoded) else {}
    allowed = {k.split(".", 1)[1] for k in counts if k.startswith("allowed_drop.")}
    lost = [t.path for t in missing_texts(conv, decoded) if t.kind not in allowed]
    if "context_drop.reasoning" not in counts:
        lost += [f"messages[{i}].reasoning" for i, m in enumerate(conv.messages)
                 if m.role is Role.assistant and (t := thought_of(m)) and t.strip() and not decoded.has(t)]
    return lost


@functools.cache
def _encoder(name: str):
    """One encoder per fixture tokenizer for the whole process (the test calls `table` once per dataset)."""
    from sftdata.chat.engine import ChatEncoder

    return ChatEncoder.load(SHARED / "tokenizers" / name)


def table(datasets: list[str], tokenizers: list[str], sample: int) -> list[dict]:
    """One row per (dataset, tokenizer): records, documents written, split documents, rejects, missing."""
    from sftdata.tokens import documents_of

    out = []
    encoders = {t: _encoder(t) for t in tokenizers}
    for name in datasets:
        convs = load_records(name, sample)
        for tok, enc in encoders.items():
            results = enc.encode_batch(convs)
            reasons: Counter[str] = Counter()
            written = split = missing = 0
            for conv, result in zip(convs, results, strict=True):
                if isinstance(result, list):
                    reasons.update({p.code.value for p in result})
                    continue
                docs = documents_of(result)
                written += len(docs)
                split += sum(d.key is not None for d in docs)
                missing += bool(missing_in_documents(enc, conv, result))
            out.append({"dataset": name, "tokenizer": tok, "records": len(convs), "written": written,
                        "split": split, "rejected": dict(sorted(reasons.items())), "missing": missing})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=40, help="records per dataset (0 = all)")
    parser.add_argument("--tokenizers", default="", help="comma-separated fixture tokenizers (default: all)")
    parser.add_argument("--datasets", default="", help="comma-separated dataset names (default: all)")
    args = parser.parse_args(argv)
    if not SHARED.is_dir():
        print(f"{SHARED} is absent: nothing to measure", file=sys.stderr)
        return 2
    tokenizers = args.tokenizers.split(",") if args.tokenizers else sorted(
        p.name for p in (SHARED / "tokenizers").iterdir())
    datasets = args.datasets.split(",") if args.datasets else list(DATASETS)
    rows = table(datasets, tokenizers, args.sample)
    print("| dataset | tokenizer | records | docs written (of which ID#K) | rejected by reason "
          "| docs with text missing |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        rejected = ", ".join(f"{k} {v}" for k, v in r["rejected"].items()) or "-"
        print(f"| {r['dataset']} | {r['tokenizer']} | {r['records']} | {r['written']} ({r['split']}) | {rejected} | "
              f"{r['missing']} |")
    return 1 if any(r["missing"] for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
