"""The one runner of every paper reproduction: trains, derives and caches the runs of a study's plan.

A paper does not subclass it: its ``runs`` module declares a :class:`Runs` (the study, how a data role loads,
which watermark method embeds a run, what a run's record holds, and where the paper departs from the defaults:
its own training of a root run, the data and options of an attack), and :class:`Runner` ``(runs, scale)`` does
the rest, the same way for all of them:

* :meth:`Runner.get` — a run, from the disk cache (:class:`~netmark.bench.cache.RunCache`, keyed by
  :meth:`Runner.fingerprint`) or trained / derived on first use (an attack resolved through ``ATTACKS``);
* :meth:`Runner.prefetch` — the runs the cache lacks, in worker processes (:mod:`netmark.bench.executors`);
* data roles loaded once (:class:`~netmark.bench.roles.Roles`), fresh models (:func:`~netmark.bench.roles.fresh_model`).

:class:`Trained` is one run and its ``results["runs"]`` record. The entry points are in :mod:`netmark.bench.reproduce`
(``run(...)``) and :mod:`netmark.bench.study` (``render(...)``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from netmark.attacks import ATTACKS
from netmark.bench.cache import RunCache, attack_versions, fingerprint, method_part
from netmark.bench.executors import ProcessExecutor
from netmark.bench.roles import Roles, fresh_model
from netmark.bench.study import Study
from netmark.data import ArrayDataset
from netmark.errors import ConfigError
from netmark.keys import WatermarkKey
from netmark.methods import verify
from netmark.methods.base import WatermarkMethod
from netmark.models.registry import model_version
from netmark.training import TrainConfig, check_device, evaluate, train

Progress = Callable[[str], None]
#: part of every on-disk cache fingerprint: bump it when the runner changes how it trains or derives a run in a
#: way the fingerprint's other parts do not show (see :mod:`netmark.bench.cache`).
CACHE_VERSION = 1


# ---------------------------------------------------------------------- defaults of a paper's parts


def nothing(*_: Any) -> None:
    """No method (a plain run), no attack hook."""
    return None


def no_entries(*_: Any) -> dict[str, Any]:
    """No record entries of a run, no results entries of a scale."""
    return {}


def no_extra_keys(spec: Any) -> tuple[str, ...]:
    return ()


def describe_method(runner: Runner, spec: Any) -> str:
    """``plain``, or the name of the method that embeds ``spec``."""
    m = runner.runs.method(runner, spec)
    return "plain" if m is None else m.name


def owner_score(runner: Runner, trained: Trained) -> str:
    """``owner score 0.998 (p 1e-40)``: :func:`netmark.methods.verify` of the run's owner key."""
    res = verify(trained.model, trained.key)  # type: ignore[arg-type]
    return f"owner score {res.score:.4g} (p {res.p_value:.3g})"


def attack_on_run_data(spec: Any) -> str:
    return str(spec.data)


def finetune_options(runner: Runner, spec: Any, attack: str, train: TrainConfig) -> dict[str, Any]:
    """Fine-tuning (``-new-head``: with a fresh classification head) on the run's train seed."""
    return {"train": train, "new_head": str(spec.attack).endswith("-new-head"), "seed": spec.train_seed}


