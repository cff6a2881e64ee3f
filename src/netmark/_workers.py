"""Process-pool helpers shared by the reproductions' prefetch and the evaluation's local executor.

Kept out of :mod:`netmark._util`, which every run's cache fingerprint hashes (:mod:`netmark.bench.cache`):
how a pool is stopped does not change what a run computes."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor


def terminate_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate ``pool``'s worker processes, running jobs included (``ProcessPoolExecutor`` has no public way to
    stop them: ``shutdown`` waits for them), so that nothing keeps computing after Ctrl-C or SIGTERM."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()
