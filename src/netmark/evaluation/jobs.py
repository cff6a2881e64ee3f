""":func:`run_job`: the one top-level function every executor maps over the jobs of an evaluation.

It dispatches a :class:`~netmark.evaluation.cells.Job` by kind through :data:`JOBS`: trained runs (the baseline,
the marked and independent models, :mod:`netmark.evaluation.cells`; the protected models,
:mod:`netmark.evaluation.access`) and measured cells (:mod:`netmark.evaluation.measure`, the anti-piracy cells of
:mod:`netmark.evaluation.access`). It lives above all three (they import the cells), so the dispatch is no import
cycle.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from netmark.errors import ConfigError, NetmarkError
from netmark.evaluation import access, forgery, measure
from netmark.evaluation.cells import Context, Job, context, failed, result_fields, verified


def trained_job(ctx: Context, job: Job) -> dict[str, Any]:
    """A phase-1 job: its model trained (or read from the run cache) and its record; a marked model's key is
    verified in it, a protected model's authorized and unauthorized accuracy reported."""
    t0 = time.perf_counter()
    model, key = None, None
    try:
        if job.kind == "protect":  # through the module: a test may stand in for the protected model
            rec = access.protected(ctx, str(job.method))[2]
            out = {"authorized": rec["authorized"], "unauthorized": rec["unauthorized"]}
        else:
            model, key, rec = ctx.trained(job.run)
            out = {"test_accuracy": rec["test_accuracy"]}
    except NetmarkError as e:
        return failed(e, time.perf_counter() - t0)
    out.update({"train_seconds": rec["seconds"], "cached": rec["cached"], "error": None,
                "seconds": time.perf_counter() - t0})
    if model is not None and key is not None:
        out.update(result_fields(verified(model, key, ctx.cfg.alpha)))
    return out


#: job kind -> what runs it
JOBS: dict[str, Callable[[Context, Job], dict[str, Any]]] = {
    "baseline": trained_job, "independent": trained_job, "embed": trained_job, "protect": trained_job,
    "capacity": measure.capacity_cell, "attack": measure.attack_cell, "overhead": measure.overhead_cell,
    "false-positives": measure.false_positive_cell, "access-attack": access.access_attack_cell,
    "piracy": access.piracy_cell, "forgery": forgery.forgery_cell,
}


def run_job(job: Job) -> dict[str, Any]:
    """Run (or read from the cache) one cell: the function every executor maps over the jobs."""
    if job.kind not in JOBS:
        raise ConfigError(f"unknown job kind {job.kind!r}")
    out = JOBS[job.kind](context(job.config, job.cache_dir), job)
    return {"job": job.name, "kind": job.kind, "method": job.method, "index": job.index, "strength": job.strength,
            **out}
