"""The audit bounds transformers' renderer from outside: memory ceiling per worker, clock per render.

The writer's own template environment refuses hostile templates (`tests/test_hostile_templates.py`);
the audit renders with transformers' `apply_chat_template` and must not be the way back in, for a
template the writer never ran (an edited manifest here, or an audit with another `--tokenizer`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import CHATML_TEMPLATE, build_test_tokenizer

ROOT = Path(__file__).resolve().parents[1]
ROWS = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in [*((f"question {i}", f"answer {i}") for i in range(6)), ("BOOM", "ok")]]


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter: the bounds change the process they run in."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})


def test_a_bounded_render_names_the_memory_ceiling_and_the_clock():
    proc = _run("""
        import resource
        from sftdata.audit.bounds import AuditBoundError, bound_this_process, bounded, bounded_for_now
        before = resource.getrlimit(resource.RLIMIT_AS)
        with bounded_for_now(0.3, 1 << 30):
            assert resource.getrlimit(resource.RLIMIT_AS)[0] != before[0]
            try:
                with bounded():
                    s = "a" * (3 << 30)
            except AuditBoundError as err:
                print("memory:", err)
        assert resource.getrlimit(resource.RLIMIT_AS) == before  # the probes' bounds are lifted after
        bound_this_process(0.3)
        try:
            with bounded():
                while True:
                    pass
        except AuditBoundError as err:
            print("clock:", err)
        with bounded():
            print("small:", len("a" * 1000))
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "memory: a render needed more than the audit's 1 GiB of memory" in proc.stdout
    assert "clock: a render took more than 0.3 s (the audit's clock, `template_limits.max_render_seconds`)" \
        in proc.stdout
    assert "small: 1000" in proc.stdout


def _prepared(tmp_path: Path) -> Path:
    from sftdata.config import resolve_config
    from sftdata.prepare import prepare

    build_test_tokenizer().save_pretrained(tmp_path / "tok")
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    config = resolve_config(None, {"tokenizer": str(tmp_path / "tok"), "max_length": 256})
    return prepare([str(data)], tmp_path / "out", config).out


def _swap_template(folder: Path, template: str, seconds: float | None = None) -> None:
    """What an edited manifest (or another tokenizer) brings: a template the writer never ran."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["chat_template"] = template
    if seconds is not None:
        manifest["options"]["mask"]["template_limits"]["max_render_seconds"] = seconds
    (folder / "manifest.json").write_text(json.dumps(manifest))


AUDIT = """
    import json, sys, time
    from sftdata.audit import audit_prepared
    start = time.perf_counter()
    report = audit_prepared(sys.argv[1], sample=0)
    errors = [f.message for f in report.findings.items if f.severity == "error"]
    skipped = [c["name"] for c in report.findings.checks_json() if c.get("skipped")]
    print(json.dumps({"passed": report.passed, "errors": errors, "skipped": skipped,
                      "seconds": time.perf_counter() - start}))
