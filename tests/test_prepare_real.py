"""`prepare` with the real mask engine and the bundled tokenizer: template ids, workers, Ctrl-C, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

from sftdata.config import resolve_config
from sftdata.prepare import prepare
from sftdata.shards import iter_rows

DATA = ROOT / "sftdata" / "data"
EXAMPLE = DATA / "example.jsonl"
TOKENIZER = DATA / "tokenizer"


def _config(**kw: object):
    return resolve_config(None, {"tokenizer": str(TOKENIZER), "max_length": 1024, "max_reject_fraction": 0.05, **kw})


def test_documents_are_exactly_the_template_ids(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    result = prepare([str(EXAMPLE)], tmp_path / "out", _config())
    m = result.manifest
    assert m.counts.rows_in == m.counts.docs_written + m.counts.rejected and m.counts.rejected == 3
    assert m.chat_template and m.tokenizer.files["tokenizer.json"]
    assert m.inputs[0].format == "messages"
    tok = AutoTokenizer.from_pretrained(str(TOKENIZER))
    records = {}
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        records[row.get("id")] = row
    checked = 0
    for row in iter_rows(tmp_path / "out"):
        start = 0
        for doc_id, n in zip(row["doc_ids"], row["doc_lens"], strict=True):
            ids = row["input_ids"][start:start + n]
            labels = row["labels"][start:start + n]
            source = records[doc_id]
            if not source.get("tools") and not any(m.get("tool_calls") for m in source["messages"]):
                expected = tok.apply_chat_template(source["messages"], tokenize=True)["input_ids"]
                assert ids == list(expected), doc_id
                checked += 1
            assert labels[0] == -100 and any(lab != -100 for lab in labels)
            start += n
    assert checked > 100


@pytest.mark.slow
def test_workers_give_the_same_bytes_with_the_real_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFTDATA_CPUS", "3")  # a real pool of 2 even on 2 cores (counts are capped at cores - 1)
    a = prepare([str(EXAMPLE)], tmp_path / "a", _config(chunk_size=16))
    b = prepare([str(EXAMPLE)], tmp_path / "b", _config(chunk_size=16, workers=2))
    for name in sorted(p.name for p in a.out.iterdir()):
        assert (a.out / name).read_bytes() == (b.out / name).read_bytes(), name


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to list child processes")
def test_ctrl_c_leaves_no_worker_behind(tmp_path: Path) -> None:
    corpus = tmp_path / "big.jsonl"
    # ~75k rows: tens of seconds of work, so the signal always lands mid-run (7.5k rows once finished first)
    corpus.write_text(EXAMPLE.read_text(encoding="utf-8") * 400, encoding="utf-8")
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "true",  # the setting that deadlocks forked pools
           "SFTDATA_CPUS": "3"}  # a real pool of 2 even on 2 cores (counts are capped at cores - 1)
    log = tmp_path / "prepare.log"  # a file, not a pipe: a pipe nobody reads fills up and blocks the run's exit
    with open(log, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "sftdata", "prepare", str(corpus), "--tokenizer",
                                 str(TOKENIZER), "--out", str(tmp_path / "out"), "--workers", "2", "--max-length",
                                 "1024"], env=env, stdout=sink, stderr=sink)
    deadline = time.time() + 120
    workers: list[int] = []
    while time.time() < deadline and len(workers) < 2 and proc.poll() is None:
        time.sleep(0.2)
        workers = [c for c in _children(proc.pid) if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()]
    assert len(workers) >= 2, "the pool did not start"
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert proc.returncode == 130, log.read_text(errors="replace")[-2000:]  # interrupted, not finished or crashed
    time.sleep(0.5)
    alive = [w for w in workers if Path(f"/proc/{w}").exists() and "Z" not in Path(f"/proc/{w}/stat").read_text()
             .rsplit(")", 1)[1].split()[0]]
    assert alive == []
    assert not (tmp_path / "out").exists()  # an interrupted run never looks finished


def test_cli_json_is_one_line_and_exit_code_follows_the_reject_limit(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "sftdata", "prepare", str(EXAMPLE), "--tokenizer", str(TOKENIZER), "--max-length",
           "1024", "--json"]
    strict = subprocess.run([*cmd, "--out", str(tmp_path / "a")], capture_output=True, text=True)
    assert strict.returncode == 1  # 3 broken rows of 189 is above the default 1%
    lines = strict.stdout.strip().splitlines()
    assert len(lines) == 1
    payload = json.loads(lines[0])
    assert payload["counts"]["rejected"] == 3 and payload["exit_code"] == 1 and "total_s" in payload["timings"]
    assert (tmp_path / "a" / "manifest.json").is_file()
    bad = subprocess.run([*cmd, "--out", str(tmp_path / "c"), "--masking", "nope", "--too-long", "chop"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "mask.masking" in bad.stderr and "too_long" in bad.stderr
