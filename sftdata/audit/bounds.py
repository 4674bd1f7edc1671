"""The audit's renders, bounded from outside: a memory ceiling on each worker process, a clock on each render.

The audit renders with transformers' own `apply_chat_template` (its independence from the writer), so
it cannot use the writer's bounded template environment. It bounds that renderer from outside instead:
the re-derivation runs in forked worker processes (`sftdata.pool.forked_map`), and each
worker, before its first task, caps its address space at what it already maps plus
`WORKER_MEMORY_BYTES`, and arms a per-render clock (the manifest's `template_limits.max_render_seconds`,
10 s by default). A render that needs more memory or more time raises `AuditBoundError`, which names
the bound; the audit reports it on that record (`ids_match`: the template raises) and goes on. The
writer's own limits are far tighter (64 Mi characters a string, 1 Mi items), so a template the writer
accepted never comes near these; they are there for a template the writer never ran (an audit with
`--tokenizer`, or an edited manifest).
"""

from __future__ import annotations

import resource
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

DEFAULT_RENDER_SECONDS = 10.0
"""The writer's default `template_limits.max_render_seconds`, for a manifest that does not carry it."""

WORKER_MEMORY_BYTES = 2 << 30
"""Address space each audit worker may add to what it maps when it starts (2 GiB)."""


class AuditBoundError(RuntimeError):
    """A render went past one of the audit's bounds; the message names which."""


_clock_seconds: float | None = None  # set in a worker by `bound_this_process`
_memory_bytes = WORKER_MEMORY_BYTES
_tripped: list[str] | None = None  # collects the bounds hit inside `bounded_for_now`


@contextmanager
def bounded_for_now(render_seconds: float, memory_bytes: int = WORKER_MEMORY_BYTES) -> Iterator[list[str]]:
    """The same bounds in this process for a while (the template probes, which run in the main process);
    the previous limits come back after (a soft limit may be raised again up to the hard one).

    Yields a list that collects the message of every bound hit inside (a probe may swallow the error).
    """
    global _clock_seconds, _memory_bytes, _tripped
    saved = (_clock_seconds, _memory_bytes, _tripped, resource.getrlimit(resource.RLIMIT_AS))
    _tripped = []
    bound_this_process(render_seconds, memory_bytes)
    try:
        yield _tripped
    finally:
        _clock_seconds, _memory_bytes, _tripped, limits = saved
        resource.setrlimit(resource.RLIMIT_AS, limits)


def bound_this_process(render_seconds: float, memory_bytes: int = WORKER_MEMORY_BYTES) -> None:
    """In a worker process, for good: cap its address space and arm the per-render clock of `bounded()`."""
    global _clock_seconds, _memory_bytes
    _clock_seconds, _memory_bytes = render_seconds, memory_bytes
    mapped = _mapped_bytes()
    if mapped is not None:
        ceiling = mapped + memory_bytes
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            ceiling = min(ceiling, hard)
        if soft == resource.RLIM_INFINITY or ceiling < soft:
            resource.setrlimit(resource.RLIMIT_AS, (ceiling, hard))


def _mapped_bytes() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux: no ceiling, the clock still holds
        return None
    return None


def _tripped_error(message: str) -> AuditBoundError:
    if _tripped is not None:
        _tripped.append(message)
    return AuditBoundError(message)


def _on_alarm(_signum: int, _frame: object) -> None:
    raise _tripped_error(f"a render took more than {_clock_seconds:g} s (the audit's clock, "
                         "`template_limits.max_render_seconds`)")


@contextmanager
def bounded() -> Iterator[None]:
    """One render under the bounds: past the clock or out of memory, `AuditBoundError` names the bound."""
    if _tripped:  # inside `bounded_for_now` a template past a bound once is not run again (each try could
        raise AuditBoundError(f"not rendered: {_tripped[0]}")  # take the whole clock)
    timed = _clock_seconds is not None and threading.current_thread() is threading.main_thread()
    if timed:
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, _clock_seconds)
    try:
        yield
    except MemoryError:
        raise _tripped_error(f"a render needed more than the audit's {_memory_bytes / 2**30:g} GiB "
                             "of memory (its address-space ceiling)") from None
    finally:
        if timed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
