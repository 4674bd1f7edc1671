"""The embedded default: example data that validates as documented, and a tokenizer that regenerates exactly."""

from __future__ import annotations

import json

from sftdata import tinytok
from sftdata.data import make_example
from sftdata.validate import validate_inputs


def test_example_data_regenerates_identically():
    assert tinytok.EXAMPLE_PATH.read_text(encoding="utf-8") == make_example.text()


def test_example_data_validates_with_the_three_planted_rejects(tmp_path):
    report = validate_inputs([str(tinytok.EXAMPLE_PATH)], rejects=str(tmp_path / "r.jsonl"))
    assert report.format == "messages" and report.rows >= 180
    assert dict(report.reasons) == {"empty_reply": 1, "invalid_json": 1, "unknown_role": 1}
    assert report.tool_calls >= 10 and report.with_reasoning >= 8 and report.max_turns >= 6
    ids = {json.loads(x)["id"] for x in (tmp_path / "r.jsonl").read_text().splitlines()}
    assert ids == {None, "bad-empty-reply", "bad-unknown-role"}


def test_tokenizer_regenerates_byte_for_byte(tmp_path):
    out = tinytok.build(tmp_path / "tok")
    committed = sorted(p.name for p in tinytok.TOKENIZER_DIR.iterdir())
    assert sorted(p.name for p in out.iterdir()) == committed
    for name in committed:
        assert (out / name).read_bytes() == (tinytok.TOKENIZER_DIR / name).read_bytes(), f"{name} differs: run " \
            "`python -m sftdata.tinytok` and commit sftdata/data/tokenizer"


def test_tokenizer_and_template_render_every_kind_of_turn():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tinytok.TOKENIZER_DIR))
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "马来西亚的首都在哪里?"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"type": "function", "function": {"name": "lookup", "arguments": {"q": "Malaysia"}}}]},
                {"role": "tool", "content": "Kuala Lumpur"},
                {"role": "assistant", "content": "吉隆坡。", "reasoning": "The tool said so."}]
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    text = tok.apply_chat_template(messages, tools=tools, tokenize=False)
    assert text.startswith("<|im_start|>system\nBe brief.\n\n# Tools\n")
    assert '<tool_call>\n{"name": "lookup", "arguments": {"q": "Malaysia"}}\n</tool_call><|im_end|>' in text
    assert "<|im_start|>assistant\n<think>\nThe tool said so.\n</think>\n吉隆坡。<|im_end|>\n" in text
    for k in range(1, len(messages)):  # prefix renders are prefixes: what mask engines rely on
        assert text.startswith(tok.apply_chat_template(messages[:k], tools=tools, tokenize=False))
    prompt = tok.apply_chat_template(messages[:2], tools=tools, tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    assert tok.convert_tokens_to_ids("<|im_end|>") == tok.eos_token_id
    assert len(tok.tokenize("<think>")) == 1 and len(tok.tokenize("<tool_call>")) == 1
