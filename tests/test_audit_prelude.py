"""The conservation process (`sftdata.audit.prelude`): the same verdict as the main process alone, or not used.

It checks conservation while the main process imports transformers. What must hold, whatever the data:
- its pairing of rows with stored documents (`Claims`) is the main process's wherever it does not defer, for any
  re-derivation outcome (a randomised model of the main process's pairing);
- an audit with it gives the same checks, counts and conservation findings as the main process alone, on a clean
  folder, on lost texts and on duplicated doc ids; the main process then checks no row it handled;
- a child that cannot load its tokenizer, or decodes differently, is not used (the main process checks every row);
- a child killed from outside ends the audit with a clear error; no child outlives the audit.
"""

from __future__ import annotations

import json
import os
import random
import signal
from pathlib import Path

import pytest
from test_audit import CONVERSATIONS, write_folder

from sftdata.audit import audit_prepared, prelude
from sftdata.audit.conserve import Conservation
from sftdata.audit.findings import MAX_PER_CHECK, Finding, Findings, Severity
from sftdata.audit.pairing import DEFER, Claims, DocIndex, row_claims
from sftdata.errors import SftdataError
from sftdata.fingerprint import file_sha256
from sftdata.manifest import Manifest


# -- the pairing rule -----------------------------------------------------------------------------------------
class Record:
    def __init__(self, doc_id: str) -> None:
        self.doc_id = doc_id


class Row:
    def __init__(self, ids: list[str]) -> None:
        self.records = [Record(i) for i in ids]


def main_pairing(rows: list[Row], index: DocIndex, rng: random.Random) -> list[list[tuple[int, int]]]:
    """The main process's pairing, with an arbitrary choice where it compares masks (`check_sources`)."""
    from sftdata.audit.pairing import record_jobs

    seen: set[tuple[int, int]] = set()
    out = []
    for row in rows:
        docs = []
        for record in row.records:
            for _, places, _ in record_jobs(record, index):
                free = [p for p in places if p not in seen]
                if free:
                    pick = rng.choice(free)
                    seen.add(pick)
                    docs.append(pick)
        out.append(docs)
    return out


def random_case(rng: random.Random) -> tuple[list[Row], DocIndex]:
    names = [f"r{i}" for i in range(rng.randint(1, 6))]
    index = DocIndex()
    for d in range(rng.randint(0, 12)):  # stored documents: plain ids, `ID#K` turn documents, duplicates
        name = rng.choice(names)
        doc_id = name if rng.random() < 0.7 else f"{name}#{rng.randint(1, 3)}"
        index.full[doc_id].append((0, d))
        if "#" in doc_id:
            index.split[name].append((int(doc_id.split("#")[1]), 0, d))
    rows = [Row([rng.choice(names + [f"{rng.choice(names)}#1"]) for _ in range(rng.randint(1, 2))])
            for _ in range(rng.randint(1, 8))]
    return rows, index


def test_claims_agree_with_the_main_process_wherever_they_do_not_defer():
    rng = random.Random(7)
    deferred = certain = 0
    for _ in range(3000):
        rows, index = random_case(rng)
        claims = Claims()
        mine = [row_claims(row, index, claims) for row in rows]
        for _ in range(3):  # any outcome of the main process's mask comparisons
            theirs = main_pairing(rows, index, rng)
            for docs, truth in zip(mine, theirs, strict=True):
                if docs is not None:
                    assert docs == truth
        deferred += sum(d is None for d in mine)
        certain += sum(d is not None for d in mine)
    assert deferred > 100 and certain > 1000  # both kinds of row were exercised


def test_claims_defer_only_where_a_record_has_a_choice():
    index = DocIndex()
    index.full["a"] += [(0, 0)]
    index.full["b"] += [(0, 1), (0, 2)]
    claims = Claims()
    assert claims.claim(index.full["a"]) == (0, 0)
    assert claims.claim(index.full["a"]) is None  # the only copy is taken: the record is in no shard
    assert claims.claim(index.full["b"]) == DEFER
    assert claims.claim(index.full["b"]) == DEFER  # the copy left depends on what the first one took


def test_findings_merge_counts_in_full_and_keeps_the_cap():
    mine, theirs = Findings(), Findings()
    mine.check("conservation", "d", 3)
    mine.fail(Finding("conservation", Severity.error, "m"))
    theirs.check("conservation", "d", 10)
    for i in range(MAX_PER_CHECK + 5):
        theirs.fail(Finding("conservation", Severity.error, f"t{i}"))
    mine.merge(theirs)
    assert (mine.checks["conservation"].checked, mine.checks["conservation"].failed) == (13, MAX_PER_CHECK + 6)
    assert len([f for f in mine.items if f.check == "conservation"]) == MAX_PER_CHECK