@dataclass(frozen=True)
class Runs:
    """How a study trains its runs: the paper's parts of :class:`Runner` (module-level functions, so that a
    worker process unpickles them by name).

    Attributes:
        study: the :class:`~netmark.bench.study.Study` (plan, schedule, experiments).
        load: ``(runner, role) -> (train, test)``, each data role once.
        key_summary / history_keys: a run record's ``key`` entry and the per-epoch entries it keeps.
        method: ``(runner, spec)`` -> the watermark method that embeds a root run (``None``: a plain model).
        describe / score: the progress lines of a run being trained and of a finished marked run.
        record: ``trained -> dict``, entries of a run's record between ``test_accuracy`` and ``history``.
        train: ``(runner, spec) -> Trained``, where a paper trains a root run itself (``None``: :meth:`Runner.train`).
        method_part: ``(runner, spec)``: what embeds ``spec`` in its cache fingerprint (``None``: the method's).
        model: ``(runner, spec)`` -> the architecture ``spec`` trains (``None``: the scale's ``model``).
        attack_data / attack_options / attack_hook: the data role an attack of ``spec`` trains on, its config
            (default: fine-tuning) and a :class:`~netmark.training.TrainHook` with a ``history`` watching it.
        extra_keys: ``spec`` -> fields of its :class:`Trained` ``extra`` holding further keys (cached too).
        scale_record / seed_record: entries of ``results["scale"]`` / ``results["seeds"]``.
        devices: the reproduction trains and measures on any torch device (others: the CPU only).
    """

    study: Study
    load: Callable[[Runner, str], tuple[ArrayDataset, ArrayDataset]]
    key_summary: Callable[[WatermarkKey], dict[str, Any]]
    history_keys: tuple[str, ...]
    method: Callable[[Runner, Any], WatermarkMethod | None] = nothing
    describe: Callable[[Runner, Any], str] = describe_method
    score: Callable[[Runner, Trained], str] = owner_score
    record: Callable[[Trained], dict[str, Any]] = no_entries
    train: Callable[[Runner, Any], Trained] | None = None
    method_part: Callable[[Runner, Any], dict[str, Any] | None] | None = None
    model: Callable[[Runner, Any], str] | None = None
    attack_data: Callable[[Any], str] = attack_on_run_data
    attack_options: Callable[[Runner, Any, str, TrainConfig], dict[str, Any]] = finetune_options
    attack_hook: Callable[[Trained, ArrayDataset], Any] = nothing
    extra_keys: Callable[[Any], tuple[str, ...]] = no_extra_keys
    scale_record: Callable[[Runner], dict[str, Any]] = no_entries
    seed_record: Callable[[Runner], dict[str, Any]] = no_entries
    devices: bool = False


@dataclass
class Trained:
    """A run of the plan: its model, the owner key it carries (own or inherited; an access run: its transform) and
    ``extra`` keys (an attacker's)."""

    runs: Runs
    spec: Any
    model: nn.Module
    key: WatermarkKey | None
    test: ArrayDataset
    train_size: int
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    test_accuracy: float = float("nan")
    cached: bool = False
    extra: dict[str, WatermarkKey | None] = field(default_factory=dict)
    #: values measured once on the final model (e.g. an access run's authorized accuracy)
    memo: dict[str, Any] = field(default_factory=dict)

    @property
    def owner(self) -> WatermarkKey:
        """The key the run carries (a run of the plan that has none: :class:`ConfigError`)."""
        if self.key is None:
            raise ConfigError(f"run {self.spec.name!r} carries no key")
        return self.key

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "spec": self.spec.to_dict(), "seconds": round(self.seconds, 2), "train_size": self.train_size,
            "test_size": len(self.test), "test_accuracy": self.test_accuracy, **self.runs.record(self),
            **({"from_cache": True} if self.cached else {}),
            "history": [{k: h[k] for k in self.runs.history_keys if k in h} for h in self.history],
        }
        if self.key is not None:
            rec["key"] = self.runs.key_summary(self.key)
        rec.update({n: self.runs.key_summary(k) for n, k in self.extra.items() if k is not None})
        return rec


