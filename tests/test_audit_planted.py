"""Planted bugs: a writer that loses text must fail the audit, which names the record, the field and the text.

Each bug is planted in a real `prepare` run by wrapping the real encoder (the `encoder_factory`
hook): the wrapper hands the engine a conversation that has already lost something, exactly as a
buggy reader, adapter or template would. The folder is then self-consistent (shards, checksums,
manifest), so only the audit's own reading of the raw rows can see the loss. The read-option bug
writes without the column map and records it anyway (the manifest says what the writer ignored).

The template is a ChatML variant written here: it renders tools, tool calls, and the reasoning of the
turns after the last user message only (as Qwen3 does), so the multi-turn record is split into
`multi` and `multi#1`. The tokenizer is trained in the test; no ../shared needed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import build_test_tokenizer
from typer.testing import CliRunner

from sftdata.audit import audit_prepared
from sftdata.cli import app

TEMPLATE = """{%- if tools %}<|im_start|>system
{% for t in tools %}{{ t | tojson }}
{% endfor %}<|im_end|>
{% endif %}
{%- set ns = namespace(last=-1) %}{% for m in messages %}{% if m.role == 'user' %}{% set ns.last = loop.index0 %}\
{% endif %}{% endfor %}
{%- for m in messages %}<|im_start|>{{ m.role }}
{% if m.role == 'assistant' and m.reasoning_content and loop.index0 > ns.last %}<think>
{{ m.reasoning_content }}
</think>

