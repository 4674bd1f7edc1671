"""Named fault points: where the kill tests trace, stop or kill a run of `prepare` (tests only).

A fault point is one call, `fault_point("part.write")`, at a place where a crash leaves a state that
resume must handle: a part half written, a rejects tail not yet committed, a journal line about to
be appended, a shard renamed but no manifest yet. Three environment variables, all unset in normal
runs (then a point costs one dict lookup, ~50 ns; the busiest point, `part.write`, runs a few times
per shard part):

- `SFTDATA_FAULT_TRACE=FILE`: append `NAME:COUNT` to FILE at every point (COUNT is 1-based, per name
  and process), so a test knows where a process was when it was killed from outside.
- `SFTDATA_FAULT_PAUSE=NAME:COUNT`: at that occurrence, run the point's `before_stop` (e.g. flush a
  buffered file, so what a kill would find on disk is really there), append `PAUSED NAME:COUNT` to
  the trace and sleep until killed. The test then sends SIGKILL from outside.
- `SFTDATA_CRASH_AT=NAME`: `crash_point(NAME)` SIGKILLs the process itself (the older in-process form
  used by `tests/test_prepare.py`: `window:N` after window N is committed, `done`, `renamed`, `manifest`).

Points: `start`, `encode`, `reject`, `part.write`, `part.done`, `commit`, `done`, `rewind.parts`,
`rewind.rejects`, `finalize.rename`, `finalize.manifest`, `finalize.folder` (see where they are called).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable

TRACE_ENV = "SFTDATA_FAULT_TRACE"
PAUSE_ENV = "SFTDATA_FAULT_PAUSE"
CRASH_ENV = "SFTDATA_CRASH_AT"

_counts: Counter[str] = Counter()


def fault_point(name: str, before_stop: Callable[[], None] | None = None) -> None:
    """Trace, pause or kill here when the test environment asks for it; otherwise do nothing."""
    env = os.environ
    trace, pause = env.get(TRACE_ENV), env.get(PAUSE_ENV)
    if not (trace or pause):
        return
    _counts[name] += 1
    here = f"{name}:{_counts[name]}"
    if trace:
        _append(trace, here)
    if pause == here:
        if before_stop is not None:
            before_stop()
        if trace:
            _append(trace, f"PAUSED {here}")
        while True:  # until SIGKILL from outside
            time.sleep(60)


def crash_point(name: str) -> None:
    """SIGKILL this process when `SFTDATA_CRASH_AT` names this point (tests only)."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _append(path: str, line: str) -> None:
    # one O_APPEND write per line: lines from a process and its threads never interleave
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{os.getpid()} {line}\n".encode())
    finally:
        os.close(fd)