class Runner:
    """Loads the data of a scale and trains/derives the runs of ``runs.study``'s plan on demand, each once.

    ``cache_dir``: keep trained runs there (:class:`~netmark.bench.cache.RunCache`); ``memo``: values that several
    measurements of one invocation share (a paper's step costs, its attack table)."""

    def __init__(self, runs: Runs, scale: Any, *, data_dir: Any = None, progress: Progress | None = None,
                 cache_dir: Any = None, device: str = "cpu") -> None:
        self.runs, self.study = runs, runs.study
        if device != "cpu" and not runs.devices:
            raise ConfigError(f"the {self.study.title} reproduction runs on the CPU only (device {device!r} asked for)")
        if device != "cpu":
            check_device(device)
        self.scale, self.device, self.data_dir, self.cache_dir = scale, device, data_dir, cache_dir
        self.say: Progress = progress or (lambda _msg: None)
        self.plan: dict[str, Any] = self.study.plan(scale)
        self.cache: dict[str, Trained] = {}
        self.memo: dict[str, Any] = {}
        self.disk = RunCache(cache_dir) if cache_dir is not None else None
        self.roles: Roles[tuple[ArrayDataset, ArrayDataset]] = Roles(lambda role: runs.load(self, role))
        self._fps: dict[str, str] = {}
        self._from_workers: set[str] = set()  # trained by this invocation's prefetch workers

    def data(self, role: str) -> tuple[ArrayDataset, ArrayDataset]:
        """``(train, test)`` of a data role, loaded once."""
        return self.roles(role)

    def model_args(self) -> dict[str, Any]:
        """Extra keyword arguments of ``netmark.models.build`` (the scale's ``model_args``, if any)."""
        return dict(getattr(self.scale, "model_args", ()))

    def model_name(self, spec: Any) -> str:
        return self.runs.model(self, spec) if self.runs.model is not None else str(self.scale.model)

    def fresh_model(self, data: ArrayDataset, seed: int, model: str | None = None) -> nn.Module:
        return fresh_model(model or self.scale.model, data, seed, self.model_args())

    def schedule(self, spec: Any) -> TrainConfig:
        """The study's schedule of ``spec`` (on the CPU: the device is not part of the cache fingerprint)."""
        return self.study.schedule(self.scale, spec)

    def train_config(self, spec: Any) -> TrainConfig:
        """:meth:`schedule` on the runner's device."""
        return replace(self.schedule(spec), device=self.device)

    def trained(self, spec: Any, model: nn.Module, key: WatermarkKey | None, test: ArrayDataset, train_size: int,
                **kw: Any) -> Trained:
        return Trained(self.runs, spec, model, key, test, train_size, **kw)

    def get(self, name: str) -> Trained:
        """The trained model of run ``name`` (from the disk cache, or trained/derived on first use)."""
        if name in self.cache:
            return self.cache[name]
        if name not in self.plan:
            raise ConfigError(f"unknown run {name!r}")
        spec = self.plan[name]
        extras = self.runs.extra_keys(spec)
        hit = self.disk.load(name, self.fingerprint(name), extras) if self.disk is not None else None
        if hit is not None:
            model, key, rec, extra = hit
            trained = self.trained(spec, model, key, self.data(spec.data)[1], int(rec["train_size"]),
                                   history=rec["history"], seconds=float(rec["seconds"]),
                                   cached=name not in self._from_workers, extra=extra)
        else:
            t0 = time.perf_counter()
            trained = self.derive(spec) if spec.parent else (self.runs.train or Runner.train)(self, spec)
            trained.seconds = time.perf_counter() - t0
            if self.disk is not None:
                self.disk.save(name, self.fingerprint(name), trained.model, trained.key,
                               {"run": name, "train_size": trained.train_size, "history": trained.history,
                                "seconds": trained.seconds, "torch_threads": torch.get_num_threads()},
                               {n: trained.extra.get(n) for n in extras})
        trained.model.to(self.device)
        trained.test_accuracy = evaluate(trained.model, trained.test)["accuracy"]
        self.cache[name] = trained
        msg = f"  {name}: {trained.seconds:.0f} s, test accuracy {100 * trained.test_accuracy:.2f}%"
        if trained.key is not None:
            msg += f", {self.runs.score(self, trained)}"
        self.say(msg + (" (from the cache)" if trained.cached else ""))
        return trained

    def announce(self, spec: Any, arch: str, data: ArrayDataset, cfg: TrainConfig) -> None:
        self.say(f"training {spec.name} ({self.runs.describe(self, spec)}): {arch} on {len(data)} {data.name} "
                 f"images, {cfg.epochs} epochs")

    def train(self, spec: Any) -> Trained:
        """A root run: a fresh model trained on the run's data role, embedding with the run's method (if any)."""
        tr, te = self.data(spec.data)
        cfg, arch = self.train_config(spec), self.model_name(spec)
        self.announce(spec, arch, tr, cfg)
        model = self.fresh_model(tr, spec.model_seed, arch)
        method = self.runs.method(self, spec)
        if method is None:
            result, key = train(model, tr, cfg, eval_data=te), None
        else:
            model, key, result = method.embed(model, tr, cfg, seed=spec.key_seed, eval_data=te)
        return self.trained(spec, model, key, te, len(tr), history=result.history)

    def derive(self, spec: Any) -> Trained:
        """A run derived from ``spec.parent`` by the registered attack ``spec.attack`` (``ATTACKS``; a ``-new-head``
        suffix: a fresh classification head) on the paper's attack data, options and hook."""
        parent = self.get(spec.parent)
        tr, te = self.data(self.runs.attack_data(spec))
        cfg = self.train_config(spec)
        self.say(f"attacking {spec.parent} -> {spec.name} ({spec.attack}, {cfg.epochs} epochs on {len(tr)} {tr.name} "
                 f"images, {cfg.optimizer} lr {cfg.lr:g})")
        name = str(spec.attack).removesuffix("-new-head")
        if name not in ATTACKS:
            raise ConfigError(f"unknown attack {spec.attack!r}")
        cls, hook = ATTACKS[name], self.runs.attack_hook(parent, te)
        config = cls.config_cls(**self.runs.attack_options(self, spec, name, cfg))
        attack = cls(config, hooks=(hook,)) if hook is not None else cls(config)  # type: ignore[call-arg]
        model = attack(parent.model, tr)
        return self.trained(spec, model, parent.key, te, len(tr), history=getattr(hook, "history", []),
                            extra={n: getattr(attack, n) for n in self.runs.extra_keys(spec)})

    def fingerprint(self, name: str) -> str:
        """What determines run ``name``'s weights, hashed (see :mod:`netmark.bench.cache`)."""
        if name not in self._fps:
            spec = self.plan[name]
            sched = {k: v for k, v in self.schedule(spec).to_dict().items() if k not in ("progress", "device")}
            arch = self.model_name(spec)
            parts: dict[str, Any] = {"runner": self.study.title, "cache_version": CACHE_VERSION,
                                     "spec": spec.to_dict(), "schedule": sched, "model": arch,
                                     "model_version": model_version(arch), "model_args": self.model_args(),
                                     "data": self.roles.digest(spec.data)}
            if spec.parent:
                parts["parent"] = self.fingerprint(spec.parent)
                parts["attack_versions"] = attack_versions(str(spec.attack))
            elif self.runs.method_part is not None:
                parts["method"] = self.runs.method_part(self, spec)
            else:
                m = self.runs.method(self, spec)
                parts["method"] = None if m is None else method_part(m)
            self._fps[name] = fingerprint(parts)
        return self._fps[name]

    def prefetch(self, names: Iterable[str], jobs: int) -> None:
        """Train the runs ``names`` (and their parents) that the disk cache lacks in ``jobs`` worker processes of
        one torch thread each; later :meth:`get` calls read them back. A derived run starts as soon as its parent
        is in the cache, not after every run of its parent's generation (on a GPU run of the Tartaglione paper
        scale, the fine-tuning of R = 0 waited ~20 minutes for the slowest replica run)."""
        if self.disk is None or jobs < 2:
            return
        todo: list[str] = []
        for n in names:
            chain = [n]
            while parent := self.plan[chain[-1]].parent:
                chain.append(parent)
            for c in chain:
                if (c not in todo and c not in self.cache
                        and not self.disk.has(c, self.fingerprint(c), self.runs.extra_keys(self.plan[c]))):
                    todo.append(c)
        if not todo:
            return
        self.say(f"training {len(todo)} runs in {jobs} worker processes (1 torch thread each, device "
                 f"{self.device}) into {self.cache_dir}")
        # largest messages first: the longest runs start early and the pool stays busy; a derived run waits
        # for its parent only
        todo.sort(key=lambda n: -(getattr(self.plan[n], "bits", None) or 0))
        after = [todo.index(p) if (p := self.plan[n].parent) in todo else None for n in todo]
        jobs_ = [(self.runs, self.scale, self.data_dir, self.cache_dir, n, self.device) for n in todo]
        ex = ProcessExecutor(jobs, threads=1)
        try:
            for name, msg in ex.map(_train_in_worker, jobs_, after):
                self.say(f"  {name}: {msg}")
                self._from_workers.add(name)
        finally:
            ex.close()  # after Ctrl-C / SIGTERM the running runs stop now (a run is cached atomically when it
            # ends, so a stopped one leaves nothing behind and trains again on resuming)


def _train_in_worker(job: tuple[Runs, Any, Any, Any, str, str]) -> tuple[str, str]:
    """Body of a :meth:`Runner.prefetch` worker: train run ``name`` into the disk cache."""
    runs, scale, data_dir, cache_dir, name, device = job
    t = Runner(runs, scale, data_dir=data_dir, cache_dir=cache_dir, device=device).get(name)
    return name, f"{t.seconds:.0f} s in a worker, test accuracy {100 * t.test_accuracy:.2f}%"
