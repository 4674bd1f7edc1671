"""The audit passes on shards that `sftdata.prepare` writes from every real dataset with every fixture tokenizer.

Per tokenizer, two prepared folders (the first rows of each dataset, so the test stays fast): the
chat datasets (alpaca en/zh, v1_sft_demo with content parts and loss weights, FastChat multi-turn,
OASST paths, identity, Dolly via a column map) and the tool datasets (glaive en/zh, reason_tool_use).
Every document is re-derived from its source record by the audit's own method and must match the
writer's ids and mask token for token.

Tool calls with Qwen2.5 / Qwen3 / Llama 3.1 are marked xfail: the audit finds that the writer leaves
the start of a tool call (`<tool_call>\\n{"name": "`) out of the loss, and names each place (see
notes/issue-5.md). When the writer is fixed these turn into unexpected passes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import DATASETS, TOKENIZER_NAMES, requires_shared

from sftdata.audit import audit_prepared

CHAT = ["llama_factory/alpaca_en_demo.json", "llama_factory/alpaca_zh_demo.json", "llama_factory/v1_sft_demo.jsonl",
        "fastchat/dummy_conversation.json", "oasst/en_100_tree.jsonl", "llama_factory/identity.json"]
TOOLS = ["llama_factory/glaive_toolcall_en_demo.json", "llama_factory/glaive_toolcall_zh_demo.json",
         "llama_factory/reason_tool_use_demo_50.jsonl"]
ROWS = 6
TOOL_CALL_BUG = {"qwen2.5-instruct", "qwen3", "llama3.1-instruct"}

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
@pytest.mark.parametrize("tokenizer", [pytest.param(t, marks=pytest.mark.xfail(
    t in TOOL_CALL_BUG, reason="writer leaves the start of tool calls unsupervised (found by this audit)",
    strict=False)) for t in TOKENIZER_NAMES])
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