"""


def _audit(folder: Path) -> dict:
    proc = _run(AUDIT, str(folder))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_memory_bomb_on_one_record_is_refused_in_the_worker_and_reported(tmp_path):
    folder = _prepared(tmp_path)
    # 4 GB would be allocated without the ceiling (this machine has the memory): the audit would then pass
    bomb = "{% if messages[0]['content'] == 'BOOM' %}{% set s = 'a' * 4000000000 %}{% endif %}"
    _swap_template(folder, bomb + CHATML_TEMPLATE)
    started = time.perf_counter()
    result = _audit(folder)
    assert time.perf_counter() - started < 60
    assert not result["passed"]
    bounded = [e for e in result["errors"] if "AuditBoundError" in e]
    assert len(bounded) == 1, result["errors"]
    assert "needed more than the audit's 2 GiB of memory" in bounded[0]


def test_a_template_that_never_ends_stops_at_the_clock_in_the_probes(tmp_path):
    folder = _prepared(tmp_path)
    # 10**10 loop steps: hours without a clock (each range stays under the sandbox's own cap)
    hang = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    _swap_template(folder, hang + CHATML_TEMPLATE, seconds=0.5)
    started = time.perf_counter()
    result = _audit(folder)
    assert time.perf_counter() - started < 60
    assert not result["passed"]
    assert result["errors"][0].startswith("the chat template went past the audit's bounds on its probe "
                                          "conversations: a render took more than 0.5 s"), result["errors"]
    assert "ids_match" in result["skipped"]  # no record is rendered with a template that failed its probes


def test_a_worker_killed_from_outside_ends_the_audit_with_a_clear_error(tmp_path, monkeypatch):
    from sftdata.audit import audit_prepared
    from sftdata.audit.rederive import MaskDeriver
    from sftdata.errors import SftdataError

    folder = _prepared(tmp_path)
    monkeypatch.setattr(MaskDeriver, "derive_batch", lambda self, todo: os.kill(os.getpid(), signal.SIGKILL))
    with pytest.raises(SftdataError, match=r"an audit worker process died .* \(SFTDATA_CPUS=1 runs one\)"):
        audit_prepared(folder, sample=0)


def test_batches_are_cut_by_text_size_so_long_documents_stay_under_the_ceiling(tmp_path, monkeypatch):
    from sftdata.audit import audit_prepared, run
    from sftdata.audit.normal import RawRecord

    def rows(*sizes: int) -> list[RawRecord]:
        return [RawRecord("s", i, [], chars=n) for i, n in enumerate(sizes)]

    monkeypatch.setattr(run, "BATCH_CHARS", 20)
    monkeypatch.setattr(run, "BATCH", 3)
    assert [[r.index for r in c] for c in run._chunks(iter(rows(10, 10, 50, 5, 5)))] == [[0, 1], [2], [3, 4]]
    assert [[r.index for r in c] for c in run._chunks(iter(rows(*[1] * 7)))] == [[0, 1, 2], [3, 4, 5], [6]]
    # one row a batch, many batches in flight over the workers: the same proof, in order
    monkeypatch.setattr(run, "BATCH_CHARS", 1)
    report = audit_prepared(_prepared(tmp_path), sample=0)
    assert report.passed
    assert report.findings.checks["ids_match"].checked == len(ROWS)


def test_a_rows_size_counts_every_text_its_documents_render_from():
    """The batch bound is measured on the rendered conversations without reading the row's texts (main leaves
    most texts to the conservation process): it must still be at least the texts' length, in every format,
    tool calls, tools, reasoning and OASST branches included."""
    from sftdata.audit.normal import read_row

    big = "long text " * 300
    call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": json.dumps({"q": big})}}
    rows = [
        ("messages", {"messages": [{"role": "user", "content": "hi"},
                                   {"role": "assistant", "content": "", "tool_calls": [call]},
                                   {"role": "tool", "tool_call_id": "c1", "content": "ok"},
                                   {"role": "assistant", "content": [{"type": "reasoning", "text": big},
                                                                     {"type": "text", "text": "done"}]}],
                      "tools": [{"name": "lookup", "description": big, "parameters": {"type": "object"}}]}),
        ("messages", {"system": big, "messages": [{"role": "user", "content": "q"},
                                                  {"role": "assistant", "content": "a", "reasoning_content": big}]}),
        ("sharegpt", {"conversations": [{"from": "human", "value": "q"},
                                        {"from": "function_call", "value": json.dumps({"name": "f", "arguments":
                                                                                       {"x": big}})},
                                        {"from": "observation", "value": big}, {"from": "gpt", "value": "a"}],
                      "tools": json.dumps([{"name": "f", "description": big}])}),
        ("alpaca", {"system": "s", "history": [[big, big]], "instruction": big, "input": big, "output": big}),
        ("prompt_completion", {"prompt": [{"role": "user", "content": big}], "completion": big}),
        ("oasst", {"prompt": {"role": "prompter", "text": big, "replies": [
            {"role": "assistant", "text": big, "replies": [{"role": "prompter", "text": big, "replies": [
                {"role": "assistant", "text": big}]}]},
            {"role": "assistant", "text": "short"}]}}),
    ]
    example = Path(__file__).parents[1] / "sftdata" / "data" / "example.jsonl"  # every shape the project ships
    for line in example.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # the example's deliberately broken rows
        if isinstance(row, dict) and isinstance(row.get("messages"), list):
            rows.append(("messages", row))
    for fmt, row in rows:
        record = read_row(row, fmt, "in.jsonl", 0)
        texts = sum(len(leaf.text) for leaf in record.leaves)
        assert record.records and texts > 0 and record.chars >= texts, (fmt, record.chars, texts)
