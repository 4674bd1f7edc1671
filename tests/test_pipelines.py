"""Every pipeline shipped in `pipelines/` runs end to end on real data with a real tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import DATASETS, ROOT, TOKENIZERS, requires_shared

from sftdata.config import resolve_config
from sftdata.prepare import prepare
from sftdata.shards import iter_rows

PIPELINES = ROOT / "pipelines"
SEED_PAIRS = [  # the seed document's example, then a few more of the same shape
    {"prompt": "马来西亚的首都在哪里?", "response": "马来西亚的首都是吉隆坡。"},
    {"prompt": "What is the capital of France?", "response": "The capital of France is Paris."},
    {"prompt": "Name a primary colour.", "response": "Red is a primary colour."},
    {"prompt": "2 + 2 = ?", "response": "4"},
]


def subset(source: Path, out: Path, n: int) -> Path:
    """The first `n` records of a JSON-array dataset, as JSONL (keeps the test fast)."""
    rows = json.loads(source.read_text(encoding="utf-8"))[:n]
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return out


CASES = {
    "alpaca_chat": lambda tmp: subset(DATASETS / "llama_factory" / "alpaca_en_demo.json", tmp / "a.jsonl", 60),
    "sharegpt_multiturn": lambda tmp: subset(DATASETS / "fastchat" / "dummy_conversation.json", tmp / "s.jsonl", 40),
    "tool_calling": lambda tmp: subset(DATASETS / "llama_factory" / "glaive_toolcall_en_demo.json", tmp / "t.jsonl",
                                       40),
    "base_prompt_response": lambda tmp: _pairs(tmp / "p.jsonl"),
}


def _pairs(path: Path) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in SEED_PAIRS), encoding="utf-8")
    return path


def test_every_shipped_pipeline_has_a_case() -> None:
    assert sorted(p.stem for p in PIPELINES.glob("*.yaml")) == sorted(CASES)


@requires_shared
@pytest.mark.parametrize("name", sorted(CASES))
def test_pipeline_runs_on_real_data(name: str, tmp_path: Path) -> None:
    corpus = CASES[name](tmp_path)
    config = resolve_config(PIPELINES / f"{name}.yaml", {"tokenizer": str(TOKENIZERS / "qwen2.5-instruct")})
    result = prepare([str(corpus)], tmp_path / "out", config)
    m = result.manifest
    assert m.counts.rows_in == m.counts.docs_written + m.counts.rejected
    assert m.counts.docs_written >= 0.9 * m.counts.rows_in, m.counts.reasons
    assert result.exit_code == 0
    assert m.inputs[0].format == config.read.format
    assert m.options["mask"] == config.mask.model_dump(mode="json")
    rows = list(iter_rows(tmp_path / "out"))
    assert sum(len(r["doc_ids"]) for r in rows) == m.counts.docs_written
    for row in rows:
        labels = np.asarray(row["labels"])
        starts = np.cumsum([0, *row["doc_lens"][:-1]])
        assert (labels[starts] == -100).all() and (labels != -100).any()
        assert len(row["input_ids"]) <= config.max_length


@requires_shared
def test_base_pipeline_trains_exactly_the_response_and_endoftext(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    config = resolve_config(PIPELINES / "base_prompt_response.yaml",
                            {"tokenizer": str(TOKENIZERS / "qwen2.5-instruct"), "pack": False, "shuffle": False})
    prepare([str(_pairs(tmp_path / "p.jsonl"))], tmp_path / "out", config)
    tok = AutoTokenizer.from_pretrained(str(TOKENIZERS / "qwen2.5-instruct"))
    for pair, row in zip(SEED_PAIRS, iter_rows(tmp_path / "out"), strict=True):
        text = tok.decode(row["input_ids"])
        assert text == f"<|prompt|> {pair['prompt']}<|response|> {pair['response']}<|endoftext|>"
        trained = tok.decode([t for t, lab in zip(row["input_ids"], row["labels"], strict=True) if lab != -100])
        assert trained.strip() == f"{pair['response']}<|endoftext|>"
