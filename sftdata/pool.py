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

Workers that pay (`resolve_workers`): `auto` is cores minus one for the main process (which reads,
validates, packs and writes), and an explicit count is capped the same way: processes never outnumber
cores (`cpu_count`: the affinity mask, a cgroup quota, or `SFTDATA_CPUS`). One worker is no pool: the main
process encodes inline, its Rust tokenizer using every core while Python renders the next chunk. So on 2
cores `--workers 2` runs as `--workers 1`: a pool there pays start-up (imports and a tokenizer load per
worker, ~1.5 s CPU each) and pickling for no extra core; measured before this rule, `--workers 2` took
1.32x the wall and 1.61x the CPU time of `--workers 1` on 2 cores. With a pool each worker's Rust thread
pool gets `cores // workers` threads (at least one), set through `RAYON_NUM_THREADS` /
`TOKENIZERS_PARALLELISM` in the worker's initializer, before its first encode builds the rayon pool, so
workers times tokenizer threads never exceed the cores. An input of one batch never starts a pool.

No process outlives its job: when the map ends (exhausted, failed or interrupted) the workers are joined,
and the `multiprocessing` resource tracker that spawning started is stopped too (it would otherwise linger
until the interpreter exits). `tests/test_chat_tokenizer.py` checks that no child is left 0.5 s after
`prepare` returns.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import chain, islice
from pathlib import Path
from typing import Any, TypeVar

from sftdata.heap import settle_process

T = TypeVar("T")
R = TypeVar("R")


CPUS_ENV = "SFTDATA_CPUS"
"""Overrides the cores sftdata plans for (e.g. a container whose affinity mask shows the whole host)."""


def cpu_count() -> int:
    """Cores this process may use: `SFTDATA_CPUS`, else its affinity mask, lowered to a cgroup CPU quota."""
    if os.environ.get(CPUS_ENV, "").strip().isdigit() and int(os.environ[CPUS_ENV]) >= 1:
        return int(os.environ[CPUS_ENV])
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    try:  # cgroup v2 `cpu.max`: "QUOTA PERIOD" or "max PERIOD"
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return cores


def resolve_workers(workers: int | str, cores: int | None = None) -> int:
    """Worker processes to start: `auto` = cores - 1, the main process keeping one; an explicit count is capped
    the same way, so processes never outnumber cores. 1 means encode inline (see the module docstring)."""
    most = max(1, (cores or cpu_count()) - 1)
    if workers == "auto":
        return most
    return max(1, min(int(workers), most))


def tokenizer_threads(workers: int, cores: int | None = None) -> int:
    """Rust tokenizer threads per worker process so that workers x threads <= cores."""
    return max(1, (cores or cpu_count()) // max(1, workers))


def init_worker(parent: int, threads: int) -> None:
    """In a worker process: size the Rust thread pool, settle the collector for the job (`sftdata.heap`), ignore
    Ctrl-C (the parent decides), and exit if the parent dies (even by SIGKILL)."""
    # read by the tokenizers crate when its first batch builds the global rayon pool, which is after this
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if threads > 1 else "false"
    warnings.filterwarnings("ignore", category=UserWarning, message="tokenizer .*: loading it with transformers")
    settle_process()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # a forked worker inherits the parent's SIGTERM handler, which raises SystemExit: the executor would catch
    # that as the task's result and go on reading tasks, so stopping the pool waited 5 s for each worker
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    threading.Thread(target=_watch_parent, args=(parent,), name="sftdata-parent-watch", daemon=True).start()


def _watch_parent(parent: int) -> None:
    # a spawned worker holds both ends of its task queue, so it never sees EOF when the parent dies
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _raise_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int | str = 1) -> Iterator[R]:
    """`map(fn, items)` in order; with more than one worker (`resolve_workers`), in spawned processes with
    bounded read-ahead.

    `fn` must be a picklable module-level function (or `functools.partial` of one).
    """
    workers = resolve_workers(workers)
    items = iter(items)
    head = list(islice(items, 2)) if workers > 1 else []  # one batch in all: a pool would only add its start-up
    if workers <= 1 or len(head) < 2:
        for item in chain(head, items):
            yield fn(item)
        return
    items = chain(head, items)
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=init_worker, initargs=(os.getpid(), tokenizer_threads(workers)))
    yield from _run_ordered(executor, fn, items, workers)


def forked_map(fn: Callable[[T], R], items: Iterable[T], processes: int,
               initializer: Callable[..., None] | None = None, initargs: tuple = ()) -> Iterator[R]:
    """`map(fn, items)` in order, in `processes` *forked* children, always (even for one item).

    Why fork here: the children inherit what the parent has loaded (a transformers tokenizer, the
    compiled template) for free, where a spawned worker pays imports and a load (seconds) each. It is
    safe for a Rust tokenizer because each child runs its encodes serially (`TOKENIZERS_PARALLELISM`
    is false in the child before its first encode, so the parent's thread pool is never used), and
    `initializer` runs in the child first: the audit sets its memory and time bounds there. Ctrl-C,
    SIGTERM, a dead parent and the end of the map stop the children as `ordered_map` does.
    """
    def init(parent: int) -> None:
        init_worker(parent, 1)
        if initializer is not None:
            initializer(*initargs)

    # the initializer and its arguments are inherited by fork, never pickled
    executor = ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("fork"),
                                   initializer=init, initargs=(os.getpid(),))
    gc.freeze()  # else each child's collector writes to every object it inherited, copying the parent's heap
    try:
        yield from _run_ordered(executor, fn, iter(items), processes)
    finally:
        gc.unfreeze()


def _run_ordered(executor: ProcessPoolExecutor, fn: Callable[[T], R], items: Iterator[T],
                 workers: int) -> Iterator[R]:
    """Submit with at most `2 * workers` in flight, yield in order; stop every worker however it ends."""
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
        processes = list((getattr(executor, "_processes", None) or {}).values())
        executor.shutdown(wait=True, cancel_futures=True)
        for process in processes:  # shutdown joins them; make sure, so none is seen alive after we return
            process.join(timeout=5)
        _stop_resource_tracker()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stop_resource_tracker() -> None:
    """Stop the resource tracker process that spawning started (it holds nothing once the pool is gone)."""
    from multiprocessing import resource_tracker

    tracker = getattr(resource_tracker, "_resource_tracker", None)
    stop = getattr(tracker, "_stop", None)
    if stop is not None and getattr(tracker, "_pid", None) is not None:
        stop()


def _terminate(executor: ProcessPoolExecutor) -> None:
    """Stop every worker now (Ctrl-C or an error): nothing queued runs, nothing is left behind."""
    processes: dict[Any, Any] = dict(getattr(executor, "_processes", None) or {})
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes.values():
        if process.is_alive():
            process.terminate()
    for process in processes.values():
        process.join(timeout=5)
