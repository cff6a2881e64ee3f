"""Machinery shared by the paper reproductions (``netmark.experiments.<paper>``).

Each paper keeps its own data in its package — the :class:`Scale` fields and presets, the run specs,
the experiments and their measurements, the markdown and figures — and plugs it into the pieces here:

* :func:`pick_scale` — a preset by name or a custom scale (``get_scale`` of each paper);
* :class:`ExperimentBase` — the fields of one table/figure of a paper;
* :class:`TrainedBase` — a trained model of a reproduction and its ``results["runs"]`` record;
* :class:`RunnerBase` — the run cache (:meth:`~RunnerBase.get`; on disk with ``cache_dir``, see
  :mod:`netmark.experiments.cache`), data caching, fresh models and :meth:`~RunnerBase.prefetch` (train
  runs in ``jobs`` worker processes); a paper says how to load a data role, which watermark method trains
  a run and how to derive a run by an attack;
* :func:`run_reproduction` — the ``run(...)`` entry point: checks the output, sets threads, runs every
  experiment, writes ``results.json`` and renders it;
* :func:`render_reproduction` — the ``render(...)`` entry point: reads ``results.json``, checks the
  target, writes the figures and ``README.md``.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import platform
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from netmark import __version__
from netmark._util import atomic_write_text, check_writable, seeded
from netmark._workers import terminate_workers
from netmark.data import ArrayDataset
from netmark.errors import ConfigError
from netmark.experiments.cache import RunCache, attack_versions, fingerprint, method_part, tensor_digest
from netmark.experiments.report import check_render_target, read_results, write_json
from netmark.keys import WatermarkKey
from netmark.methods.base import WatermarkMethod
from netmark.models import build
from netmark.models.registry import model_version
from netmark.training import TrainConfig, check_device, evaluate, train

Progress = Callable[[str], None]


def device_name(device: str) -> str:
    """``device`` as a report states it: ``cpu``, or ``cuda (NVIDIA H100 80GB HBM3)``."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(dev)})"
    return device


def pick_scale(scale: Any, quick: bool, scales: Mapping[str, Any], scale_cls: type, default: str) -> Any:
    """A preset by name (``None``: ``quick`` if ``quick`` else ``default``) or a custom ``scale_cls``."""
    if isinstance(scale, scale_cls):
        return scale
    name = scale if scale is not None else ("quick" if quick else default)
    if name not in scales:
        raise ConfigError(f"unknown scale {name!r}; choose one of {', '.join(scales)}")
    return scales[name]


class MeasureRegistry(dict[str, Callable[[Any, Any], dict[str, Any]]]):
    """A paper's measurements by experiment name (``measure.MEASURES``): decorating a function
    ``(runner, experiment) -> dict`` with the registry registers it under its own name."""

    def __call__(self, fn: Callable[[Any, Any], dict[str, Any]]) -> Callable[[Any, Any], dict[str, Any]]:
        self[fn.__name__] = fn
        return fn


@dataclass(frozen=True)
class ExperimentBase:
    """The fields of one table or figure of a paper (each paper adds ``resolve_runs(scale)``)."""

    name: str
    paper_ref: str
    title: str
    runs: tuple[str, ...]
    paper: dict[str, Any] = field(default_factory=dict)
    notes: str = ""


@dataclass
class TrainedBase:
    """A model of the reproduction, with the owner key it carries (own or inherited)."""

    HISTORY_KEYS: ClassVar[tuple[str, ...]] = ()

    spec: Any
    model: nn.Module
    key: WatermarkKey | None
    test: ArrayDataset
    train_size: int
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    test_accuracy: float = float("nan")
    cached: bool = False

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "spec": self.spec.to_dict(), "seconds": round(self.seconds, 2), "train_size": self.train_size,
            "test_size": len(self.test), "test_accuracy": self.test_accuracy, **self._extra_record(),
            **({"from_cache": True} if self.cached else {}),
            "history": [{k: h[k] for k in self.HISTORY_KEYS if k in h} for h in self.history],
        }
        if self.key is not None:
            rec["key"] = self.key_summary(self.key)
        return rec

    def _extra_record(self) -> dict[str, Any]:
        """Entries of the record between ``test_accuracy`` and ``history``."""
        return {}

    @staticmethod
    def key_summary(key: WatermarkKey) -> dict[str, Any]:
        raise NotImplementedError


