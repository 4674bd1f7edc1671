"""The audit on shards built by hand (pyarrow + a Manifest): passes on good data, and catches every tamper.

The shards here are written by a tiny test writer (regex over the ChatML render, not the project's
mask engine), so these tests need neither `prepare` nor ../shared. Each tamper edits the shard (and
updates the manifest's checksums, where the tamper is in a shard) so that the *content* checks must
find it, and each test asserts the failure names the shard, row, document and token.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from sftdata.audit import audit_prepared
from sftdata.fingerprint import file_sha256
from sftdata.manifest import (
    Counts,
    InputFile,
    Manifest,
    Packing,
    ShardInfo,
    TokenizerInfo,
    shard_name,
)

CONVERSATIONS = [
    {"id": "c0", "messages": [{"role": "user", "content": "What is the capital of France?"},
                              {"role": "assistant", "content": "Paris is the capital."}]},
    {"id": "c1", "messages": [{"role": "system", "content": "Write a poem."},
                              {"role": "user", "content": "The sea."},
                              {"role": "assistant", "content": "The quick brown fox."},
                              {"role": "user", "content": "Hello!"},
                              {"role": "assistant", "content": "How can I help you today?"}]},
    {"id": "c2", "messages": [{"role": "user", "content": "你好，世界"}, {"role": "assistant", "content": "🙂 Hello"}]},
    {"id": "c3", "messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hello"}]},
]
REPLY_RE = re.compile(r"<\|im_start\|>assistant\n(.*?<\|im_end\|>)", re.DOTALL)


def _encode(tok, conv: dict) -> tuple[list[int], list[int]]:
    """Test writer: ids from HF, labels from a regex over the render (independent of both engines)."""
    text = tok.apply_chat_template(conv["messages"], tokenize=False)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    labels = [-100] * len(ids)
    for m in REPLY_RE.finditer(text):
        for i, (a, _) in enumerate(enc["offset_mapping"]):
            if m.start(1) <= a < m.end(1):
                labels[i] = ids[i]
    return ids, labels


def write_folder(tmp: Path, tok, rows_plan: list[list[int]] | None = None, n_shards: int = 2,
                 conversations: list[dict] = CONVERSATIONS) -> Path:
    """A prepared-like folder: input JSONL, tokenizer, shards and manifest (checksums right)."""
    tok_dir = tmp / "tok"
    tok.save_pretrained(tok_dir)
    data = tmp / "data.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in conversations), encoding="utf-8")
    out = tmp / "out"
    out.mkdir()
    docs = [_encode(tok, c) for c in conversations]
    rows_plan = rows_plan or [[0, 2], [1], [3]]
    per_shard = [rows_plan[i::n_shards] for i in range(n_shards)]
    shards = []
    for s, plan in enumerate(per_shard):
        rows = {"input_ids": [], "labels": [], "doc_lens": [], "doc_ids": []}
        for row in plan:
            rows["input_ids"].append([t for d in row for t in docs[d][0]])
            rows["labels"].append([t for d in row for t in docs[d][1]])
            rows["doc_lens"].append([len(docs[d][0]) for d in row])
            rows["doc_ids"].append([conversations[d]["id"] for d in row])
        name = shard_name(s, n_shards)
        write_shard(out / name, rows)
        shards.append(shard_info(out / name))
    tokens = sum(len(d[0]) for d in docs)
    manifest = Manifest(
        sftdata_version="test", fingerprint="f" * 64,
        inputs=[InputFile(path=str(data), sha256=file_sha256(data), format="messages")],
        tokenizer=TokenizerInfo(path=str(tok_dir), files={}), chat_template=tok.chat_template,
        options={"format": "messages", "mask": {"masking": "assistant", "train_eot": True, "train_reasoning": True,
                                                "control_tokens": "sanitize", "template_kwargs": {},
                                                "date": "26 Jul 2024"}, "max_length": 128},
        shards=shards, counts=Counts(rows_in=len(docs), docs_written=len(docs), rejected=0),
        packing=Packing(packed=True, capacity=128, rows=len(rows_plan), tokens=tokens,
                        efficiency=tokens / (128 * len(rows_plan)), lower_bound_rows=1, lower_bound_efficiency=1.0,
                        seed=0),
        max_reject_fraction=0.01, over_reject_limit=False,
    )
    (out / "manifest.json").write_text(manifest.to_json_text(), encoding="utf-8")
    return out


def write_shard(path: Path, rows: dict, meta: dict | None = None) -> None:
    meta = meta or {"sftdata": json.dumps({"format_version": 1, "fingerprint": "f" * 64})}
    schema = pa.schema([pa.field("input_ids", pa.list_(pa.int32())), pa.field("labels", pa.list_(pa.int32())),
                        pa.field("doc_lens", pa.list_(pa.int32())), pa.field("doc_ids", pa.list_(pa.string()))],
                       metadata=meta)
    table = pa.Table.from_pydict(rows, schema=schema)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        writer.write_table(table)


def read_shard(path: Path) -> dict:
    with pa.memory_map(str(path)) as src:
        return pa.ipc.open_stream(src).read_all().to_pydict()


def shard_info(path: Path) -> ShardInfo:
    rows = read_shard(path)
    return ShardInfo(file=path.name, sha256=file_sha256(path), rows=len(rows["input_ids"]),
                     documents=sum(len(d) for d in rows["doc_lens"]), tokens=sum(len(r) for r in rows["input_ids"]),
                     supervised_tokens=sum(sum(1 for x in r if x != -100) for r in rows["labels"]))


def refresh_manifest(folder: Path) -> None:
    """After a tamper: recompute the checksums and counts so only content checks can catch it."""
    manifest = Manifest.load(folder)
    shards = [shard_info(folder / s.file) for s in manifest.shards]
    manifest = manifest.model_copy(update={"shards": shards})
    (folder / "manifest.json").write_text(manifest.to_json_text(), encoding="utf-8")


def tamper(folder: Path, shard: int, edit) -> None:
    path = folder / Manifest.load(folder).shards[shard].file
    rows = read_shard(path)
    edit(rows)
    write_shard(path, rows)
    refresh_manifest(folder)


@pytest.fixture
def folder(tmp_path, test_tokenizer):
    return write_folder(tmp_path, test_tokenizer)


def failures(report, check: str) -> list:
    return [f for f in report.findings.items if f.check == check and f.severity == "error"]


def test_clean_folder_passes(folder):
    report = audit_prepared(folder, sample=2)
    assert report.passed, [f.to_json() for f in report.findings.items if f.severity == "error"]
    checks = {c.name: c for c in report.findings.checks.values()}
    assert checks["mask_match"].checked == len(CONVERSATIONS)
    assert checks["ids_match"].failed == 0
    assert checks["span_end_not_eot"].checked == 5  # one span per assistant turn
    assert report.stats["totals"]["documents"] == 4
    assert len(report.samples) == 2
    assert any(f.check == "template:eot" and "<|im_end|>" in f.message for f in report.probes)


def _first_supervised(labels: list[int]) -> int:
    return next(i for i, x in enumerate(labels) if x != -100)


def test_flip_one_label(folder):
    where = {}

    def edit(rows):
        labels = rows["labels"][0]
        where["p"] = p = _first_supervised(labels) + 1
        where["id"] = rows["input_ids"][0][p]
        labels[p] = labels[p] + 1  # neither -100 nor the id

    tamper(folder, 0, edit)
    report = audit_prepared(folder)
    assert not report.passed
    (f,) = failures(report, "label_not_id")
    assert (f.shard, f.row, f.doc_id, f.position) == ("shard-00000-of-00002.arrow", 0, "c0", where["p"])
    assert f.found == where["id"] + 1 and str(where["id"]) in f.expected


def test_untrain_eot(folder):
    def edit(rows):
        labels = rows["labels"][0]
        end = rows["doc_lens"][0][0]
        eot = max(i for i in range(end) if labels[i] != -100)
        labels[eot] = -100
    tamper(folder, 0, edit)
    report = audit_prepared(folder)
    assert not report.passed
    (span,) = failures(report, "span_end_not_eot")
    assert span.doc_id == "c0" and span.row == 0 and "<|im_end|>" in span.expected
    (mask,) = failures(report, "mask_match")
    assert mask.doc_id == "c0" and mask.expected.startswith("supervised") and "<|im_end|>" in mask.expected


def test_change_id_and_label(folder):
    def edit(rows):
        ids, labels = rows["input_ids"][0], rows["labels"][0]
        p = _first_supervised(labels) + 2
        ids[p] = labels[p] = (ids[p] + 7) % 300
    tamper(folder, 1, edit)
    report = audit_prepared(folder)
    assert not report.passed
    (f,) = failures(report, "ids_match")
    assert f.shard == "shard-00001-of-00002.arrow" and f.doc_id == "c1" and f.row == 0
    assert f.position is not None and f.expected != f.found


def test_train_prompt_token(folder):
    def edit(rows):
        ids, labels = rows["input_ids"][0], rows["labels"][0]
        labels[3] = ids[3]  # a user token
    tamper(folder, 0, edit)
    report = audit_prepared(folder)
    assert not report.passed
    (f,) = failures(report, "mask_match")
    assert f.doc_id == "c0" and f.position == 3 and f.doc_position == 3
    assert f.expected.startswith("not supervised") and f.found.startswith("supervised")


def test_cut_shard_short(folder):
    path = folder / "shard-00000-of-00002.arrow"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    report = audit_prepared(folder)
    assert not report.passed
    (sha,) = failures(report, "shard_sha256")
    assert sha.shard == path.name
    (unreadable,) = failures(report, "shard_readable")
    assert unreadable.shard == path.name


def test_cut_shard_short_with_checksum_updated(folder):
    """A shard cut at a record-batch boundary is still a valid stream: the counts must catch it."""
    def edit(rows):
        for key in rows:
            rows[key] = rows[key][:1]
    tamper(folder, 0, edit)
    manifest = Manifest.load(folder)
    report = audit_prepared(folder)
    assert not report.passed
    names = {f.check for f in report.findings.items if f.severity == "error"}
    assert "manifest_counts" in names and "records_accounted" in names
    assert manifest.counts.docs_written == 4


def test_edit_manifest_options(folder):
    """Say in the manifest that only the last turn is trained: the stored masks no longer match it."""
    manifest = Manifest.load(folder)
    options = json.loads(json.dumps(manifest.options))
    options["mask"]["masking"] = "last"
    (folder / "manifest.json").write_text(manifest.model_copy(update={"options": options}).to_json_text())
    report = audit_prepared(folder)
    assert not report.passed
    (f,) = failures(report, "mask_match")
    assert f.doc_id == "c1" and f.expected.startswith("not supervised")


def test_edit_manifest_template(folder):
    manifest = Manifest.load(folder)
    template = manifest.chat_template.replace("<|im_start|>", "<|im_start|> ")
    (folder / "manifest.json").write_text(manifest.model_copy(update={"chat_template": template}).to_json_text())
    report = audit_prepared(folder)
    assert not report.passed
    assert {f.doc_id for f in failures(report, "ids_match")} >= {"c0"}


def test_doc_first_label(folder):
    def edit(rows):
        ids, labels = rows["input_ids"][0], rows["labels"][0]
        second = rows["doc_lens"][0][0]
        labels[second] = ids[second]  # the first token of the second document is trained

    tamper(folder, 0, edit)
    report = audit_prepared(folder)
    (f,) = failures(report, "doc_first_label")
    assert f.doc_id == "c2" and f.doc_position == 0 and f.expected == -100


def test_doc_lens_do_not_add_up(folder):
    tamper(folder, 1, lambda rows: rows["doc_lens"][0].__setitem__(0, rows["doc_lens"][0][0] - 1))
    report = audit_prepared(folder)
    (f,) = failures(report, "doc_lens_sum")
    assert f.shard == "shard-00001-of-00002.arrow" and f.row == 0 and f.expected == f.found + 1


def test_json_is_one_object(folder, capsys):
    from typer.testing import CliRunner

    from sftdata.cli import app

    result = CliRunner().invoke(app, ["audit", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["passed"] is True and data["kind"] == "sftdata"
    assert {c["name"] for c in data["checks"]} >= {"label_not_id", "mask_match", "shard_sha256"}


def test_cli_exit_code_on_failure(folder):
    from typer.testing import CliRunner

    from sftdata.cli import app

    tamper(folder, 0, lambda rows: rows["labels"][0].__setitem__(3, rows["input_ids"][0][3]))
    result = CliRunner().invoke(app, ["audit", str(folder)])
    assert result.exit_code == 1
    assert "mask_match" in result.output and "shard-00000-of-00002.arrow" in result.output


@pytest.mark.parametrize("tampered", [False, True])
def test_the_console_script_skips_teardown_with_the_verdict_whole_output_and_atexit(folder, tampered):
    """`sftdata audit` ends its process without the interpreter's teardown (`skip_teardown`); the exit code is
    still the verdict, stdout holds the whole JSON, and `atexit` handlers have run and been flushed."""
    if tampered:
        tamper(folder, 0, lambda rows: rows["labels"][0].__setitem__(3, rows["input_ids"][0][3]))
    code = ("import atexit, sys; atexit.register(lambda: sys.stdout.write('atexit ran')); "
            "sys.argv = ['sftdata', 'audit', sys.argv[1], '--json']; from sftdata.cli import main; main()")
    out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=600)
    assert out.returncode == (1 if tampered else 0), out.stderr
    report, after = out.stdout.splitlines()
    assert json.loads(report)["passed"] is (not tampered)
    assert after == "atexit ran"


def test_an_audit_run_in_process_leaves_the_next_main_call_raising(folder, monkeypatch):
    """`skip_teardown` belongs to one run of `main`: after an in-process audit (CliRunner), a later `main()` in the
    same process raises SystemExit as usual instead of ending the process (the test process would vanish)."""
    from typer.testing import CliRunner

    from sftdata.cli import app, main

    assert CliRunner().invoke(app, ["audit", str(folder), "--json"]).exit_code == 0

    def ended(code: int) -> None:
        raise AssertionError(f"main() ended the process with os._exit({code})")

    monkeypatch.setattr(os, "_exit", ended)
    monkeypatch.setattr(sys, "argv", ["sftdata", "--help"])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 0


def test_views_are_vectorised_over_numpy(folder):
    from sftdata.audit.tables import shard_view

    view = shard_view(folder / "shard-00000-of-00002.arrow")
    assert isinstance(view.ids, np.ndarray) and view.n_docs == 3 and view.n_rows == 2
    assert view.doc_ids == ["c0", "c2", "c3"]
    assert view.doc_starts.tolist()[:2] == [0, view.doc_lens[0]]


def test_edit_manifest_counts(folder):
    manifest = Manifest.load(folder)
    counts = manifest.counts.model_copy(update={"docs_written": 5, "rows_in": 5})
    (folder / "manifest.json").write_text(manifest.model_copy(update={"counts": counts}).to_json_text())
    report = audit_prepared(folder, rederive=False)
    docs, rows_in = failures(report, "manifest_counts")  # rows_in is checked against the records in the shards
    assert "counts.docs_written" in docs.message and (docs.expected, docs.found) == (5, 4)
    assert "counts.rows_in" in rows_in.message and (rows_in.expected, rows_in.found) == (5, 4)


def _cut_c1(rows):
    """Cut document c1 (alone in shard 1) inside its last reply, as the `truncate` policy does."""
    labels = rows["labels"][0]
    keep = max(i for i, x in enumerate(labels) if x != -100) - 3  # drop the last reply's end and <|im_end|>
    for key in ("input_ids", "labels"):
        rows[key][0] = rows[key][0][:keep]
    rows["doc_lens"][0] = [keep]


def test_truncated_document_listed_in_manifest_passes(folder):
    tamper(folder, 1, _cut_c1)
    manifest = Manifest.load(folder)
    packing = manifest.packing.model_copy(update={"tokens": sum(s.tokens for s in manifest.shards)})
    manifest = manifest.model_copy(update={"truncated_docs": ["c1"], "packing": packing})
    (folder / "manifest.json").write_text(manifest.to_json_text())
    report = audit_prepared(folder)
    assert report.passed, [f.to_json() for f in report.findings.items if f.severity == "error"]


def test_truncated_document_not_listed_fails(folder):
    tamper(folder, 1, _cut_c1)
    report = audit_prepared(folder)
    assert {f.doc_id for f in failures(report, "span_end_not_eot")} == {"c1"}
    (ids,) = failures(report, "ids_match")
    assert ids.doc_id == "c1" and ids.found == "end of document"


def test_audit_never_loads_the_writer(folder):
    """Independence, checked at runtime: a whole audit imports neither the mask engine nor prepare."""
    import subprocess
    import sys

    code = ("import sys; from sftdata.audit import audit_prepared; r = audit_prepared(sys.argv[1]); "
            "bad = [m for m in sys.modules if m.startswith(('sftdata.chat.engine', 'sftdata.chat.spans', "
            "'sftdata.chat.template', 'sftdata.prepare', 'sftdata.pipeline'))]; print(r.passed, bad)")
    out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "True []", out.stderr[-2000:]


def test_duplicated_doc_ids_pair_with_the_matching_copy(tmp_path, test_tokenizer):
    convs = [{**c, "id": "dup" if i in (0, 3) else c["id"]} for i, c in enumerate(CONVERSATIONS)]
    folder = write_folder(tmp_path, test_tokenizer, rows_plan=[[3, 2], [1], [0]], conversations=convs)
    report = audit_prepared(folder)
    assert report.passed, [f.to_json() for f in report.findings.items if f.severity == "error"]
    assert report.findings.checks["mask_match"].checked == 4
