"""The journal and `--resume`: typed entries, torn lines, stale parts, nothing to resume, another job's folder.

Runs `prepare` in this process with the byte-level fake encoder of `test_prepare.py` (the job is
under test, not the mask engine). A crash is simulated by making the journal's crash point raise
after window N: the folder is then exactly what a kill at that point leaves (every write before it is
flushed and fsynced; nothing after it happened). `test_kill_anywhere.py` does the same with real
SIGKILLs from outside.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from test_prepare import FACTORY, config, folder_bytes, run, write_corpus

import sftdata
from sftdata.errors import ConfigError, InputError
from sftdata.pipeline import journal as journal_module
from sftdata.pipeline.journal import (
    DoneEntry,
    Journal,
    JournalHeader,
    PartEntry,
    WindowEntry,
    differences,
    entry_line,
    parse_line,
)
from sftdata.prepare import prepare

KW = {"pack_window": 100, "rows_per_shard": 20}


class Crash(Exception):
    """Stands for SIGKILL at a crash point (raised instead, so the test stays in one process)."""


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus.jsonl", 600, bad_every=50)


@pytest.fixture
def expected(corpus: Path, tmp_path: Path) -> dict[str, str]:
    return folder_bytes(run(corpus, tmp_path / "ref", **KW).out)


def crash_at(monkeypatch: pytest.MonkeyPatch, point: str) -> None:
    def crash(name: str) -> None:
        if name == point:
            raise Crash(name)

    monkeypatch.setattr(journal_module, "crash_point", crash)


def killed_run(corpus: Path, out: Path, point: str, monkeypatch: pytest.MonkeyPatch, **kw: object) -> Path:
    """Run until `point`, leave the folder as a kill there would; returns `OUT.incomplete`."""
    with monkeypatch.context() as m:
        crash_at(m, point)
        with pytest.raises(Crash):
            run(corpus, out, **{**KW, **kw})
    return out.with_name(out.name + ".incomplete")


def header(**kw: object) -> JournalHeader:
    base: dict = {"fingerprint": "f" * 64, "inputs": [{"path": "a.jsonl", "sha256": "1" * 64, "split": None}],
                  "options": {"seed": 0, "mask": {"masking": "assistant"}},
                  "tokenizer_files": {"tokenizer.json": "2" * 64}, "chat_template": "{{ x }}", "version": "1.0"}
    return JournalHeader.of(**{**base, **kw})


# -- typed entries ------------------------------------------------------------------------------------
def test_every_entry_reads_back_as_the_same_typed_value() -> None:
    part = PartEntry(part="part-00000-0000.arrow", sha256="3" * 64, rows=2, documents=5, tokens=900,
                     supervised_tokens=300)
    window = WindowEntry(window=0, next_row=120, rejects_offset=4096, rejected=3, docs_written=117,
                         reasons={"empty_reply": 3}, rows=2, tokens=900, shards=[part], truncated_docs=["r7"])
    for entry in (header(), window, DoneEntry(formats={"a.jsonl": "messages"})):
        line = entry_line(entry)
        assert "\n" not in line and json.loads(line)["kind"] == entry.kind
        assert parse_line(line) == entry and type(parse_line(line)) is type(entry)
    with pytest.raises(ValidationError):
        parse_line(json.dumps({**json.loads(entry_line(window)), "surprise": 1}))  # closed: a typo is an error
    with pytest.raises(ValidationError):
        parse_line('{"kind": "window", "window": 0}')  # a window without its figures is not a window


def test_a_torn_last_line_is_ignored_and_a_damaged_one_refused(tmp_path: Path) -> None:
    journal = Journal(tmp_path, header())
    journal.start()
    windows = [WindowEntry(window=i, next_row=10 * (i + 1), rejects_offset=0, rejected=0, docs_written=10 * (i + 1),
                           reasons={}, rows=1, tokens=50, shards=[], truncated_docs=[]) for i in range(3)]
    for w in windows:
        journal.commit(w)
    full = journal.path.read_bytes()
    assert journal.load().windows == windows  # type: ignore[union-attr]

    journal.path.write_bytes(full[:-20])  # a kill (or power cut) inside the last append
    state = journal.load()
    assert state is not None and state.windows == windows[:2] and state.next_row == 20
    journal.rewind(state)  # the torn line is gone for good: the next commit starts on a fresh line
    assert journal.path.read_bytes() == full[:len(full) - len(entry_line(windows[2])) - 1]

    journal.path.write_bytes(full[:30])  # torn inside the header: nothing was ever committed
    assert journal.load() is None
    lines = full.split(b"\n")
    journal.path.write_bytes(b"\n".join([lines[0], b'{"kind": "window", "win', *lines[2:]]))
    with pytest.raises(InputError, match=r"journal.jsonl: line 2 is damaged.*run without --resume"):
        journal.load()


# -- what differs -------------------------------------------------------------------------------------
def test_differences_name_each_input_option_and_file_with_old_and_new_values() -> None:
    old = header()
    assert differences(old, header()) == []
    new = header(fingerprint="e" * 64, options={"seed": 7, "mask": {"masking": "last"}, "pack": False},
                 inputs=[{"path": "a.jsonl", "sha256": "9" * 64, "split": None},
                         {"path": "b.jsonl", "sha256": "8" * 64}],
                 tokenizer_files={"tokenizer.json": "2" * 64, "chat_template.jinja": "4" * 64},
                 chat_template="{{ y }}", version="1.1")
    assert differences(old, new) == [
        "inputs: ['a.jsonl'] -> ['a.jsonl', 'b.jsonl']",
        "input 1 (a.jsonl): content changed, sha256 111111111111… -> 999999999999…",
        "option mask.masking: 'assistant' -> 'last'",
        "option pack: (unset) -> False",
        "option seed: 0 -> 7",
        "tokenizer file chat_template.jinja: (absent) -> 444444444444…",
        f"chat template: sha256 {old.chat_template_sha256[:12]}… -> {new.chat_template_sha256[:12]}…",  # type: ignore[index]
        "sftdata version: 1.0 -> 1.1",
    ]


# -- resume -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("point", ["window:0", "window:2", "done", "renamed", "manifest"])
def test_resume_after_a_crash_is_byte_identical(corpus: Path, tmp_path: Path, expected: dict[str, str],
                                                monkeypatch: pytest.MonkeyPatch, point: str) -> None:
    killed_run(corpus, tmp_path / "out", point, monkeypatch)
    assert not (tmp_path / "out").exists()
    result = run(corpus, tmp_path / "out", resume=True, **KW)
    assert result.resumed and folder_bytes(tmp_path / "out") == expected


def test_resume_rewrites_stale_parts_and_drops_temp_files_and_the_rejects_tail(
        corpus: Path, tmp_path: Path, expected: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    folder = killed_run(corpus, tmp_path / "out", "window:2", monkeypatch)
    state = Journal(folder, header()).path.read_text().splitlines()
    committed = {s["part"] for line in state[1:] for s in json.loads(line)["shards"]}
    assert committed and all((folder / p).is_file() for p in committed)
    # what a kill in window 3 leaves: a part written but never committed (garbage here, so that keeping
    # it would show), one half written under its temp name, rejects appended after the commit, a torn line
    stale = folder / "part-00003-0000.arrow"
    stale.write_bytes(b"not the bytes the resumed run writes")
    (folder / "part-00003-0001.arrow.4242.tmp").write_bytes(b"ARROW1\x00 half")
    (folder / "part-00007-0000.arrow").write_bytes(b"a part of a window that never happened")
    with open(folder / "rejects.jsonl", "ab") as f:
        f.write(b'{"source": "x", "index": 999, "reasons": [{"code": "inva')
    with open(folder / "journal.jsonl", "ab") as f:
        f.write(b'{"kind":"window","window":3,"next_')
    result = run(corpus, tmp_path / "out", resume=True, **KW)
    assert result.resumed and folder_bytes(tmp_path / "out") == expected
    assert not any(p.name.startswith("part-") or p.name.endswith(".tmp") for p in (tmp_path / "out").iterdir())


def test_a_committed_part_that_is_missing_is_refused(corpus: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    folder = killed_run(corpus, tmp_path / "out", "window:2", monkeypatch)
    (folder / "part-00001-0000.arrow").unlink()
    with pytest.raises(InputError, match=r"shard part part-00001-0000.arrow is missing; run again without --resume"):
        run(corpus, tmp_path / "out", resume=True, **KW)


def test_resume_with_nothing_to_resume_starts_afresh_and_says_so(
        corpus: Path, tmp_path: Path, expected: dict[str, str], caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.WARNING, logger="sftdata.prepare")
    result = run(corpus, tmp_path / "a", resume=True, **KW)  # no a.incomplete at all
    assert not result.resumed and folder_bytes(tmp_path / "a") == expected
    (message,) = caplog.messages
    assert message == f"--resume: nothing to resume ({tmp_path / 'a.incomplete'} does not exist); starting afresh"

    caplog.clear()  # killed before the journal was written (after mkdir)
    folder = killed_run(corpus, tmp_path / "b", "window:0", monkeypatch)
    (folder / "journal.jsonl").unlink()
    (folder / "part-00000-0000.arrow").write_bytes(b"left from the killed run")
    assert not run(corpus, tmp_path / "b", resume=True, **KW).resumed
    assert folder_bytes(tmp_path / "b") == expected
    assert caplog.messages == [f"--resume: nothing to resume ({folder} holds no complete journal); starting afresh"]

    caplog.clear()  # a header torn by a power cut: the same
    folder = killed_run(corpus, tmp_path / "c", "window:0", monkeypatch)
    text = (folder / "journal.jsonl").read_bytes()
    (folder / "journal.jsonl").write_bytes(text[:40])
    assert not run(corpus, tmp_path / "c", resume=True, **KW).resumed
    assert folder_bytes(tmp_path / "c") == expected and "nothing to resume" in caplog.text


def test_resume_with_other_options_or_inputs_refuses_and_names_what_differs(
        corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    killed_run(corpus, out, "window:1", monkeypatch)
    with pytest.raises(InputError, match=r"other inputs or options: option seed: 0 -> 7; option shuffle: True -> "
                                         r"False\. Run without --resume to start over"):
        run(corpus, out, resume=True, seed=7, shuffle=False, **KW)
    with pytest.raises(InputError, match=r"option rows_per_shard: 20 -> 21$|option rows_per_shard: 20 -> 21\."):
        run(corpus, out, resume=True, **{**KW, "rows_per_shard": 21})
    original = corpus.read_bytes()
    corpus.write_bytes(original + b'{"messages": []}\n')
    with pytest.raises(InputError, match=rf"input 1 \({corpus}\): content changed, sha256 [0-9a-f]{{12}}… -> "
                                         r"[0-9a-f]{12}…"):
        run(corpus, out, resume=True, **KW)
    corpus.write_bytes(original)
    second = write_corpus(tmp_path / "second.jsonl", 10)
    with pytest.raises(InputError, match=r"inputs: \[.*corpus.jsonl'\] -> \[.*corpus.jsonl', .*second.jsonl'\]"):
        prepare([str(corpus), str(second)], out, config(**KW), resume=True, encoder_factory=FACTORY)
    assert run(corpus, out, resume=True, **KW).resumed  # the original job still resumes


def test_resume_of_another_jobs_finished_folder_names_what_differs(corpus: Path, tmp_path: Path) -> None:
    run(corpus, tmp_path / "out")
    with pytest.raises(ConfigError, match=r"finished folder of another job: option seed: 0 -> 5; choose another --out"):
        run(corpus, tmp_path / "out", seed=5, resume=True)


def test_overwrite_removes_the_manifest_first(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill while `--overwrite` deletes the old folder must never leave it looking finished."""
    import shutil

    run(corpus, tmp_path / "out")
    seen = []

    def rmtree(path: Path, *args: object, **kwargs: object) -> None:
        seen.append(sorted(p.name for p in Path(path).iterdir()))
        raise Crash("killed while deleting")

    monkeypatch.setattr(shutil, "rmtree", rmtree)
    with pytest.raises(Crash):
        prepare([str(corpus)], tmp_path / "out", config(), overwrite=True, encoder_factory=FACTORY)
    assert seen and "manifest.json" not in seen[0] and not (tmp_path / "out" / "manifest.json").exists()


# -- the command line: exit code 2 and the message on stderr ------------------------------------------
TOKENIZER = Path(sftdata.__file__).resolve().parent / "data" / "tokenizer"


def test_cli_resume_refuses_other_options_with_exit_2(tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_bytes((TOKENIZER.parent / "example.jsonl").read_bytes())
    base = [sys.executable, "-m", "sftdata", "prepare", str(data), "--tokenizer", str(TOKENIZER), "--out",
            str(tmp_path / "out"), "--max-length", "256", "--pack-window", "40", "--max-reject-fraction", "0.5"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SFTDATA_CRASH_AT": "window:1"}
    assert subprocess.run(base, env=env, capture_output=True, timeout=300).returncode == -9
    env.pop("SFTDATA_CRASH_AT")
    done = subprocess.run([*base, "--resume", "--max-length", "512"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2
    assert "other inputs or options: option max_length: 256 -> 512" in " ".join(done.stderr.split())
