"""Forked worker processes for per-file work that holds the GIL: decoding and probing small
images, rendering the demo's images.

Threads do not help there: decoding 1,500 pairs of 64-px JPEGs took 3.5-4.4 s on 2 threads and
2.3-2.5 s on one (2 Intel cores), and 1.3-1.4 s in 2 processes. Workers are forked, not spawned: a
spawned worker re-imports the caller's ``__main__``, which re-runs a Snakemake rule script (or fails
for code read from stdin). Their tasks run only PIL and numpy code, never torch or a GPU.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def usable_cores() -> int:
    """The cores this process may run on (a SLURM or cgroup allocation, not the whole node)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def can_fork(workers: int, tasks: int) -> bool:
    """Whether ``tasks`` tasks are worth ``workers`` forked workers here."""
    return workers >= 2 and tasks >= 2 and "fork" in multiprocessing.get_all_start_methods()


_function: Callable[[Any], Any] | None = None  # a worker's task, set by _start_worker


def _start_worker(function: Callable[[Any], Any], initializer: Callable[..., None] | None,
                  initargs: tuple[Any, ...]) -> None:
    global _function
    _function = function
    if initializer is not None:
        initializer(*initargs)


def _call(item: Any) -> Any:
    if _function is None:
        raise RuntimeError("worker process started without its task")
    return _function(item)


def map_forked(function: Callable[[Item], Result], items: Iterable[Item], workers: int, *,
               initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = ()) -> Iterator[Result]:
    """``function`` over ``items`` in up to ``workers`` forked processes, results in order; an error is
    the earliest failing item's, and the items not started yet are dropped. ``function`` may be any
    callable, a closure over shared memory included: each worker inherits it through fork, and only
    the items and results are pickled. ``initializer(*initargs)`` runs once per worker."""
    items = list(items)
    pool = ProcessPoolExecutor(max_workers=max(1, min(workers, len(items))), mp_context=multiprocessing.get_context("fork"),
                               initializer=_start_worker, initargs=(function, initializer, initargs))
    try:
        yield from pool.map(_call, items)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