# -- the audit, with and without the child ------------------------------------------------------------------------
def lose_a_text(folder: Path) -> None:
    """The input gains a system prompt the shards never saw (its manifest hash updated): a lost text."""
    manifest = Manifest.load(folder)
    data = Path(manifest.inputs[0].path)
    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]
    rows[1]["messages"][0]["content"] = "A system prompt the writer dropped."
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    inputs = [manifest.inputs[0].model_copy(update={"sha256": file_sha256(data)})]
    (folder / "manifest.json").write_text(manifest.model_copy(update={"inputs": inputs}).to_json_text(),
                                          encoding="utf-8")


def verdict(report) -> tuple:
    checks = {c.name: (c.checked, c.failed, c.skipped) for c in report.findings.checks.values()}
    lost = sorted((f.doc_id, f.message, f.expected) for f in report.findings.items if f.check.startswith("conserv"))
    return checks, lost, report.about["allowed_drops"]


def audit_counting_rows(folder: Path, monkeypatch, cpus: str):
    """The audit with `cpus` cores planned, and how many rows the main process checked for conservation itself."""
    checked: list[int] = []
    pid = os.getpid()
    original = Conservation.check

    def spy(self, rows):
        if os.getpid() == pid:
            checked.append(len(rows))
        return original(self, rows)

    monkeypatch.setenv("SFTDATA_CPUS", cpus)
    monkeypatch.setattr(Conservation, "check", spy)
    report = audit_prepared(folder, sample=0)
    monkeypatch.undo()
    return report, sum(checked)


@pytest.mark.parametrize("case", ["clean", "lost text", "duplicated doc ids"])
def test_the_child_gives_the_main_process_verdict(case, tmp_path, test_tokenizer, monkeypatch):
    convs = CONVERSATIONS
    if case == "duplicated doc ids":
        convs = [{**c, "id": "dup" if i in (0, 3) else c["id"]} for i, c in enumerate(CONVERSATIONS)]
    folder = write_folder(tmp_path, test_tokenizer, rows_plan=[[3, 2], [1], [0]], conversations=convs)
    if case == "lost text":
        lose_a_text(folder)
    alone, rows_alone = audit_counting_rows(folder, monkeypatch, "1")
    shared, rows_shared = audit_counting_rows(folder, monkeypatch, "2")
    assert verdict(shared) == verdict(alone)
    assert shared.passed == (case != "lost text")
    assert rows_alone == len(convs)
    # the child checked every row it could pair; the duplicated id's two rows are the main process's
    assert rows_shared == (2 if case == "duplicated doc ids" else 0)
    if case == "lost text":
        assert any("A system prompt the writer dropped." in str(f.expected) for f in shared.findings.items)


@pytest.mark.parametrize("fault", ["tokenizer does not load", "decodes differently"])
def test_a_child_that_cannot_be_exact_is_not_used(fault, tmp_path, test_tokenizer, monkeypatch):
    folder = write_folder(tmp_path, test_tokenizer)
    lose_a_text(folder)
    reference, _ = audit_counting_rows(folder, monkeypatch, "1")
    if fault == "tokenizer does not load":
        import tokenizers

        real_load, parent = tokenizers.Tokenizer.from_file, os.getpid()

        def broken(path):  # in the child only: transformers loads the same file in the main process
            if os.getpid() != parent:
                raise ValueError("unreadable tokenizer.json")
            return real_load(path)

        monkeypatch.setattr(tokenizers.Tokenizer, "from_file", broken)
    else:  # the child's fingerprint and the main process's differ (as for a tokenizer transformers changed)
        real = prelude.fingerprint
        monkeypatch.setattr(prelude, "fingerprint", lambda backend: f"{real(backend)}{os.getpid()}")
    checked: list[int] = []
    original = Conservation.check
    pid = os.getpid()
    monkeypatch.setattr(Conservation, "check",
                        lambda self, rows: (checked.append(len(rows)) if os.getpid() == pid else None,
                                            original(self, rows))[1])
    monkeypatch.setenv("SFTDATA_CPUS", "2")
    report = audit_prepared(folder, sample=0)
    assert verdict(report) == verdict(reference)
    assert sum(checked) == len(CONVERSATIONS)  # the main process checked every row itself


def _children() -> list[int]:
    me = str(os.getpid())
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if fields[1].decode() == me and fields[0] != b"Z":
                out.append(int(entry))
    return out


def test_a_killed_child_ends_the_audit_with_a_clear_error_and_none_outlives_it(tmp_path, test_tokenizer,
                                                                               monkeypatch):
    folder = write_folder(tmp_path, test_tokenizer)
    monkeypatch.setenv("SFTDATA_CPUS", "2")
    report = audit_prepared(folder, sample=0)
    assert report.passed and _children() == []
    monkeypatch.setattr(prelude, "batches", lambda *a: os.kill(os.getpid(), signal.SIGKILL))  # only the child reads
    with pytest.raises(SftdataError, match=r"conservation process died .* \(SFTDATA_CPUS=1\)"):
        audit_prepared(folder, sample=0)
    assert _children() == []