class RunnerBase:
    """Loads the data of a scale and trains/derives runs on demand, each once.

    A paper's runner sets the class attributes and implements :meth:`_load`, :meth:`_schedule`,
    :meth:`_method`, :meth:`_describe`, :meth:`_owner_score` (or :meth:`_summary`) and :meth:`_derive` (and the
    results hooks).
    """

    #: "Uchida et al. 2017" — the start of the first progress line.
    TITLE: ClassVar[str] = ""
    #: the paper's :class:`TrainedBase` subclass.
    TRAINED: ClassVar[type[TrainedBase]] = TrainedBase
    #: part of every on-disk cache fingerprint: bump it when the runner changes how it trains or
    #: derives a run in a way the fingerprint's other parts do not show (see :mod:`.cache`).
    CACHE_VERSION: ClassVar[int] = 1
    #: the reproduction trains and measures on any torch device (``device=``); others run on the CPU only.
    DEVICES: ClassVar[bool] = False

    def __init__(self, scale: Any, *, data_dir: Any = None, progress: Progress | None = None,
                 cache_dir: Any = None, device: str = "cpu") -> None:
        if device != "cpu" and not self.DEVICES:
            raise ConfigError(f"the {self.TITLE} reproduction runs on the CPU only (device {device!r} asked for)")
        if device != "cpu":
            check_device(device)
        self.scale = scale
        self.device = device
        self.data_dir = data_dir
        self.cache_dir = cache_dir
        self.say: Progress = progress or (lambda _msg: None)
        self.plan: dict[str, Any] = self._plan(scale)
        self.cache: dict[str, Any] = {}
        self.disk = RunCache(cache_dir) if cache_dir is not None else None
        self._data: dict[str, tuple[ArrayDataset, ArrayDataset]] = {}
        self._digests: dict[str, str] = {}
        self._fps: dict[str, str] = {}
        self._from_workers: set[str] = set()  # trained by this invocation's prefetch workers

    # ------------------------------------------------------------------ per-paper parts

    def _plan(self, scale: Any) -> dict[str, Any]:
        """Every run of ``scale`` by name."""
        raise NotImplementedError

    def _load(self, role: str) -> tuple[ArrayDataset, ArrayDataset]:
        """``(train, test)`` of a data role (called once per role)."""
        raise NotImplementedError

    def _schedule(self, spec: Any) -> TrainConfig:
        raise NotImplementedError

    def train_config(self, spec: Any) -> TrainConfig:
        """:meth:`_schedule` on the runner's device (the device is not part of the cache fingerprint)."""
        return replace(self._schedule(spec), device=self.device)

    def _method(self, spec: Any) -> WatermarkMethod | None:
        """The watermark method that trains ``spec`` (``None``: a plain model)."""
        raise NotImplementedError

    def _describe(self, spec: Any) -> str:
        """What ``spec`` trains, for the progress line (``plain`` / the key)."""
        raise NotImplementedError

    def _summary(self, trained: Any) -> str:
        """The progress line of a finished run: its time, test accuracy and, for a marked run, :meth:`_owner_score`."""
        msg = f"  {trained.spec.name}: {trained.seconds:.0f} s, test accuracy {100 * trained.test_accuracy:.2f}%"
        return msg if trained.key is None else f"{msg}, {self._owner_score(trained)}"

    def _owner_score(self, trained: Any) -> str:
        """How well the owner's key reads in a marked run, for :meth:`_summary` (``owner BER 0.000``)."""
        raise NotImplementedError

    def _derive(self, spec: Any) -> Any:
        """A run derived from ``spec.parent`` by an attack."""
        raise NotImplementedError

    def _method_part(self, spec: Any) -> dict[str, Any] | None:
        """What trains ``spec`` for its cache fingerprint: the method's name, config and ``VERSION``
        (default: :meth:`_method`'s watermark method, :func:`~netmark.experiments.cache.method_part`)."""
        m = self._method(spec)
        return None if m is None else method_part(m)

    def _model_args(self) -> dict[str, Any]:
        """Extra keyword arguments of ``netmark.models.build``."""
        return {}

    def _extra_keys(self, spec: Any) -> tuple[str, ...]:
        """Fields of the run's :class:`TrainedBase` that hold further WatermarkKeys (an attacker's key),
        stored by the disk cache too."""
        return ()

    def _model_name(self, spec: Any) -> str:
        """The architecture that ``spec`` trains (default: the scale's ``model``)."""
        return str(self.scale.model)

    def scale_record(self) -> dict[str, Any]:
        """``results["scale"]`` entries after ``test_size`` (data sizes, host size)."""
        return {}

    def seed_record(self) -> dict[str, Any]:
        """``results["seeds"]`` entries after ``finetune_seed``."""
        return {}

    def done_seconds(self, results: dict[str, Any], total: float) -> float:
        """The duration of the final progress line."""
        return total

    # ------------------------------------------------------------------ shared

    def data(self, role: str) -> tuple[ArrayDataset, ArrayDataset]:
        """``(train, test)`` of a data role, loaded once."""
        if role not in self._data:
            self._data[role] = self._load(role)
        return self._data[role]

    def fresh_model(self, data: ArrayDataset, seed: int, model: str | None = None) -> nn.Module:
        c, h, _ = data.shape
        with seeded(seed):
            return build(model or self.scale.model, in_channels=c, image_size=h, num_classes=data.num_classes,
                         **self._model_args())

    def get(self, name: str) -> Any:
        """The trained model of run ``name`` (from the disk cache, or trained/derived on first use)."""
        if name not in self.cache:
            if name not in self.plan:
                raise ConfigError(f"unknown run {name!r}")
            spec = self.plan[name]
            extras = self._extra_keys(spec)
            hit = self.disk.load(name, self.fingerprint(name), extras) if self.disk is not None else None
            if hit is not None:
                model, key, rec, extra_keys = hit
                more: dict[str, Any] = extra_keys  # the run type's extra key fields, by name
                trained = self.TRAINED(spec, model, key, self.data(spec.data)[1], int(rec["train_size"]),
                                       history=rec["history"], seconds=float(rec["seconds"]),
                                       cached=name not in self._from_workers, **more)
            else:
                t0 = time.perf_counter()
                trained = self._derive(spec) if spec.parent else self._train(spec)
                trained.seconds = time.perf_counter() - t0
                if self.disk is not None:
                    self.disk.save(name, self.fingerprint(name), trained.model, trained.key,
                                   {"run": name, "train_size": trained.train_size, "history": trained.history,
                                    "seconds": trained.seconds, "torch_threads": torch.get_num_threads()},
                                   {n: getattr(trained, n) for n in extras})
            trained.model.to(self.device)
            trained.test_accuracy = evaluate(trained.model, trained.test)["accuracy"]
            self.cache[name] = trained
            self.say(self._summary(trained) + (" (from the cache)" if trained.cached else ""))
        return self.cache[name]

    def data_digest(self, role: str) -> str:
        """sha256 of a data role's training tensors (part of the cache fingerprint)."""
        if role not in self._digests:
            tr = self.data(role)[0]
            self._digests[role] = f"{tr.name}:{tensor_digest(tr.x, tr.y)}"
        return self._digests[role]

    def fingerprint(self, name: str) -> str:
        """What determines run ``name``'s weights, hashed (see :mod:`netmark.experiments.cache`)."""
        if name not in self._fps:
            spec = self.plan[name]
            sched = {k: v for k, v in self._schedule(spec).to_dict().items() if k not in ("progress", "device")}
            parts: dict[str, Any] = {"runner": self.TITLE, "cache_version": self.CACHE_VERSION,
                                     "spec": spec.to_dict(), "schedule": sched, "model": self._model_name(spec),
                                     "model_version": model_version(self._model_name(spec)),
                                     "model_args": self._model_args(), "data": self.data_digest(spec.data)}
            if spec.parent:
                parts["parent"] = self.fingerprint(spec.parent)
                parts["attack_versions"] = attack_versions(str(spec.attack))
            else:
                parts["method"] = self._method_part(spec)
            self._fps[name] = fingerprint(parts)
        return self._fps[name]

    def prefetch(self, names: Iterable[str], jobs: int) -> None:
        """Train the runs ``names`` (and their parents) that the disk cache lacks in ``jobs`` worker
        processes of one torch thread each; later :meth:`get` calls read them back. A derived run starts as
        soon as its parent is in the cache, not after every run of its parent's generation (on a GPU run of
        the Tartaglione paper scale, the fine-tuning of R = 0 waited ~20 minutes for the slowest replica run)."""
        if self.disk is None or jobs < 2:
            return
        todo: list[str] = []
        for n in names:
            chain = [n]
            while self.plan[chain[-1]].parent:
                chain.append(self.plan[chain[-1]].parent)
            for c in chain:
                if (c not in todo and c not in self.cache
                        and not self.disk.has(c, self.fingerprint(c), self._extra_keys(self.plan[c]))):
                    todo.append(c)
        if not todo:
            return
        self.say(f"training {len(todo)} runs in {jobs} worker processes (1 torch thread each, device "
                 f"{self.device}) into {self.cache_dir}")
        # largest messages first: the longest runs start early and the pool stays busy
        waiting = sorted(todo, key=lambda n: -(getattr(self.plan[n], "bits", None) or 0))
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
        try:
            running: dict[Future[str], str] = {}

            def submit_ready() -> None:
                for n in [n for n in waiting if self.plan[n].parent not in waiting
                          and self.plan[n].parent not in running.values()]:
                    waiting.remove(n)
                    running[pool.submit(_train_in_worker, type(self), self.scale, self.data_dir, self.cache_dir,
                                        n, self.device)] = n

            submit_ready()
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for f in done:
                    name = running.pop(f)
                    self.say(f"  {name}: {f.result()}")
                    self._from_workers.add(name)
                submit_ready()
        except (KeyboardInterrupt, SystemExit):
            # Ctrl-C / SIGTERM: the running runs stop now (a run is cached atomically when it ends, so a stopped
            # one leaves nothing behind and trains again on resuming) instead of training on unwatched
            terminate_workers(pool)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _train(self, spec: Any) -> Any:
        tr, te = self.data(spec.data)
        cfg = self.train_config(spec)
        arch = self._model_name(spec)
        self.say(f"training {spec.name} ({self._describe(spec)}): {arch} on {len(tr)} {tr.name} images, "
                 f"{cfg.epochs} epochs")
        model = self.fresh_model(tr, spec.model_seed, arch)
        method = self._method(spec)
        if method is None:
            result = train(model, tr, cfg, eval_data=te)
            key = None
        else:
            model, key, result = method.embed(model, tr, cfg, seed=spec.key_seed, eval_data=te)
        return self.TRAINED(spec, model, key, te, len(tr), history=result.history)


