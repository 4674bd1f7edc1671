"""`prepare` end to end with a byte-level fake encoder: invariants, determinism, policies, crash safety.

The fake encoder (`FakeEncoder`, importable by spawned workers as `test_prepare:FakeEncoder.load`)
makes one token per UTF-8 byte and supervises the assistant bytes plus an end-of-turn token, so these
tests check the job (windows, packing, shards, rejects, manifest, resume) and not the mask engine,
which has its own tests. `test_prepare_real.py` runs the same job with the real engine.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from sftdata.config import PipelineConfig, resolve_config
from sftdata.errors import ConfigError
from sftdata.fingerprint import file_sha256
from sftdata.manifest import Manifest
from sftdata.prepare import prepare
from sftdata.reasons import Reason
from sftdata.records import Problem
from sftdata.shards import read_shard
from sftdata.tokens import Example

FACTORY = "test_prepare:FakeEncoder.load"

EOT = 3


class FakeEncoder:
    """One token per byte (ids 10..265); role header token 2; EOT 3 after each message."""

    template_text = "fake: <role> bytes <eot>"

    def __init__(self, tokenizer: str, options: object) -> None:
        self.tokenizer = tokenizer

    @classmethod
    def load(cls, tokenizer: str, options: object) -> FakeEncoder:
        return cls(tokenizer, options)

    def encode_batch(self, conversations: list) -> list:
        out: list = []
        for conv in conversations:
            if any("TEMPLATE_BOOM" in m.content for m in conv.messages):
                out.append([Problem(Reason.template_error, "the template raised")])
                continue
            ids, sup = [1], [False]
            for m in conv.messages:
                body = [10 + b for b in m.content.encode("utf-8")]
                train = m.role.value == "assistant"
                ids += [2, *body, EOT]
                sup += [False, *([train] * len(body)), train]
            out.append(Example(np.asarray(ids, dtype=np.int32), np.asarray(sup, dtype=bool)))
        return out


def _row(i: int, rng: np.random.Generator) -> dict:
    user = f"question {i} " + "x" * int(rng.integers(0, 80))
    reply = f"answer {i} " + "y" * int(rng.integers(1, 200))
    return {"id": f"r{i}", "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]}


def write_corpus(path: Path, n: int, bad_every: int = 0, seed: int = 0) -> Path:
    """`n` rows of OpenAI messages; every `bad_every`-th row broken in one of three ways."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        row = _row(i, rng)
        if bad_every and i % bad_every == bad_every - 1:
            kind = (i // bad_every) % 3
            if kind == 0:
                lines.append("{not json")
                continue
            if kind == 1:
                row["messages"][1]["content"] = "  "
            else:
                row["messages"][1]["content"] = "TEMPLATE_BOOM"
        lines.append(json.dumps(row))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def config(**kw: object) -> PipelineConfig:
    return resolve_config(None, {"tokenizer": "fake-tokenizer", "max_length": 512, **kw})


def run(corpus: Path, out: Path, **kw: object):
    resume = kw.pop("resume", False)
    return prepare([str(corpus)], out, config(**kw), resume=resume, encoder_factory=FACTORY)


def folder_bytes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus.jsonl", 600, bad_every=50)


def test_invariants_of_a_prepared_folder(corpus: Path, tmp_path: Path) -> None:
    result = run(corpus, tmp_path / "out")
    m = result.manifest
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "rejects.jsonl", "shard-00000-of-00001.arrow"]
    assert m.counts.rows_in == 600 == m.counts.docs_written + m.counts.rejected
    assert m.counts.rejected == 12
    assert m.counts.reasons == {"invalid_json": 4, "empty_reply": 4, "template_error": 4}
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert len(rejects) == 12 and [r["index"] for r in rejects] == sorted(r["index"] for r in rejects)
    assert Manifest.load(out) == m and (out / "manifest.json").read_text() == m.to_json_text()

    table = read_shard(out / m.shards[0].file)
    assert file_sha256(out / m.shards[0].file) == m.shards[0].sha256
    ids_seen = []
    for row in table.to_pylist():
        ids, labels, lens = row["input_ids"], row["labels"], row["doc_lens"]
        assert len(ids) == len(labels) == sum(lens) <= 512
        starts = np.cumsum([0, *lens[:-1]])
        assert all(labels[s] == -100 for s in starts)  # no document learns from the one before
        assert all(lab in (-100, tok) for lab, tok in zip(labels, ids, strict=True))
        assert len(row["doc_ids"]) == len(lens)
        ids_seen += row["doc_ids"]
    assert len(ids_seen) == len(set(ids_seen)) == m.counts.docs_written
    assert m.packing.tokens == sum(len(r) for r in table.column("input_ids").to_pylist())
    assert m.packing.rows == table.num_rows == m.shards[0].rows
    assert m.packing.efficiency >= m.packing.lower_bound_efficiency - 0.02
    assert m.packing.lower_bound_rows == -(-m.packing.tokens // 512)
    meta = json.loads(table.schema.metadata[b"sftdata"])
    assert meta["fingerprint"] == m.fingerprint


def test_shards_are_readable_by_datasets_and_polars(corpus: Path, tmp_path: Path) -> None:
    import datasets
    import polars as pl

    m = run(corpus, tmp_path / "out").manifest
    path = str(tmp_path / "out" / m.shards[0].file)
    ds = datasets.Dataset.from_file(path)
    assert ds.num_rows == m.shards[0].rows and ds.column_names == ["input_ids", "labels", "doc_lens", "doc_ids"]
    assert pl.read_ipc_stream(path).height == m.shards[0].rows


def test_byte_identical_across_runs_folders_workers_chunks_and_windows(corpus: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFTDATA_CPUS", "3")  # workers=2 is a real pool even on 2 cores (capped at cores - 1)
    reference = run(corpus, tmp_path / "a", pack_window=100, rows_per_shard=20)
    assert len(reference.manifest.shards) > 3  # several windows, several shards each
    expected = folder_bytes(tmp_path / "a")
    assert folder_bytes(run(corpus, tmp_path / "b" / "c", pack_window=100, rows_per_shard=20).out) == expected
    assert folder_bytes(run(corpus, tmp_path / "d", pack_window=100, rows_per_shard=20, chunk_size=7).out) == expected
    assert folder_bytes(run(corpus, tmp_path / "e", pack_window=100, rows_per_shard=20, workers=2,
                            chunk_size=64).out) == expected
    other = folder_bytes(run(corpus, tmp_path / "f", pack_window=100, rows_per_shard=20, seed=1).out)
    assert other != expected and other["rejects.jsonl"] == expected["rejects.jsonl"]


def test_no_pack_writes_one_document_per_row(corpus: Path, tmp_path: Path) -> None:
    m = run(corpus, tmp_path / "out", pack=False).manifest
    table = pa.concat_tables(read_shard(tmp_path / "out" / s.file) for s in m.shards)
    assert table.num_rows == m.counts.docs_written
    assert all(len(x) == 1 for x in table.column("doc_lens").to_pylist())


def test_too_long_reject_and_truncate(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "c.jsonl", 200)
    rejected = run(corpus, tmp_path / "r", max_length=128).manifest
    assert rejected.counts.reasons.get("too_long", 0) > 0 and rejected.truncated_docs == []
    cut = run(corpus, tmp_path / "t", max_length=128, too_long="truncate").manifest
    assert cut.counts.truncated == len(cut.truncated_docs) > 0
    assert cut.counts.rows_in == cut.counts.docs_written + cut.counts.rejected
    table = pa.concat_tables(read_shard(tmp_path / "t" / s.file) for s in cut.shards)
    for row in table.to_pylist():
        start = 0
        for doc_id, n in zip(row["doc_ids"], row["doc_lens"], strict=True):
            assert n <= 128
            if doc_id in cut.truncated_docs:
                assert row["labels"][start + n - 1] != -100  # still ends on a supervised token
            start += n


def test_over_the_reject_limit_still_writes_everything_and_exits_1(corpus: Path, tmp_path: Path) -> None:
    result = run(corpus, tmp_path / "out", max_reject_fraction=0.01)  # 12/600 = 2% rejected
    assert result.exit_code == 1 and result.manifest.over_reject_limit
    assert (tmp_path / "out" / "manifest.json").is_file()
    assert run(corpus, tmp_path / "ok", max_reject_fraction=0.05).exit_code == 0


def test_existing_output_is_never_overwritten_silently(corpus: Path, tmp_path: Path) -> None:
    run(corpus, tmp_path / "out")
    with pytest.raises(ConfigError, match="already exists .*finished sftdata folder.*--overwrite"):
        run(corpus, tmp_path / "out")
    (tmp_path / "junk").mkdir()
    with pytest.raises(ConfigError, match="not a finished sftdata output"):
        run(corpus, tmp_path / "junk")


KILL_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from sftdata.config import resolve_config
    from sftdata.prepare import prepare
    cfg = resolve_config(None, {{"tokenizer": "fake-tokenizer", "max_length": 512, "pack_window": 100,
                                "rows_per_shard": 20, "workers": {workers}}})
    prepare([{corpus!r}], {out!r}, cfg, resume={resume}, encoder_factory={factory!r})
""")


def _run_child(corpus: Path, out: Path, crash_at: str | None, resume: bool, workers: int = 1) -> int:
    script = KILL_SCRIPT.format(tests=str(Path(__file__).parent), corpus=str(corpus), out=str(out),
                                resume=resume, factory=FACTORY, workers=workers)
    env = {**os.environ, "SFTDATA_CRASH_AT": crash_at or "", "SFTDATA_TEST_MARK": str(out),
           "SFTDATA_CPUS": "3"}  # workers=2 is a real pool even on 2 cores (counts are capped at cores - 1)
    return subprocess.run([sys.executable, "-c", script], env=env, timeout=120).returncode


@pytest.mark.parametrize("crash_at", ["window:0", "window:3", "done", "renamed", "manifest"])
def test_killed_run_is_never_finished_and_resumes_byte_identical(corpus: Path, tmp_path: Path, crash_at: str) -> None:
    expected = folder_bytes(run(corpus, tmp_path / "ref", pack_window=100, rows_per_shard=20).out)
    out = tmp_path / "out"
    assert _run_child(corpus, out, crash_at, resume=False) == -signal.SIGKILL
    assert not out.exists()  # a killed run never looks finished
    assert (tmp_path / "out.incomplete").is_dir()
    assert _run_child(corpus, out, None, resume=True) == 0
    assert not (tmp_path / "out.incomplete").exists()
    assert folder_bytes(out) == expected


def test_resume_of_a_finished_run_is_a_no_op(corpus: Path, tmp_path: Path) -> None:
    first = run(corpus, tmp_path / "out")
    before = folder_bytes(tmp_path / "out")
    again = run(corpus, tmp_path / "out", resume=True)
    assert again.resumed and again.manifest == first.manifest and folder_bytes(tmp_path / "out") == before
    with pytest.raises(ConfigError, match="another job"):
        run(corpus, tmp_path / "out", seed=5, resume=True)


def test_resume_twice_after_two_kills(corpus: Path, tmp_path: Path) -> None:
    expected = folder_bytes(run(corpus, tmp_path / "ref", pack_window=100, rows_per_shard=20).out)
    out = tmp_path / "out"
    assert _run_child(corpus, out, "window:1", resume=False) == -signal.SIGKILL
    assert _run_child(corpus, out, "window:4", resume=True) == -signal.SIGKILL
    assert _run_child(corpus, out, None, resume=True) == 0
    assert folder_bytes(out) == expected


def test_resume_refuses_another_jobs_folder(corpus: Path, tmp_path: Path) -> None:
    from sftdata.errors import InputError

    out = tmp_path / "out"
    assert _run_child(corpus, out, "window:1", resume=False) == -signal.SIGKILL
    with pytest.raises(InputError, match="other inputs or options"):
        run(corpus, out, pack_window=100, rows_per_shard=20, seed=7, resume=True)


def _marked_workers(mark: str) -> list[int]:
    """Spawned pool workers started by a child run with SFTDATA_TEST_MARK=mark (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"spawn_main" in (entry / "cmdline").read_bytes() and \
                    f"SFTDATA_TEST_MARK={mark}".encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to list processes")
def test_workers_exit_when_the_parent_is_killed(corpus: Path, tmp_path: Path) -> None:
    import time

    out = tmp_path / "out"
    assert _run_child(corpus, out, "window:1", resume=False, workers=2) == -signal.SIGKILL
    deadline = time.time() + 10
    while _marked_workers(str(out)) and time.time() < deadline:
        time.sleep(0.2)
    assert _marked_workers(str(out)) == []
