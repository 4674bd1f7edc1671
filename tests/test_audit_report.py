"""The HTML report: self-contained, complete, and rendered by a real headless Chromium.

The screenshot test needs Debian's `chromium` (`.ci/run` installs it); without it the test skips and
says so. It checks Chromium exits cleanly, writes a non-trivial PNG, and that the DOM it built holds
every section (so the page parsed and laid out, not just downloaded).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import zlib
from pathlib import Path

import pytest
from test_audit import tamper, write_folder

from sftdata.audit import audit_prepared, write_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def report_path(tmp_path_factory, test_tokenizer):
    tmp = tmp_path_factory.mktemp("report")
    folder = write_folder(tmp, test_tokenizer)
    (folder / "rejects.jsonl").write_text(
        '{"source": "data.jsonl", "index": 7, "id": null, "reasons": [{"code": "empty_reply", '
        '"message": "assistant message has no content", "path": "messages[1].content"}], '
        '"raw": {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]}}\n')
    tamper(folder, 0, lambda rows: rows["labels"][0].__setitem__(3, rows["input_ids"][0][3]))
    report = audit_prepared(folder, sample=3)
    return write_html(report, tmp / "audit.html")


def test_report_is_self_contained_and_complete(report_path):
    html = report_path.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "the report must not fetch anything"
    assert "<script" not in html and "@import" not in html
    for section in ("Totals", "Failures, located", "Checks", "What the chat template does", "Shape of the data",
                    "Rejects by reason", "Sampled documents, token by token"):
        assert section in html, section
    assert html.count("<svg") >= 4  # four histograms (plus the packing meter)
    assert "empty_reply" in html and "data.jsonl:7" in html  # rejects by reason, with an example
    assert "mask_match" in html and "shard-00000-of-00002.arrow row 0" in html  # a located failure
    assert '<span class="t s c">&lt;|im_end|&gt;</span>' in html  # a trained control token, boxed
    assert '<span class="t m">' in html  # masked tokens
    assert 'class="t s x" title="the audit says: not trained"' in html  # the tampered token, marked
    assert html.index("fails the audit") < html.index('class="doc"')  # the failing document is shown first


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _png_distinct_rows(data: bytes) -> int:
    """Number of distinct scanlines (a blank page has 1): proves something was drawn."""
    pos, idat = 8, b""
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    width, height = _png_size(data)
    stride = len(raw) // height
    return len({raw[i * stride + 1:(i + 1) * stride] for i in range(height)})


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run does it): "
                    "the headless screenshot of the HTML report is skipped")
def test_report_renders_in_headless_chromium(report_path):
    shot = report_path.with_suffix(".png")
    with tempfile.TemporaryDirectory() as profile:
        run = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--window-size=1280,2200",
                              f"--screenshot={shot}", report_path.as_uri()], capture_output=True, timeout=120)
        assert run.returncode == 0, run.stderr.decode()[-2000:]
        dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", report_path.as_uri()],
                             capture_output=True, timeout=120, text=True)
    data = shot.read_bytes()
    assert _png_size(data) == (1280, 2200)
    assert _png_distinct_rows(data) > 200  # text, charts and tokens, not an empty page
    assert "Sampled documents, token by token" in dom.stdout and dom.stdout.count("<svg") >= 4
    keep = Path(tempfile.gettempdir()) / "sftdata-audit-report.png"
    shutil.copy(shot, keep)  # for a person to look at
