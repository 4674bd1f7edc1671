"""The audit passes on shards that `sftdata.prepare` writes from every real dataset with every fixture tokenizer.

Per tokenizer, two prepared folders (the first rows of each dataset, so the test stays fast): the
chat datasets (alpaca en/zh, v1_sft_demo with content parts and loss weights, FastChat multi-turn,
OASST paths, identity, Dolly via a column map) and the tool datasets (glaive en/zh, reason_tool_use).
Every document is re-derived from its source record by the audit's own method and must match the
writer's ids and mask token for token.

The tool datasets were the audit's first catch: the writer once left the start of a tool call
(`<tool_call>\\n{"name": "`) out of the loss with Qwen2.5, Qwen3 and Llama 3.1; the audit named every
place (notes/issue-5.md) and the engine was fixed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import DATASETS, TOKENIZER_NAMES, requires_shared
from test_audit import read_shard, refresh_manifest, write_shard

from sftdata.audit import audit_prepared

CHAT = ["llama_factory/alpaca_en_demo.json", "llama_factory/alpaca_zh_demo.json", "llama_factory/v1_sft_demo.jsonl",
        "fastchat/dummy_conversation.json", "oasst/en_100_tree.jsonl", "llama_factory/identity.json"]
TOOLS = ["llama_factory/glaive_toolcall_en_demo.json", "llama_factory/glaive_toolcall_zh_demo.json",
         "llama_factory/reason_tool_use_demo_50.jsonl"]
ROWS = 6

pytestmark = [requires_shared, pytest.mark.shared]


def _subset(rel: str, tmp: Path, rows: int) -> str:
    src = DATASETS / rel
    dst = tmp / src.name
    if src.suffix == ".json":
        dst.write_text(json.dumps(json.loads(src.read_text(encoding="utf-8"))[:rows], ensure_ascii=False))
    else:
        lines = src.read_text(encoding="utf-8").splitlines()[: max(rows // 3, 2) if "oasst" in rel else rows]
        dst.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(dst)


def _prepare(tmp: Path, tokenizer: str, inputs: list[str], **options) -> Path:
    from conftest import TOKENIZERS

    from sftdata.config import resolve_config
    from sftdata.prepare import prepare

    config = resolve_config(None, {"tokenizer": str(TOKENIZERS / tokenizer), "max_reject_fraction": 1.0,
                                   "max_length": 4096, **options})
    return prepare(inputs, tmp / "out", config).out


def _errors(report) -> list[dict]:
    return [f.to_json() for f in report.findings.items if f.severity == "error"][:5]


@pytest.mark.slow
@pytest.mark.parametrize("tokenizer", TOKENIZER_NAMES)
def test_chat_datasets_pass(tmp_path, tokenizer):
    inputs = [_subset(rel, tmp_path, ROWS) for rel in CHAT]
    report = audit_prepared(_prepare(tmp_path, tokenizer, inputs), sample=0)
    assert report.passed, _errors(report)
    checks = report.findings.checks
    assert checks["ids_match"].checked == report.stats["totals"]["documents"] > 20
    assert checks["records_accounted"].failed == 0
    assert "mask_unproven" not in checks, _errors(report)  # every mask proven by the audit's own method


@pytest.mark.slow
@pytest.mark.parametrize("tokenizer", TOKENIZER_NAMES)
def test_tool_datasets_pass(tmp_path, tokenizer):
    inputs = [_subset(rel, tmp_path, ROWS) for rel in TOOLS]
    report = audit_prepared(_prepare(tmp_path, tokenizer, inputs), sample=0)
    assert report.passed, _errors(report)


@pytest.mark.slow
def test_dolly_with_column_map_passes(tmp_path):
    inputs = [str(DATASETS / "dolly" / "databricks-dolly-15k.sample.jsonl")]
    out = _prepare(tmp_path, "llama3.1-instruct", inputs, column_map={"context": "input", "response": "output"})
    report = audit_prepared(out, sample=0)
    assert report.passed, _errors(report)
    assert report.findings.checks["mask_match"].checked == 7
    assert any(f.check == "template:date" and "pinned" in f.message for f in report.probes)


@pytest.mark.slow
def test_untrained_tool_call_start_is_caught(tmp_path):
    """The writer bug the audit found once: `<tool_call>` left out of the loss. Reproduce it in a shard."""
    out = _prepare(tmp_path, "qwen2.5-instruct", [_subset(TOOLS[0], tmp_path, ROWS)])
    shard = out / "shard-00000-of-00001.arrow"
    rows = read_shard(shard)
    row = next(i for i, r in enumerate(rows["labels"]) if 151657 in r)  # a trained <tool_call>
    p = rows["labels"][row].index(151657)
    rows["labels"][row][p] = -100
    with pa.memory_map(str(shard)) as src:  # keep the writer's schema metadata (its fingerprint)
        metadata = pa.ipc.open_stream(src).schema.metadata
    write_shard(shard, rows, metadata)
    refresh_manifest(out)
    report = audit_prepared(out, sample=0)
    (f,) = [f for f in report.findings.items if f.check == "mask_match"]
    assert f.row == row and f.position == p and "<tool_call>" in f.expected and f.found.startswith("not supervised")


REASONING_ROWS = [
    {"id": "m1", "messages": [
        {"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4", "reasoning": "Two plus two is four."},
        {"role": "user", "content": "And 3+3?"},
        {"role": "assistant", "content": "6", "reasoning": "Three plus three is six."}]},
    {"id": "m2", "messages": [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "<think>\nPick something common.\n</think>\n\nBlue."}]},
]


@pytest.mark.slow
@pytest.mark.parametrize("tokenizer", TOKENIZER_NAMES)
def test_multi_turn_reasoning_is_proven_and_conserved(tmp_path, tokenizer):
    """Reasoning fields and think blocks on every template: inlined (no slot), split into `ID#K` (Qwen3 drops
    earlier thoughts), or built from the opened generation prompt (DeepSeek-R1 style); each document re-derived
    and every thought found in the record's documents (or the record rejected with a reason)."""
    data = tmp_path / "reasoning.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in REASONING_ROWS), encoding="utf-8")
    out = _prepare(tmp_path, tokenizer, [str(data)])
    report = audit_prepared(out, sample=0)
    assert report.passed, _errors(report)
    checks = report.findings.checks
    assert "mask_unproven" not in checks, _errors(report)
    written = report.stats["totals"]["documents"]
    assert checks["ids_match"].checked == written and (written == 0 or checks["conservation"].checked > 0)
