"""Run a stage over batches in order: inline, or in a pool of *spawned* processes.

Why spawn: a process forked after the Rust tokenizer has started its thread pool can deadlock
(the reason Hugging Face prints its TOKENIZERS_PARALLELISM warning). Spawned workers start clean,
so the pool works whatever the user's TOKENIZERS_PARALLELISM is; each loads the tokenizer once
(about 1 s) and keeps it.

Bounded and ordered: at most `2 * workers` batches are in flight (the input is never read ahead
further, so memory stays flat), and results come back in submission order, which is what makes the
output independent of the number of workers.

Ctrl-C: workers ignore SIGINT (the terminal sends it to the whole process group); the parent cancels
what is queued, terminates the workers and re-raises, so no process is left behind. If the parent
is killed outright, workers see their task pipe close and exit.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int = 1) -> Iterator[R]:
    """`map(fn, items)` in order; with `workers > 1`, in spawned processes with bounded read-ahead.

    `fn` must be a picklable module-level function (or `functools.partial` of one).
    """
    if workers <= 1:
        for item in items:
            yield fn(item)
        return
    context = multiprocessing.get_context("spawn")
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_ignore_sigint)
    pending: deque[Future] = deque()
    try:
        for item in items:
            pending.append(executor.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    except BaseException:
        _terminate(executor)
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _terminate(executor: ProcessPoolExecutor) -> None:
    """Stop every worker now (Ctrl-C or an error): nothing queued runs, nothing is left behind."""
    processes: dict[Any, Any] = dict(getattr(executor, "_processes", None) or {})
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes.values():
        if process.is_alive():
            process.terminate()
    for process in processes.values():
        process.join(timeout=5)
