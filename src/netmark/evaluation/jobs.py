""":func:`run_job`: the one top-level function every executor maps over the jobs of an evaluation.

It dispatches a :class:`~netmark.evaluation.cells.Job` by kind: trained runs to
:mod:`netmark.evaluation.cells`, measured cells to :data:`netmark.evaluation.measure.MEASURES` and
:data:`netmark.evaluation.access.MEASURES`. It lives above all three (they import the cells), so the dispatch is
no import cycle.
"""

from __future__ import annotations

import time
from typing import Any

from netmark.errors import ConfigError, NetmarkError
from netmark.evaluation import access, measure
from netmark.evaluation.cells import JOB_KINDS, Context, Job, context, result_fields, verified


def _run_job_body(ctx: Context, job: Job) -> dict[str, Any]:
    if job.kind in ("baseline", "independent", "embed"):
        t0 = time.perf_counter()
        try:
            model, key, rec = ctx.trained(job.run)
        except NetmarkError as e:
            return {"error": f"{type(e).__name__}: {e}", "cached": False, "seconds": time.perf_counter() - t0}
        out = {"test_accuracy": rec["test_accuracy"], "train_seconds": rec["seconds"], "cached": rec["cached"],
               "error": None, "seconds": time.perf_counter() - t0}
        if key is not None:
            out.update(result_fields(verified(model, key, ctx.cfg.alpha)))
        return out
    return {**measure.MEASURES, **access.MEASURES}[job.kind](ctx, job)


def run_job(job: Job) -> dict[str, Any]:
    """Run (or read from the cache) one cell: the function every executor maps over the jobs."""
    if job.kind not in JOB_KINDS:
        raise ConfigError(f"unknown job kind {job.kind!r}")
    out = _run_job_body(context(job.config, job.cache_dir), job)
    return {"job": job.name, "kind": job.kind, "method": job.method, "index": job.index, "strength": job.strength,
            **out}