{% endif %}{{ m.content }}{% if m.tool_calls %}{% for c in m.tool_calls %}<tool_call>{{ c.function | tojson }}\
</tool_call>{% endfor %}{% endif %}<|im_end|>
{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

ROWS = [
    {"id": "think", "messages": [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "<think>\nThe quick brown fox thinks.\n</think>\n\nParis is the capital."}]},
    {"id": "multi", "messages": [
        {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": "Hello", "reasoning": "Write a poem about the sea."},
        {"role": "user", "content": "The sea."},
        {"role": "assistant", "content": "How can I help you today?", "reasoning": "The lazy dog jumps."}]},
    {"id": "tools", "tools": [{"type": "function", "function": {
        "name": "get_capital", "description": "Capital of a country",
        "parameters": {"type": "object", "properties": {"country": {"type": "string"}}}}}],
     "messages": [
         {"role": "user", "content": "Capital of France?"},
         {"role": "assistant", "content": "", "tool_calls": [
             {"type": "function", "function": {"name": "get_capital", "arguments": {"country": "France"}}}]},
         {"role": "tool", "content": "Paris"},
         {"role": "assistant", "content": "Paris is the capital."}]},
]
ALPACA = {"instruction": "Write a poem.", "context": "The sea at night.", "output": "The quick brown fox."}
THINK = re.compile(r"^\s*<think>.*?</think>\s*", re.DOTALL)


# -- the planted writers: the real encoder, handed conversations that already lost something ----------------
class Planted:
    """Delegates to the real encoder after `mutate` has damaged each conversation."""

    def __init__(self, inner, mutate) -> None:
        self.inner, self.mutate = inner, mutate

    def encode_batch(self, conversations):
        return self.inner.encode_batch([self.mutate(c) for c in conversations])

    def encode_stream(self, batches):  # what `prepare` calls in one process
        return self.inner.encode_stream([self.mutate(c) for c in conversations] for conversations in batches)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _messages(conv, edit):
    return conv.model_copy(update={"messages": [edit(i, m, conv.messages) for i, m in enumerate(conv.messages)]})


def _drop_think(conv):
    return _messages(conv, lambda i, m, _: m.model_copy(update={"content": THINK.sub("", m.content)})
                     if m.role == "assistant" else m)


def _drop_reasoning(conv):
    return _messages(conv, lambda i, m, _: m.model_copy(update={"reasoning": None}))


def _drop_earlier_thought(conv):
    def edit(i, m, msgs):
        last = max(k for k, x in enumerate(msgs) if x.role == "assistant")
        return m.model_copy(update={"reasoning": None}) if m.role == "assistant" and i < last else m

    return _messages(conv, edit)


def _drop_tools(conv):
    return conv.model_copy(update={"tools": None})


def _factory(mutate):
    def load(tokenizer, options):
        from sftdata.chat.engine import ChatEncoder

        return Planted(ChatEncoder.load(tokenizer, options), mutate)

    return load


think_dropped = _factory(_drop_think)
reasoning_dropped = _factory(_drop_reasoning)
earlier_thought_dropped = _factory(_drop_earlier_thought)
tools_dropped = _factory(_drop_tools)


# -- fixtures -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("planted")
    build_test_tokenizer().save_pretrained(tmp / "tok")
    (tmp / "t.jinja").write_text(TEMPLATE, encoding="utf-8")
    (tmp / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    (tmp / "alpaca.jsonl").write_text(json.dumps(ALPACA) + "\n", encoding="utf-8")
    return tmp


def _prepare(tmp: Path, name: str, factory: str | None = None, column_map: dict | None = None,
             data: Path | None = None) -> Path:
    from sftdata.config import resolve_config
    from sftdata.prepare import prepare

    data = data or tmp
    config = resolve_config(None, {"tokenizer": str(tmp / "tok"), "max_length": 512, "column_map": column_map,
                                   "mask": {"chat_template": str(tmp / "t.jinja")}})
    return prepare([str(data / "chat.jsonl"), str(data / "alpaca.jsonl")], tmp / name, config,
                   encoder_factory=factory).out


def _audit_cli(folder: Path) -> tuple[int, dict]:
    result = CliRunner().invoke(app, ["audit", str(folder), "--json"])
    return result.exit_code, json.loads(result.stdout.strip().splitlines()[-1])


def _first_error(report: dict) -> dict:
    return next(f for f in report["findings"] if f["severity"] == "error")


# -- the tests ------------------------------------------------------------------------------------------------
def test_the_correct_writer_passes_with_split_documents(workspace):
    folder = _prepare(workspace, "good", column_map={"context": "input"})
    code, report = _audit_cli(folder)
    assert code == 0, [f for f in report["findings"] if f["severity"] == "error"]
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["conservation"]["checked"] >= 14 and checks["conservation"]["failed"] == 0
    assert checks["ids_match"]["checked"] == checks["mask_match"]["checked"] == 5  # multi and multi#1 included
    assert report["about"]["mode"] == {"shards_only": False, "allow_unproven": False}


PLANTED = [
    ("think block dropped", "test_audit_planted:think_dropped", None,
     "reasoning text of {chat}:0 field messages[1].content<think> is lost", "The quick brown fox thinks."),
    ("reasoning field dropped by the template", "test_audit_planted:reasoning_dropped", None,
     "reasoning text of {chat}:1 field messages[1].reasoning is lost", "Write a poem about the sea."),
    ("earlier turn trained without its thought", "test_audit_planted:earlier_thought_dropped", None,
     "reasoning text of {chat}:1 field messages[1].reasoning is lost", "Write a poem about the sea."),
    ("tools dropped", "test_audit_planted:tools_dropped", None,
     "tools text of {chat}:2 field tools[0].function.description is lost", "Capital of a country"),
    ("column map ignored (read option)", None, {"context": "input"},
     "content text of {alpaca}:0 field input is lost", "The sea at night."),
]


@pytest.mark.parametrize(("bug", "factory", "recorded_map", "message", "text"), PLANTED, ids=[p[0] for p in PLANTED])
def test_each_planted_bug_fails_the_audit_naming_what_was_lost(workspace, bug, factory, recorded_map, message, text):
    name = re.sub(r"\W+", "_", bug)
    folder = _prepare(workspace, name, factory)
    if recorded_map is not None:  # the writer ignored the column map, and the manifest records it anyway
        path = folder / "manifest.json"
        manifest = json.loads(path.read_text(encoding="utf-8"))
        manifest["options"]["read"]["column_map"] = recorded_map
        path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    code, report = _audit_cli(folder)
    assert code == 1
    first = _first_error(report)
    chat, alpaca = str(workspace / "chat.jsonl"), str(workspace / "alpaca.jsonl")
    assert first["check"] == "conservation"
    assert message.format(chat=chat, alpaca=alpaca) in first["message"]
    assert first["expected"] == text and first["found"] == "absent"


def test_missing_or_changed_input_fails_and_shards_only_is_the_named_weaker_audit(workspace, tmp_path):
    import shutil

    for name in ("chat.jsonl", "alpaca.jsonl"):
        shutil.copy(workspace / name, tmp_path / name)
    copy = _prepare(workspace, "moved", data=tmp_path)
    assert audit_prepared(copy, sample=0).passed
    (tmp_path / "alpaca.jsonl").write_text(json.dumps({**ALPACA, "output": "changed"}) + "\n", encoding="utf-8")
    report = audit_prepared(copy, sample=0)
    assert not report.passed
    (failure,) = [f for f in report.findings.items if f.severity == "error"]
    assert failure.check == "input_available" and "alpaca.jsonl' changed since prepare" in failure.message
    (tmp_path / "chat.jsonl").unlink()
    report = audit_prepared(copy, sample=0)
    assert "chat.jsonl' not found" in " ".join(f.message for f in report.findings.items)
    assert report.findings.checks["conservation"].skipped
    weaker = audit_prepared(copy, sample=0, shards_only=True)
    assert weaker.passed
    skipped = {c["name"]: c["skipped"] for c in weaker.to_json()["checks"] if "--shards-only" in c.get("skipped", "")}
    assert set(skipped) == {"ids_match", "mask_match", "conservation", "records_accounted", "doc_has_source"}
    result = CliRunner().invoke(app, ["audit", str(copy), "--shards-only"])
    assert result.exit_code == 0 and "weaker audit asked for" in result.output


def test_the_audit_imports_none_of_the_writer_reading_code(workspace):
    folder = _prepare(workspace, "imports")
    code = ("import sys; from sftdata.audit import audit_prepared; r = audit_prepared(sys.argv[1], sample=1); "
            "assert r.passed; print(sorted(m for m in sys.modules if m.startswith('sftdata')))")
    out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, check=True)
    loaded = out.stdout
    assert "sftdata.audit.run" in loaded
    for module in ("sftdata.readers", "sftdata.formats", "sftdata.validate", "sftdata.chat", "sftdata.prepare",
                   "sftdata.config", "sftdata.pipeline"):
        assert f"'{module}" not in loaded, module
