"""Where the jobs of an evaluation run: one protocol, a registry of executors by name.

An :class:`Executor` maps a picklable top-level function over picklable jobs and yields the results as they
finish (in completion order; each result names its job). The jobs hand trained models to each other through the
disk cache only, so any executor whose workers see ``cache_dir`` (a shared file system for a cluster) works.

* ``serial``: in this process, one job after another (torch limited to ``threads`` threads while it runs);
* ``local``: a ``spawn`` process pool of ``jobs`` workers with one torch thread each (the default);
* ``ray``: not implemented yet. A Ray executor is a small class: ``ray.init(address)``, ``ray.remote(fn)``
  with ``num_cpus=1``, submit every job, then yield ``ray.get`` of each ``ray.wait``-ed reference; register it
  in :data:`EXECUTORS`.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Protocol, TypeVar, runtime_checkable

import torch

from netmark.errors import ConfigError

J = TypeVar("J")
R = TypeVar("R")


@runtime_checkable
class Executor(Protocol):
    """Runs ``fn`` on every job; ``fn`` and the jobs must be picklable (a module-level function, dataclasses)."""

    name: str
    jobs: int

    def map(self, fn: Callable[[J], R], jobs: Sequence[J]) -> Iterator[R]:
        """``fn(job)`` for every job, yielded as each finishes. An exception in a job propagates from the
        iterator (jobs not yet started are dropped)."""
        ...

    def close(self) -> None:
        """Release the workers (a later :meth:`map` may start new ones)."""
        ...


def _check_workers(jobs: object) -> int:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs must be an integer >= 1, got {jobs!r}")
    return jobs


class SerialExecutor:
    """Every job in this process, in order. ``threads``: torch threads meanwhile (``None``: unchanged); 1, the
    default, gives the same floating-point results as the ``local`` workers."""

    name = "serial"

    def __init__(self, jobs: int = 1, threads: int | None = 1) -> None:
        _check_workers(jobs)  # accepted for the factory signature; one job at a time
        self.jobs = 1
        self.threads = threads

    def close(self) -> None:
        pass

    def map(self, fn: Callable[[J], R], jobs: Sequence[J]) -> Iterator[R]:
        before = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            for job in jobs:
                yield fn(job)
        finally:
            torch.set_num_threads(before)


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


class ProcessExecutor:
    """A ``spawn`` process pool of ``jobs`` workers, ``threads`` torch threads each (spawn: no forked torch
    state, and the same start method on Linux, macOS and Windows)."""

    name = "local"

    def __init__(self, jobs: int = 2, threads: int = 1) -> None:
        self.jobs = _check_workers(jobs)
        self.threads = _check_workers(threads)
        self._pool: ProcessPoolExecutor | None = None

    def map(self, fn: Callable[[J], R], jobs: Sequence[J]) -> Iterator[R]:
        """Runs on a pool kept between calls (workers import torch once), until :meth:`close`."""
        if not jobs:
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker, initargs=(self.threads,))
        pending: set[Future[R]] = {self._pool.submit(fn, j) for j in jobs}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    yield f.result()
        finally:
            for f in pending:
                f.cancel()
            if pending:
                wait(pending)  # the running ones finish (their cells are cached); the rest were cancelled

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _ray(jobs: int = 2) -> Executor:
    installed = importlib.util.find_spec("ray") is not None
    raise ConfigError("the 'ray' executor is not implemented yet" + ("" if installed else " (and ray is not "
                      "installed)") + "; use 'local' (a process pool on this machine) or 'serial'")


#: executor factories by name: ``factory(jobs) -> Executor``.
EXECUTORS: dict[str, Callable[[int], Executor]] = {"local": ProcessExecutor, "serial": SerialExecutor, "ray": _ray}


def get_executor(executor: str | Executor, jobs: int = 2) -> Executor:
    """An executor by name (:data:`EXECUTORS`) with ``jobs`` workers, or ``executor`` itself."""
    if not isinstance(executor, str):
        if not isinstance(executor, Executor):
            raise ConfigError(f"not an executor: {executor!r}")
        return executor
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    return EXECUTORS[executor](_check_workers(jobs))