def _train_in_worker(runner_cls: type[RunnerBase], scale: Any, data_dir: Any, cache_dir: Any, name: str,
                     device: str = "cpu") -> str:
    """Body of a :meth:`RunnerBase.prefetch` worker: train ``name`` into the disk cache."""
    torch.set_num_threads(1)
    runner = runner_cls(scale, data_dir=data_dir, cache_dir=cache_dir, device=device)
    t = runner.get(name)
    return f"{t.seconds:.0f} s in a worker, test accuracy {100 * t.test_accuracy:.2f}%"


# ---------------------------------------------------------------------- entry points


def run_reproduction(out_dir: str | Path, *, quick: bool, force: bool, progress: Progress | None, data_dir: Any,
                     scale: Any, get_scale: Callable[[Any, bool], Any], runner_cls: type[RunnerBase],
                     experiments: Sequence[Any], measures: Mapping[str, Callable[[Any, Any], Any]],
                     render: Callable[..., Any], experiment_id: str, paper: str, cache_dir: Any = None,
                     jobs: int = 1, device: str = "cpu", runs: Sequence[str] | None = None) -> dict[str, Any]:
    """The body of a paper's ``run(...)``: see e.g. :func:`netmark.experiments.uchida.run`.

    ``cache_dir``: keep trained runs there and reuse them (:mod:`netmark.experiments.cache`); ``jobs``
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
    sc = get_scale(scale, quick)
    say: Progress = progress or (lambda _msg: None)
    threads = torch.get_num_threads()
    if getattr(sc, "threads", None) is not None:
        torch.set_num_threads(sc.threads)
    try:
        runner = runner_cls(sc, data_dir=data_dir, progress=say, cache_dir=cache_dir, device=device)
        if runs is not None:
            partial = _run_some(runner, list(runs), experiment_id, paper, jobs)
            write_json(results_path, partial, force=force)
            say(f"done: {len(partial['runs'])} runs in {results_path} (no report: run without runs to render it)")
            return partial
        results, total = _run_all(runner, experiments, measures, experiment_id, paper, jobs)
    finally:
        torch.set_num_threads(threads)
    write_json(results_path, results, force=force)
    render(results_path, out, force=True)
    say(f"done in {runner.done_seconds(results, total):.0f} s: {results_path}")
    return results


_RUN_DOC = """Reproduce {title} and write ``out_dir/results.json``, ``README.md`` and PNG plots.

    Args:
        out_dir: output directory (created).
        quick: the ``quick`` scale ({quick}) instead of ``cpu``.
        force: overwrite an existing ``results.json`` (otherwise OutputExistsError, before any training).
        progress: called with one line per step (the CLI prints it); training shows tqdm on a terminal.
        data_dir: where the datasets live (see :mod:`netmark.data`).
        scale: a preset name from ``SCALES`` ({scales}) or a custom ``Scale``; overrides ``quick``.
        cache_dir: keep trained runs there and reuse them on the next call (:mod:`netmark.experiments.cache`).
        jobs: train the runs in this many worker processes first (needs ``cache_dir``).
        device: torch device to train and measure on (``"cuda"``; reproductions that support it).
        runs: train only these runs of the plan (and their parents) and write ``out_dir/runs.json``, no report.

    Returns:
        The results dictionary that was written to ``results.json``.
    """


def make_run(package: str, title: str, quick: str, scales: str = "quick/cpu") -> Callable[..., dict[str, Any]]:
    """The ``run(...)`` entry point of the reproduction package ``package``: its ``runner`` module
    (``Runner``, ``EXPERIMENT_ID``, ``PAPER``), ``spec`` (``get_scale``, ``EXPERIMENTS``), ``measure``
    (``MEASURES``) and ``render`` (``render``), imported when called."""

    def run(out_dir: str | Path, *, quick: bool = False, force: bool = False, progress: Progress | None = None,
            data_dir: Any = None, scale: Any = None, cache_dir: Any = None, jobs: int = 1,
            device: str = "cpu", runs: Sequence[str] | None = None) -> dict[str, Any]:
        runner, spec, measure, render = (importlib.import_module(f"{package}.{m}")
                                         for m in ("runner", "spec", "measure", "render"))
        return run_reproduction(out_dir, quick=quick, force=force, progress=progress, data_dir=data_dir,
                                scale=scale, get_scale=spec.get_scale, runner_cls=runner.Runner,
                                experiments=spec.EXPERIMENTS, measures=measure.MEASURES, render=render.render,
                                experiment_id=runner.EXPERIMENT_ID, paper=runner.PAPER, cache_dir=cache_dir,
                                jobs=jobs, device=device, runs=runs)

    run.__doc__ = _RUN_DOC.format(title=title, quick=quick, scales=scales)
    run.__module__, run.__qualname__ = f"{package}.runner", "run"
    return run


def _run_some(runner: RunnerBase, names: list[str], experiment_id: str, paper: str, jobs: int) -> dict[str, Any]:
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
    runner.say(f"{runner.TITLE} reproduction, scale {sc.name!r}: training {', '.join(names)} only")
    runner.prefetch(names, jobs)
    for n in names:
        while n:  # the run and its parents (a derived run read back from the cache does not load its parent)
            runner.get(n)
            n = runner.plan[n].parent
    return {"experiment": experiment_id, "paper": paper, "partial": True, "netmark_version": __version__,
            "torch_version": torch.__version__, "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "scale": {**sc.to_dict(), "device": device_name(runner.device), "torch_threads": torch.get_num_threads()},
            "requested": names, "runs": {name: t.record() for name, t in runner.cache.items()},
            "timing": {"total_seconds": round(time.perf_counter() - start, 1), "jobs": jobs,
                       "cached_runs": sum(t.cached for t in runner.cache.values())}}


def _run_all(runner: RunnerBase, experiments: Sequence[Any], measures: Mapping[str, Callable[[Any, Any], Any]],
             experiment_id: str, paper: str, jobs: int = 1) -> tuple[dict[str, Any], float]:
    sc, say = runner.scale, runner.say
    start = time.perf_counter()
    say(f"{runner.TITLE} reproduction, scale {sc.name!r}: {sc.model} on {sc.dataset}, host {sc.layer}")
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
        "experiment": experiment_id,
        "paper": paper,
        "netmark_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": sc.command,
        "quick": sc.name == "quick",
        "scale": {**sc.to_dict(), "train_size_used": len(tr), "test_size": len(te), **runner.scale_record(),
                  "torch_threads": torch.get_num_threads(), "device": device_name(runner.device)},
        "seeds": {"model_seed": sc.model_seed, "train_seed": sc.train_seed, "key_seed": sc.key_seed,
                  "split_seed": sc.split_seed, "finetune_seed": sc.train_seed + 1, **runner.seed_record(),
                  "independent_model_seeds": [1000 + i for i in range(sc.n_independent)]},
        "runs": {name: t.record() for name, t in runner.cache.items()},
        "experiments": done,
        "timing": {"total_seconds": round(total, 1),
                   "train_seconds": round(sum(t.seconds for t in runner.cache.values()), 1),
                   "cached_runs": sum(t.cached for t in runner.cache.values()), "jobs": jobs},
    }
    return results, total


def render_reproduction(results_json_path: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None, *,
                        force: bool,
                        figures: Sequence[str], draw: Callable[[Path, dict[str, Any]], list[Path]],
                        markdown: Callable[[dict[str, Any]], str]) -> list[Path]:
    """The body of a paper's ``render(...)``: ``draw(out, results)`` writes ``figures``."""
    src = Path(results_json_path)
    res = read_results(src)
    out = Path(out_dir) if out_dir is not None else src.parent
    check_render_target(src, out, ("README.md", *figures), force)
    out.mkdir(parents=True, exist_ok=True)
    written = draw(out, res)
    written.append(atomic_write_text(out / "README.md", markdown(res), force=True))
    return written
