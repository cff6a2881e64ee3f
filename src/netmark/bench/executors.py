"""Where the jobs of a study run (an evaluation's cells, a reproduction's prefetched runs): one protocol, a
registry of executors by name.

An :class:`Executor` maps a picklable top-level function over picklable jobs and yields the results as they
finish (in completion order; each result names its job). ``after[i]``: the index of a job that must finish before
job ``i`` starts (a derived run waits for its parent only, not for a whole generation). The jobs hand trained
models to each other through the disk cache only, so any executor whose workers see ``cache_dir`` (a shared file
system for a cluster) works.

* ``serial``: in this process, one job after another (torch limited to ``threads`` threads while it runs);
* ``local``: a ``spawn`` process pool of ``jobs`` workers with one torch thread each (the default);
* ``ray``: Ray tasks of one CPU each (``pip install 'netmark[ray]'``): on the cluster at ``RAY_ADDRESS`` (or an
  ``address`` given), else on a local Ray instance of ``jobs`` CPUs started for the run and stopped after it. On a
  cluster every node needs netmark, the data (``NETMARK_DATA``) and ``cache_dir`` on a shared file system.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch

from netmark._workers import terminate_workers
from netmark.errors import ConfigError

J = TypeVar("J")
R = TypeVar("R")
#: per job, the index of the job it waits for (``None``: none); ``None`` for the whole: no job waits.
After = Sequence[int | None] | None


@runtime_checkable
class Executor(Protocol):
    """Runs ``fn`` on every job; ``fn`` and the jobs must be picklable (a module-level function, dataclasses)."""

    name: str
    jobs: int

    def map(self, fn: Callable[[J], R], jobs: Sequence[J], after: After = None) -> Iterator[R]:
        """``fn(job)`` for every job, yielded as each finishes (job ``i`` starts once job ``after[i]`` has
        finished). An exception in a job propagates from the iterator (jobs not yet started are dropped)."""
        ...

    def close(self) -> None:
        """Release the workers (a later :meth:`map` may start new ones)."""
        ...


class _Order:
    """Which jobs may start: job ``i`` once job ``after[i]`` has finished, in the order given."""

    def __init__(self, n: int, after: After) -> None:
        self.after = list(after) if after is not None else [None] * n
        self.waiting = list(range(n))
        self.done: set[int] = set()

    def ready(self) -> list[int]:
        out = [i for i in self.waiting if self.after[i] is None or self.after[i] in self.done]
        self.waiting = [i for i in self.waiting if i not in out]
        return out


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

    def map(self, fn: Callable[[J], R], jobs: Sequence[J], after: After = None) -> Iterator[R]:
        before = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        order = _Order(len(jobs), after)
        try:
            while ready := order.ready():
                for i in ready:
                    yield fn(jobs[i])
                    order.done.add(i)
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
        self._interrupted = False

    def map(self, fn: Callable[[J], R], jobs: Sequence[J], after: After = None) -> Iterator[R]:
        """Runs on a pool kept between calls (workers import torch once), until :meth:`close`."""
        if not jobs:
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker, initargs=(self.threads,))
        pool, order = self._pool, _Order(len(jobs), after)
        pending: dict[Future[R], int] = {pool.submit(fn, jobs[i]): i for i in order.ready()}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    order.done.add(pending.pop(f))
                    yield f.result()
                pending.update({pool.submit(fn, jobs[i]): i for i in order.ready()})
        except (KeyboardInterrupt, SystemExit):
            self._interrupted = True  # Ctrl-C / SIGTERM: close() stops the running jobs instead of awaiting them
            raise
        finally:
            for f in pending:
                f.cancel()
            if pending and not self._interrupted:
                wait(pending)  # the running ones finish (their cells are cached); the rest were cancelled

    def close(self) -> None:
        """Wait for the workers to exit; after an interruption, terminate them first (a cell is written
        atomically, so a job stopped half-way leaves nothing behind and is simply run again on resuming)."""
        if self._pool is not None:
            if self._interrupted:
                terminate_workers(self._pool)
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            self._interrupted = False


def _with_threads(fn: Callable[[J], R], threads: int, job: J) -> R:
    """``fn(job)`` with ``threads`` torch threads (a Ray task's body; module level, so it pickles by reference)."""
    torch.set_num_threads(threads)
    return fn(job)


class RayExecutor:
    """Every job a Ray task with ``num_cpus=1`` (and one torch thread).

    ``address``: a running cluster (``"auto"``, ``"ray://host:10001"``, ...); ``None`` reads ``RAY_ADDRESS`` and,
    when that is unset too, starts a local instance with ``jobs`` CPUs (no dashboard), shut down by :meth:`close`.
    A Ray session this process had already started is used as it is and left running.
    """

    name = "ray"

    def __init__(self, jobs: int = 2, address: str | None = None, threads: int = 1) -> None:
        if importlib.util.find_spec("ray") is None:
            raise ConfigError("the 'ray' executor needs Ray: pip install 'netmark[ray]' (or use --executor local)")
        self.jobs = _check_workers(jobs)
        self.threads = _check_workers(threads)
        self.address = address if address is not None else os.environ.get("RAY_ADDRESS") or None
        self._started = False
        self._task: Any = None

    def _ensure(self) -> Any:
        import ray

        if not ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if self.address is None:
                kw["num_cpus"] = self.jobs
            try:
                ray.init(address=self.address, **kw)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise ConfigError(f"cannot start or reach Ray ({self.address or 'local'}): {e}") from e
            self._started = True
        if self._task is None:
            self._task = ray.remote(num_cpus=1, max_retries=0)(_with_threads)
        return ray

    def map(self, fn: Callable[[J], R], jobs: Sequence[J], after: After = None) -> Iterator[R]:
        if not jobs:
            return
        ray, order = self._ensure(), _Order(len(jobs), after)
        pending: dict[Any, int] = {self._task.remote(fn, self.threads, jobs[i]): i for i in order.ready()}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    order.done.add(pending.pop(ref))
                    pending.update({self._task.remote(fn, self.threads, jobs[i]): i for i in order.ready()})
                    try:
                        yield ray.get(ref)
                    except ray.exceptions.RayTaskError as e:
                        raise e.as_instanceof_cause() from None  # the job's own exception, as the pool raises it
        finally:
            for ref in pending:
                ray.cancel(ref)

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False
            self._task = None


#: executor factories by name: ``factory(jobs) -> Executor``.
EXECUTORS: dict[str, Callable[[int], Executor]] = {"local": ProcessExecutor, "serial": SerialExecutor,
                                                   "ray": RayExecutor}


def get_executor(executor: str | Executor, jobs: int = 2) -> Executor:
    """An executor by name (:data:`EXECUTORS`) with ``jobs`` workers, or ``executor`` itself."""
    if not isinstance(executor, str):
        if not isinstance(executor, Executor):
            raise ConfigError(f"not an executor: {executor!r}")
        return executor
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    return EXECUTORS[executor](_check_workers(jobs))
