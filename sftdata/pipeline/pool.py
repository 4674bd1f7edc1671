"""Run a stage over batches in order: inline, or in a pool of *spawned* processes.

Why spawn: a process forked after the Rust tokenizer has started its thread pool can deadlock
(the reason Hugging Face prints its TOKENIZERS_PARALLELISM warning). Spawned workers start clean,
so the pool works whatever the user's TOKENIZERS_PARALLELISM is; each loads the tokenizer once
(about 1 s) and keeps it.

Bounded and ordered: at most `2 * workers` batches are in flight (the input is never read ahead
further, so memory stays flat), and results come back in submission order, which is what makes the
output independent of the number of workers.

Ctrl-C (and SIGTERM): workers ignore SIGINT (the terminal sends it to the whole process group); the
parent cancels what is queued, terminates the workers and re-raises, so no process is left behind.
If the parent is killed outright (SIGKILL), each worker notices within 0.5 s that its parent changed
and exits: a spawned worker holds both ends of its task queue, so it would never see EOF.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def _init_worker(parent: int) -> None:
    """Ignore Ctrl-C (the parent decides) and exit if the parent dies (even by SIGKILL)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), name="sftdata-parent-watch", daemon=True).start()


def _watch_parent(parent: int) -> None:
    # a spawned worker holds both ends of its task queue, so it never sees EOF when the parent dies
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _raise_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int = 1) -> Iterator[R]:
    """`map(fn, items)` in order; with `workers > 1`, in spawned processes with bounded read-ahead.

    `fn` must be a picklable module-level function (or `functools.partial` of one).
    """
    if workers <= 1:
        for item in items:
            yield fn(item)
        return
    context = multiprocessing.get_context("spawn")
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                                   initargs=(os.getpid(),))
    pending: deque[Future] = deque()
    previous = None
    if threading.current_thread() is threading.main_thread():  # SIGTERM stops the workers like Ctrl-C does
        previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
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
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminate(executor: ProcessPoolExecutor) -> None:
    """Stop every worker now (Ctrl-C or an error): nothing queued runs, nothing is left behind."""
    processes: dict[Any, Any] = dict(getattr(executor, "_processes", None) or {})
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes.values():
        if process.is_alive():
            process.terminate()
    for process in processes.values():
        process.join(timeout=5)
