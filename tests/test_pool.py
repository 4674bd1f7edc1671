"""The forked pool stops at once: Ctrl-C in the parent ends every worker, busy or not, without waiting."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ["SFTDATA_CPUS"] = "3"  # a real pool of 2 even on 2 cores
    from sftdata.pool import forked_map

    def busy(item):
        time.sleep(60)
        return item

    try:
        for _ in forked_map(busy, range(8), 2):
            pass
    except KeyboardInterrupt:
        print("interrupted", flush=True)
""")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to see the workers")
def test_ctrl_c_stops_forked_workers_at_once():
    """A forked worker inherits the parent's SIGTERM handler (which raises SystemExit, and the executor took that
    for a task's result and went on): stopping the pool then waited 5 s for each worker."""
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        children = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _parent(p) == proc.pid]
        if len(children) >= 2:
            break
        time.sleep(0.1)
    time.sleep(0.5)  # both workers inside their task
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert "interrupted" in out and time.monotonic() - sent < 4, f"{time.monotonic() - sent:.1f} s to stop"


def _parent(entry: Path) -> int | None:
    try:
        return int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None
