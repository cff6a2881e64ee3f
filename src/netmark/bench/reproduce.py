"""A reproduction's ``run(...)``: plan the runs of its study, train them once (:class:`~netmark.bench.runner.Runner`),
measure every experiment, write ``results.json`` and render it (:func:`run_reproduction`, :func:`make_run`)."""

from __future__ import annotations

import importlib
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from netmark import __version__
from netmark._util import check_writable
from netmark.bench.report import write_json
from netmark.bench.runner import Runner, Runs
from netmark.bench.study import Study
from netmark.errors import ConfigError

Progress = Callable[[str], None]


def device_name(device: str) -> str:
    """``device`` as a report states it: ``cpu``, or ``cuda (NVIDIA H100 80GB HBM3)``."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(dev)})"
    return device


def _header(runner: Runner) -> dict[str, Any]:
    """The entries every ``results.json`` / ``runs.json`` opens with."""
    return {"experiment": runner.study.id, "paper": runner.study.paper, "netmark_version": __version__,
            "torch_version": torch.__version__}


def run_reproduction(out_dir: str | Path, *, quick: bool, force: bool, progress: Progress | None, data_dir: Any,
                     scale: Any, declared: Runs, measures: Mapping[str, Callable[[Any, Any], Any]],
                     render: Callable[..., Any], cache_dir: Any = None, jobs: int = 1, device: str = "cpu",
                     runs: Sequence[str] | None = None) -> dict[str, Any]:
    """The body of a paper's ``run(...)``: see e.g. :func:`netmark.experiments.uchida.run`; ``declared.study`` is the
    study (``declared``: the paper's :class:`~netmark.bench.runner.Runs`).

    ``cache_dir``: keep trained runs there and reuse them (:mod:`netmark.bench.cache`); ``jobs``
    > 1 (needs ``cache_dir``) trains the runs in that many worker processes first. ``runs``: train only these
    runs of the plan (and their parents) and write their records to ``out_dir/runs.json`` instead of the report
    (:func:`_run_some`)."""
    out = Path(out_dir)
    results_path = check_writable(out / ("runs.json" if runs is not None else "results.json"), force)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs must be an integer >= 1, got {jobs!r}")
    if jobs > 1 and cache_dir is None:
        raise ConfigError("jobs > 1 trains runs in worker processes that hand them over through the disk cache: "
                          "pass cache_dir (--cache-dir) too")
    study = declared.study
    sc = study.get_scale(scale, quick)
    say: Progress = progress or (lambda _msg: None)
    threads = torch.get_num_threads()
    if getattr(sc, "threads", None) is not None:
        torch.set_num_threads(sc.threads)
    try:
        runner = Runner(declared, sc, data_dir=data_dir, progress=say, cache_dir=cache_dir, device=device)
        if runs is not None:
            partial = _run_some(runner, list(runs), jobs)
            write_json(results_path, partial, force=force)
            say(f"done: {len(partial['runs'])} runs in {results_path} (no report: run without runs to render it)")
            return partial
        results, total = _run_all(runner, measures, jobs)
    finally:
        torch.set_num_threads(threads)
    write_json(results_path, results, force=force)
    render(results_path, out, force=True)
    say(f"done in {total:.0f} s: {results_path}")
    return results


_RUN_DOC = """Reproduce {title} and write ``out_dir/results.json``, ``README.md`` and PNG plots.

    Args:
        out_dir: output directory (created).
        quick: the ``quick`` scale ({quick}) instead of ``cpu``.
        force: overwrite an existing ``results.json`` (otherwise OutputExistsError, before any training).
        progress: called with one line per step (the CLI prints it); training shows tqdm on a terminal.
        data_dir: where the datasets live (see :mod:`netmark.data`).
        scale: a preset name from ``SCALES`` ({scales}) or a custom ``Scale``; overrides ``quick``.
        cache_dir: keep trained runs there and reuse them on the next call (:mod:`netmark.bench.cache`).
        jobs: train the runs in this many worker processes first (needs ``cache_dir``).
        device: torch device to train and measure on (``"cuda"``; reproductions that support it).
        runs: train only these runs of the plan (and their parents) and write ``out_dir/runs.json``, no report.

    Returns:
        The results dictionary that was written to ``results.json``.
    """


def make_run(package: str, study: Study, quick: str, scales: str = "quick/cpu") -> Callable[..., dict[str, Any]]:
    """The ``run(...)`` entry point of the reproduction package ``package`` (declared by ``study``): its
    ``runs.RUNS``, ``measure.MEASURES`` and ``render.render``, imported when called."""

    def run(out_dir: str | Path, *, quick: bool = False, force: bool = False, progress: Progress | None = None,
            data_dir: Any = None, scale: Any = None, cache_dir: Any = None, jobs: int = 1,
            device: str = "cpu", runs: Sequence[str] | None = None) -> dict[str, Any]:
        declared, measure, render = (importlib.import_module(f"{package}.{m}") for m in ("runs", "measure", "render"))
        return run_reproduction(out_dir, quick=quick, force=force, progress=progress, data_dir=data_dir,
                                scale=scale, declared=declared.RUNS, measures=measure.MEASURES,
                                render=render.render, cache_dir=cache_dir, jobs=jobs, device=device, runs=runs)

    run.__doc__ = _RUN_DOC.format(title=study.title, quick=quick, scales=scales)
    run.__module__, run.__qualname__ = f"{package}.runs", "run"
    return run


def _run_some(runner: Runner, names: list[str], jobs: int) -> dict[str, Any]:
    """Train ``names`` (and their parents) into the runner's cache; their records (spec, seconds, test accuracy,
    per-epoch history, key summary). For a scale too big for one machine or one session: the runs can be trained
    in pieces, on several machines sharing the cache, and the report rendered once all are there."""
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"runs must name distinct runs of the plan, got {names}")
    unknown = [n for n in names if n not in runner.plan]
    if unknown:
        raise ConfigError(f"unknown run(s) {', '.join(unknown)}; this scale's runs: {', '.join(runner.plan)}")
    sc = runner.scale
    start = time.perf_counter()
    runner.say(f"{runner.study.title} reproduction, scale {sc.name!r}: training {', '.join(names)} only")
    runner.prefetch(names, jobs)
    for n in names:
        while n:  # the run and its parents (a derived run read back from the cache does not load its parent)
            runner.get(n)
            n = runner.plan[n].parent
    return {**_header(runner), "partial": True, "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "scale": {**sc.to_dict(), "device": device_name(runner.device), "torch_threads": torch.get_num_threads()},
            "requested": names, "runs": {name: t.record() for name, t in runner.cache.items()},
            "timing": {"total_seconds": round(time.perf_counter() - start, 1), "jobs": jobs,
                       "cached_runs": sum(t.cached for t in runner.cache.values())}}


def _run_all(runner: Runner, measures: Mapping[str, Callable[[Any, Any], Any]],
             jobs: int = 1) -> tuple[dict[str, Any], float]:
    sc, say, study = runner.scale, runner.say, runner.study
    experiments = study.experiments
    start = time.perf_counter()
    say(f"{study.title} reproduction, scale {sc.name!r}: {sc.model} on {sc.dataset}, host {sc.layer}")
    runner.prefetch([r for exp in experiments for r in exp.resolve_runs(sc)], jobs)
    done: dict[str, Any] = {}
    for exp in experiments:
        for r in exp.resolve_runs(sc):
            runner.get(r)
        t0 = time.perf_counter()
        say(f"[{exp.paper_ref}] {exp.title}")
        measured = measures[exp.name](runner, exp)
        done[exp.name] = {"paper_ref": exp.paper_ref, "title": exp.title, "paper": exp.paper,
                          "notes": exp.notes, "runs": exp.resolve_runs(sc), "measured": measured,
                          "measure_seconds": round(time.perf_counter() - t0, 2)}
    total = time.perf_counter() - start
    tr, te = runner.data("main")
    results: dict[str, Any] = {
        **_header(runner),
        "python_version": platform.python_version(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": sc.command,
        "quick": sc.name == "quick",
        "scale": {**sc.to_dict(), "train_size_used": len(tr), "test_size": len(te), **runner.runs.scale_record(runner),
                  "torch_threads": torch.get_num_threads(), "device": device_name(runner.device)},
        "seeds": {"model_seed": sc.model_seed, "train_seed": sc.train_seed, "key_seed": sc.key_seed,
                  "split_seed": sc.split_seed, "finetune_seed": sc.train_seed + 1, **runner.runs.seed_record(runner),
                  "independent_model_seeds": [1000 + i for i in range(sc.n_independent)]},
        "runs": {name: t.record() for name, t in runner.cache.items()},
        "experiments": done,
        "timing": {"total_seconds": round(total, 1),
                   "train_seconds": round(sum(t.seconds for t in runner.cache.values()), 1),
                   "cached_runs": sum(t.cached for t in runner.cache.values()), "jobs": jobs},
    }
    return results, total


