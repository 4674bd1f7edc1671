"""The embedded default, end to end, with nothing but the installed package: prepare -> audit -> inspect.

The bundled example (`sftdata/data/example.jsonl`: plain chats, tools and tool calls, message names,
reasoning fields, Chinese text, three broken rows) and the bundled tokenizer (`sftdata/data/tokenizer`,
a ChatML template with a reasoning slot and tools) go through the three commands a new user runs,
as subprocesses of `python -m sftdata`, so this is exactly what `sftdata demo` promises without
`../shared`. The audit must prove every document (ids, masks, conservation from the raw rows) and
`inspect` must show a packed row of the folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import sftdata

PACKAGE = Path(sftdata.__file__).resolve().parent
EXAMPLE = PACKAGE / "data" / "example.jsonl"
TOKENIZER = PACKAGE / "data" / "tokenizer"


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "TOKENIZERS_PARALLELISM": "false", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "sftdata", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=env)


def test_prepare_audit_inspect_on_the_bundled_example(tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepared = _run("prepare", str(EXAMPLE), "--tokenizer", str(TOKENIZER), "--out", str(out),
                    "--max-reject-fraction", "0.05", "--json", cwd=tmp_path)
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    summary = json.loads(prepared.stdout)
    counts = summary["counts"]
    assert counts["rejected"] == 3 and counts["docs_written"] == counts["rows_in"] - 3 + counts["split_docs"]

    audited = _run("audit", str(out), "--json", "--report", str(tmp_path / "report.html"), cwd=tmp_path)
    assert audited.returncode == 0, audited.stdout[-3000:] + audited.stderr[-2000:]
    report = json.loads(audited.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    for name in ("ids_match", "mask_match", "conservation", "records_accounted", "doc_has_source",
                 "input_available"):
        assert checks[name]["checked"] > 0 and checks[name]["failed"] == 0, checks[name]
    assert checks["ids_match"]["checked"] == counts["docs_written"]
    assert "mask_unproven" not in checks
    assert report["about"]["mode"] == {"shards_only": False, "allow_unproven": False}
    assert report["about"]["read"]["format"] == "auto" and report["about"]["manifest_version"] == 2
    assert (tmp_path / "report.html").stat().st_size > 10_000

    inspected = _run("inspect", str(out), "--row", "0", cwd=tmp_path)
    assert inspected.returncode == 0, inspected.stderr[-2000:]
    first_doc = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["shards"][0]["file"]
    assert first_doc.startswith("shard-") and "<|im_end|>" in inspected.stdout
