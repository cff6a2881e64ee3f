"""``evaluate(config, out_dir)``: run the grid of an evaluation and write ``out_dir/results.json``.

Two phases of independent jobs (:mod:`netmark.evaluation.cells`), each mapped by the executor:

1. trained models: the baseline, one marked model per method, the independent models, the capacity probes and
   one anti-piracy protected model per transform (:mod:`netmark.evaluation.access`);
2. measurements on them: every (method, sweep, strength) attack cell, each method's overhead and false positives,
   the protected models' attack and piracy cells.

Everything is cached under ``cache_dir`` (default ``out_dir/cache``): an interrupted run resumes where it stopped,
and a rerun with more sweeps or methods computes only the new cells.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from netmark import __version__
from netmark._util import check_writable
from netmark.attacks import ATTACKS
from netmark.bench.executors import Executor, get_executor
from netmark.bench.report import write_json
from netmark.evaluation.access import access_sweeps, assemble_access
from netmark.evaluation.cells import Job, context
from netmark.evaluation.jobs import run_job
from netmark.evaluation.measure import capacity_param
from netmark.evaluation.spec import SCHEMA, EvaluationConfig, Sweep, piracy_attacks
from netmark.methods import get_method

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


def plan_models(config: EvaluationConfig, cache_dir: str) -> list[Job]:
    """Phase 1: the marked models and capacity probes (longest first), the protected models, the baseline, the
    independent models."""
    jobs = [Job("embed", config, cache_dir, m) for m in config.methods]
    for m, options in config.methods.items():
        found = capacity_param(m, options)
        if found is not None:
            jobs += [Job("capacity", config, cache_dir, m, strength=n) for n in config.capacity.get(found[1], ())]
    jobs += [Job("protect", config, cache_dir, kind) for kind in config.access]
    jobs.append(Job("baseline", config, cache_dir))
    return jobs + [Job("independent", config, cache_dir, index=i) for i in range(config.n_independent)]


def _slow_first(jobs: list[tuple[bool, Job]]) -> list[Job]:
    """The jobs marked slow (attacks that train, pair fits) first, so that the pool stays busy to the end."""
    return [j for slow, j in jobs if slow] + [j for slow, j in jobs if not slow]


def _sweep_jobs(kind: str, config: EvaluationConfig, cache_dir: str, method: str,
                sweeps: Iterable[tuple[int, Sweep]]) -> list[tuple[bool, Job]]:
    return [(ATTACKS[s.attack].needs_data, Job(kind, config, cache_dir, method, index=i, strength=v))
            for i, s in sweeps for v in s.strengths]


def plan_measurements(config: EvaluationConfig, cache_dir: str, methods: Iterable[str]) -> list[Job]:
    """Phase 2: attack cells (training attacks first), overhead and false positives of ``methods``."""
    jobs: list[tuple[bool, Job]] = []
    for m in methods:
        jobs += _sweep_jobs("attack", config, cache_dir, m, enumerate(config.sweeps))
        jobs += [(False, Job("overhead", config, cache_dir, m)), (False, Job("false-positives", config, cache_dir, m))]
        if config.forgery:
            jobs.append((True, Job("forgery", config, cache_dir, m)))
    return _slow_first(jobs)


def plan_access(config: EvaluationConfig, cache_dir: str, kinds: Iterable[str]) -> list[Job]:
    """Phase 2 of the protected models ``kinds``: attack cells and piracy attacks (training attacks and pair fits
    first)."""
    jobs: list[tuple[bool, Job]] = []
    for kind in kinds:
        jobs += _sweep_jobs("access-attack", config, cache_dir, kind, access_sweeps(config))
        jobs += [(p.kind == "pair", Job("piracy", config, cache_dir, kind, piracy=p))
                 for p in piracy_attacks(config, kind)]
    return _slow_first(jobs)


#: the parts of a progress line: (the job kinds they apply to, empty: every kind; the field a result must hold;
#: the text)
_SUMMARY: tuple[tuple[tuple[str, ...], str, Callable[[dict[str, Any]], str]], ...] = (
    ((), "test_accuracy", lambda r: f"accuracy {100 * r['test_accuracy']:.2f}%"),
    ((), "p_value", lambda r: f"p {r['p_value']:.2g}{' (detected)' if r.get('detected') else ''}"),
    (("capacity",), "size",
     lambda r: f"{r['size']} {r['unit']}: {'perfect' if r.get('perfect') else r.get('read', '')}"),
    (("overhead",), "ratio", lambda r: f"step time x{r['ratio']:.2f}"),
    (("false-positives",), "n", lambda r: f"{r['detected']} of {r['n']} independent models detected"),
    (("forgery",), "accepted", lambda r: f"owner's claim {r['row']['owner']}, {r['accepted']} forgeries accepted"),
    (("protect", "access-attack"), "authorized",
     lambda r: f"authorized {100 * r['authorized']:.2f}%, unauthorized {100 * r['unauthorized']:.2f}%"),
    (("piracy",), "mean",
     lambda r: f"accuracy mean {100 * r['mean']:.2f}%, best {100 * r['best']:.2f}% of {r['trials']}"),
)


def _summary(r: dict[str, Any]) -> str:
    if r.get("error"):
        return f"error: {r['error']}"
    return ", ".join(text(r) for kinds, need, text in _SUMMARY
                     if r["kind"] in (kinds or (r["kind"],)) and r.get(need) is not None) or "done"


def _trained(done: list[dict[str, Any]], kind: str, names: Iterable[str]) -> list[str]:
    """``names`` whose phase-1 job of ``kind`` (``embed``, ``protect``) trained without error."""
    failed = {r["method"] for r in done if r["kind"] == kind and r["error"]}
    return [n for n in names if n not in failed]


def _run_phase(ex: Executor, jobs: list[Job], say: Progress, done: list[dict[str, Any]], total: int) -> None:
    for r in ex.map(run_job, jobs):
        done.append(r)
        say(f"[{len(done)}/{total}] {r['job']}: {_summary(r)}{' (cached)' if r.get('cached') else ''}")


def _capacity(name: str, config: EvaluationConfig, probes: list[dict[str, Any]]) -> dict[str, Any]:
    found = capacity_param(name, config.methods[name])
    if found is None:
        return {"value": None, "unit": None, "note": f"{name} has no payload-size option (bits or size)"}
    param, unit = found
    ladder = config.capacity.get(unit, ())
    if not ladder:
        return {"value": None, "unit": unit, "note": f"no {unit} ladder configured (EvaluationConfig.capacity)"}
    probes = sorted(probes, key=lambda r: r["size"])
    ok = [r["size"] for r in probes if r.get("perfect") and not r.get("error")]
    failed = "; ".join(f"{r['size']}: {r['error'] or r.get('read')}" for r in probes if r["size"] not in ok)
    note = (f"largest {param} of the ladder {list(ladder)} extracted perfectly after embedding with the "
            f"evaluation's schedule" + (f"; not perfect: {failed}" if failed else ""))
    if not ok:
        note = f"no {param} of the ladder {list(ladder)} was extracted perfectly: {failed}"
    return {"value": max(ok) if ok else None, "unit": unit, "note": note, "probes": probes}


def _method_entry(name: str, config: EvaluationConfig, by_kind: dict[tuple[str, str | None], list[dict[str, Any]]],
                  baseline: float | None, base_seconds: float | None) -> dict[str, Any]:
    """``results["methods"][name]``; ``embed_time_ratio``: embedding time over the baseline's training time (both
    wall clock, in whichever worker ran them: rough; it shows what ``overhead_ratio``, a step-time ratio, misses,
    such as calibration models or extra fine-tuning epochs)."""
    emb = by_kind[("embed", name)][0]
    cls = get_method(name)
    mcfg = cls.config_cls.from_dict(config.methods[name])
    black = cls(mcfg).query_verifiable()
    acc = emb.get("test_accuracy")
    over = (by_kind.get(("overhead", name)) or [{}])[0]
    fp = (by_kind.get(("false-positives", name)) or [{}])[0]
    return {
        "black_box": bool(black), "options": mcfg.to_dict(), "error": emb.get("error"),
        "test_accuracy": acc, "fidelity_pp": None if acc is None or baseline is None else 100 * (acc - baseline),
        "p_value": emb.get("p_value"), "detected": emb.get("detected"),
        "capacity": _capacity(name, config, by_kind.get(("capacity", name), [])),
        "overhead_ratio": over.get("ratio"), "overhead": {k: over.get(k) for k in
                                                          ("plain_step_seconds", "marked_step_seconds", "error")},
        "embed_seconds": emb.get("train_seconds"),
        "embed_time_ratio": None if not emb.get("train_seconds") or not base_seconds
        else emb["train_seconds"] / base_seconds,
        "false_positives": {"n": fp.get("n", 0), "detected": fp.get("detected", 0),
                            "min_p_value": fp.get("min_p_value"), "error": fp.get("error")},
    }


#: what an attacked cell records of the attacker's budget (issue 23: :meth:`Context.budget`)
BUDGET_KEYS = ("data", "data_images", "data_fraction", "compute")


def _cell_entry(r: dict[str, Any]) -> dict[str, Any]:
    keys = ("method", "attack", "label", "strength", "test_accuracy", "p_value", "score", "detected", "seconds",
            "error", "task")
    budget: dict[str, Any] = {k: r[k] for k in BUDGET_KEYS if k in r}
    return {**{k: r.get(k) for k in keys}, **budget}


def assemble(config: EvaluationConfig, done: list[dict[str, Any]], *, seconds: float, executor: Executor,
             command: str) -> dict[str, Any]:
    """The ``results.json`` object (schema ``netmark-evaluation/1``) from the jobs' results."""
    by_kind: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for r in done:
        by_kind.setdefault((r["kind"], r["method"]), []).append(r)
    base = by_kind[("baseline", None)][0]
    order = {(m, s.label, v): (i, j, k) for i, m in enumerate(config.methods)
             for j, s in enumerate(config.sweeps) for k, v in enumerate(s.strengths)}
    cells = sorted((r for r in done if r["kind"] == "attack"), key=lambda r: order[(r["method"], r["label"],
                                                                                     r["strength"])])
    return {
        "schema": SCHEMA, "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "netmark_version": __version__, "command": command, "config": config.to_dict(), "alpha": config.alpha,
        "baseline": {"test_accuracy": base.get("test_accuracy"), "seed": config.seed,
                     "train_seconds": base.get("train_seconds")},
        "methods": {m: _method_entry(m, config, by_kind, base.get("test_accuracy"), base.get("train_seconds"))
                    for m in config.methods},
        "sweeps": [s.to_dict() for s in config.sweeps],
        "cells": [_cell_entry(r) for r in cells],
        "access": assemble_access(config, by_kind, base.get("test_accuracy")),
        "forgery": {m: {k: r.get(k) for k in ("row", "accepted", "error", "seconds")}
                    for m in config.methods for r in by_kind.get(("forgery", m), [])},
        "timing": {"seconds": seconds, "cells": len(done), "cached_cells": sum(bool(r.get("cached")) for r in done),
                   "attack_cells": len(cells), "executor": executor.name, "jobs": executor.jobs},
    }


