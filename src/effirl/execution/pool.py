"""A pool of fork-server workers that keeps every core busy and streams results as they finish.

``Pool.map(fn, items)`` calls ``fn(worker, item)`` on a free worker, from one thread per lane of each worker (a
worker's server runs one child at a time, and has the next run already when one ends), and yields
``(item, result)`` in completion order. Workers start lazily and in parallel (a valgrind worker takes seconds);
a worker whose server dies is restarted by the worker itself, so one hostile program never stops a batch. The
same interface is offered on a Ray cluster by :class:`effirl.execution.ray_pool.RayPool`
(:func:`effirl.execution.executor.make_pool` chooses).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from effirl.execution.config import SandboxConfig
from effirl.execution.report import IsolationReport
from effirl.execution.worker import Worker, WorkerError

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")
_warned: set[str] = set()
_warn_lock = threading.Lock()


def announce(report: IsolationReport | None) -> None:
    """Say once per process what isolation the workers have; loudly when it is incomplete."""
    if report is None:
        return
    text = report.describe()
    with _warn_lock:
        if text in _warned:
            return
        _warned.add(text)
    if report.full:
        log.info(text)
    else:
        log.warning(text)


class Pool:
    """``workers`` fork servers (native, or under a meter such as callgrind)."""

    def __init__(self, config: SandboxConfig | None = None, meter: Any = None, workers: int | None = None) -> None:
        self.config = config or SandboxConfig()
        self.meter = meter
        n = workers or self.config.workers
        self.workers = [Worker(i, self.config, meter) for i in range(n)]
        self._closed = False

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for w in self.workers:
            w.close()
            w.remove_workdir()

    @staticmethod
    def _ensure(worker: Worker) -> None:
        if worker.ensure_started():
            announce(worker.report)

    def map(self, fn: Callable[[Worker, T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]:
        """Run ``fn(worker, item)`` for every item on the pool; yield results as they complete."""
        todo: queue.Queue[tuple[int, T] | None] = queue.Queue()
        done: queue.Queue[tuple[int, T, R | None, BaseException | None]] = queue.Queue()
        count = 0
        for i, item in enumerate(items):
            todo.put((i, item))
            count += 1
        if count == 0:
            return
        # One thread per lane of every worker (a worker takes that many runs at a time, one child at a time).
        slots = [w for lane in range(max(w.lanes for w in self.workers)) for w in self.workers if lane < w.lanes]
        slots = slots[:count]
        for _ in slots:
            todo.put(None)

        def loop(worker: Worker) -> None:
            while True:
                got = todo.get()
                if got is None:
                    return
                i, item = got
                try:
                    self._ensure(worker)
                    done.put((i, item, fn(worker, item), None))
                except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                    done.put((i, item, None, exc))
                    if isinstance(exc, WorkerError):
                        return

        threads = [threading.Thread(target=loop, args=(w,), daemon=True) for w in slots]
        for t in threads:
            t.start()
        try:
            for _ in range(count):
                _, item, result, exc = done.get()
                if exc is not None:
                    raise exc
                yield item, result  # type: ignore[misc]
        finally:
            while True:  # a consumer that stops early: drop what is left
                try:
                    todo.get_nowait()
                except queue.Empty:
                    break
            for _ in threads:
                todo.put(None)
            for t in threads:
                t.join()