def default_command(config: EvaluationConfig) -> str:
    return (f"netmark evaluate --methods {','.join(config.methods)} --model {config.model} "
            f"--dataset {config.dataset} --preset {config.preset}")


def cache_dir_of(out_dir: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Where :func:`evaluate` keeps its trained runs and measured cells: ``cache_dir``, else ``out_dir/cache``."""
    return Path(cache_dir) if cache_dir is not None else Path(out_dir) / "cache"


def evaluate(config: EvaluationConfig, out_dir: str | Path, *, cache_dir: str | Path | None = None,
             executor: str | Executor = "local", jobs: int = 2, progress: Progress | None = None,
             force: bool = False, command: str | None = None) -> dict[str, Any]:
    """Run the evaluation ``config`` and write ``out_dir/results.json`` (atomically).

    Args:
        config: what to evaluate (:func:`netmark.evaluation.preset` makes one).
        out_dir: output directory (created).
        cache_dir: trained runs and measured cells (default ``out_dir/cache``); a rerun reuses them.
        executor: ``local`` (process pool), ``serial``, ``ray`` or an
            :class:`~netmark.bench.executors.Executor`.
        jobs: worker processes of a named executor.
        progress: called with one line per finished job.
        force: overwrite an existing ``results.json`` (otherwise OutputExistsError before any work).
        command: the command line recorded in the results (default: an equivalent ``netmark evaluate``).

    Returns:
        The results dictionary written to ``results.json``.
    """
    out = Path(out_dir)
    results_path = check_writable(out / "results.json", force)
    ex = get_executor(executor, jobs)
    # absolute: a worker of another executor (a Ray task) may run in another working directory
    cache = str(cache_dir_of(out, cache_dir).resolve())
    say: Progress = progress or log.info
    start = time.perf_counter()
    for role in ("train", "attacker", "test"):  # a missing dataset fails here, before any job
        context(config, cache).data(role)
    models = plan_models(config, cache)
    say(f"evaluating {', '.join(config.methods)} on {config.model}/{config.dataset} ({config.preset} preset): "
        f"{len(models)} model jobs, executor {ex.name} x{ex.jobs}, cache {cache}")
    done: list[dict[str, Any]] = []
    try:
        _run_phase(ex, models, say, done, len(models))
        measures = plan_measurements(config, cache, _trained(done, "embed", config.methods))
        measures += plan_access(config, cache, _trained(done, "protect", config.access))
        _run_phase(ex, measures, say, done, len(models) + len(measures))
    finally:
        if isinstance(executor, str):  # ours: release the workers; an executor passed in stays its caller's
            ex.close()
    results = assemble(config, done, seconds=time.perf_counter() - start, executor=ex,
                       command=command or default_command(config))
    out.mkdir(parents=True, exist_ok=True)
    write_json(results_path, results, force=force)
    say(f"done in {results['timing']['seconds']:.0f} s ({results['timing']['cached_cells']} of "
        f"{results['timing']['cells']} cells from the cache): {results_path}")
    return results
