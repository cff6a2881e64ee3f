"""The trained runs of a paper reproduction (``netmark.experiments.<paper>``).

* :class:`TrainedBase` — a trained model of a reproduction and its ``results["runs"]`` record;
* :class:`RunnerBase` — the run cache (:meth:`~RunnerBase.get`; on disk with ``cache_dir``, see
  :mod:`netmark.bench.cache`), data roles (:class:`netmark.bench.roles.Roles`), fresh models and
  :meth:`~RunnerBase.prefetch` (train runs in ``jobs`` worker processes of :mod:`netmark.bench.executors`);
  a paper says how to load a data role, which watermark method trains a run and how to derive a run by an attack.

The entry points (``run(...)``, ``render(...)``) and the study declarations are in :mod:`netmark.bench.study`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Generic, TypeVar, cast

import torch
from torch import nn

from netmark.attacks import ATTACKS
from netmark.bench.cache import RunCache, attack_versions, fingerprint, method_part
from netmark.bench.executors import ProcessExecutor
from netmark.bench.roles import Roles, fresh_model
from netmark.bench.spec import RunSpecBase
from netmark.bench.study import Study
from netmark.data import ArrayDataset
from netmark.errors import ConfigError
from netmark.keys import WatermarkKey
from netmark.methods.base import WatermarkMethod
from netmark.models.registry import model_version
from netmark.training import TrainConfig, check_device, evaluate, train

Progress = Callable[[str], None]
ScaleT = TypeVar("ScaleT")
SpecT = TypeVar("SpecT", bound=RunSpecBase)
TrainedT = TypeVar("TrainedT", bound="TrainedBase")


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


class RunnerBase(Generic[ScaleT, SpecT, TrainedT]):
    """Loads the data of a scale and trains/derives runs on demand, each once.

    A paper's runner (``RunnerBase[Scale, RunSpec, Trained]``) sets the class attributes (``STUDY``: the
    :class:`~netmark.bench.study.Study` it runs) and implements :meth:`_load`, :meth:`_method`, :meth:`_describe`,
    :meth:`_owner_score` (or :meth:`_summary`) and where it differs :meth:`_derive` (and the results hooks).
    """

    #: the study: its title, plan, schedule and experiments.
    STUDY: ClassVar[Study]
    #: the paper's :class:`TrainedBase` subclass.
    TRAINED: ClassVar[type[TrainedBase]] = TrainedBase
    #: part of every on-disk cache fingerprint: bump it when the runner changes how it trains or
    #: derives a run in a way the fingerprint's other parts do not show (see :mod:`.cache`).
    CACHE_VERSION: ClassVar[int] = 1
    #: the reproduction trains and measures on any torch device (``device=``); others run on the CPU only.
    DEVICES: ClassVar[bool] = False

    def __init__(self, scale: ScaleT, *, data_dir: Any = None, progress: Progress | None = None,
                 cache_dir: Any = None, device: str = "cpu") -> None:
        if device != "cpu" and not self.DEVICES:
            raise ConfigError(f"the {self.STUDY.title} reproduction runs on the CPU only (device {device!r} asked for)")
        if device != "cpu":
            check_device(device)
        self.scale = scale
        self.device = device
        self.data_dir = data_dir
        self.cache_dir = cache_dir
        self.say: Progress = progress or (lambda _msg: None)
        self.plan: dict[str, SpecT] = self.STUDY.plan(scale)
        self.cache: dict[str, TrainedT] = {}
        self.disk = RunCache(cache_dir) if cache_dir is not None else None
        self.roles: Roles[tuple[ArrayDataset, ArrayDataset]] = Roles(self._load)
        self._fps: dict[str, str] = {}
        self._from_workers: set[str] = set()  # trained by this invocation's prefetch workers

    # ------------------------------------------------------------------ per-paper parts

    def _load(self, role: str) -> tuple[ArrayDataset, ArrayDataset]:
        """``(train, test)`` of a data role (called once per role)."""
        raise NotImplementedError

    def _schedule(self, spec: Any) -> TrainConfig:
        """The training schedule of ``spec`` (the study's ``schedule``)."""
        return self.STUDY.schedule(self.scale, spec)

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
        """A run derived from ``spec.parent`` by the registered attack ``spec.attack`` (``ATTACKS``;
        a ``-new-head`` suffix: a fresh classification head), trained on :meth:`train_config` with the data of
        :meth:`_attack_data`, watched by :meth:`_attack_hook`; fields :meth:`_extra_keys` are read off the attack."""
        parent = self.get(spec.parent or "")
        tr, te = self.data(self._attack_data(spec))
        cfg = self.train_config(spec)
        self.say(f"attacking {spec.parent} -> {spec.name} ({spec.attack}, {cfg.epochs} epochs on {len(tr)} {tr.name} "
                 f"images, {cfg.optimizer} lr {cfg.lr:g})")
        name = str(spec.attack).removesuffix("-new-head")
        if name not in ATTACKS:
            raise ConfigError(f"unknown attack {spec.attack!r}")
        cls, hook = ATTACKS[name], self._attack_hook(parent, te)
        config = cls.config_cls(**self._attack_options(spec, name, cfg))
        attack = cls(config, hooks=(hook,)) if hook is not None else cls(config)  # type: ignore[call-arg]
        model = attack(parent.model, tr)
        return self.TRAINED(spec, model, parent.key, te, len(tr), history=getattr(hook, "history", []),
                            **{n: getattr(attack, n) for n in self._extra_keys(spec)})

    def _attack_data(self, spec: Any) -> str:
        """The data role an attack of ``spec`` trains on (default: the run's)."""
        return str(spec.data)

    def _attack_options(self, spec: Any, attack: str, train: TrainConfig) -> dict[str, Any]:
        """The config of ``spec``'s attack (default: fine-tuning, on the run's train seed)."""
        return {"train": train, "new_head": str(spec.attack).endswith("-new-head"), "seed": spec.train_seed}

    def _attack_hook(self, parent: Any, test: ArrayDataset) -> Any:
        """A :class:`~netmark.training.TrainHook` with a ``history`` watching an attack (``None``: none)."""
        return None

    def _method_part(self, spec: Any) -> dict[str, Any] | None:
        """What trains ``spec`` for its cache fingerprint: the method's name, config and ``VERSION``
        (default: :meth:`_method`'s watermark method, :func:`~netmark.bench.cache.method_part`)."""
        m = self._method(spec)
        return None if m is None else method_part(m)

    def _model_args(self) -> dict[str, Any]:
        """Extra keyword arguments of ``netmark.models.build`` (the scale's ``model_args``, if any)."""
        return dict(getattr(self.scale, "model_args", ()))

    def _extra_keys(self, spec: Any) -> tuple[str, ...]:
        """Fields of the run's :class:`TrainedBase` that hold further WatermarkKeys (an attacker's key),
        stored by the disk cache too."""
        return ()

    def _model_name(self, spec: Any) -> str:
        """The architecture that ``spec`` trains (default: the scale's ``model``)."""
        return str(cast(Any, self.scale).model)

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
        return self.roles(role)

    def fresh_model(self, data: ArrayDataset, seed: int, model: str | None = None) -> nn.Module:
        return fresh_model(model or cast(Any, self.scale).model, data, seed, self._model_args())

    def get(self, name: str) -> Any:
        """The trained model of run ``name`` (from the disk cache, or trained/derived on first use)."""
        if name not in self.cache:
            if name not in self.plan:
                raise ConfigError(f"unknown run {name!r}")
            spec: Any = self.plan[name]
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
            self.cache[name] = cast(TrainedT, trained)
            self.say(self._summary(trained) + (" (from the cache)" if trained.cached else ""))
        return self.cache[name]

    def fingerprint(self, name: str) -> str:
        """What determines run ``name``'s weights, hashed (see :mod:`netmark.bench.cache`)."""
        if name not in self._fps:
            spec: Any = self.plan[name]
            sched = {k: v for k, v in self._schedule(spec).to_dict().items() if k not in ("progress", "device")}
            parts: dict[str, Any] = {"runner": self.STUDY.title, "cache_version": self.CACHE_VERSION,
                                     "spec": spec.to_dict(), "schedule": sched, "model": self._model_name(spec),
                                     "model_version": model_version(self._model_name(spec)),
                                     "model_args": self._model_args(), "data": self.roles.digest(spec.data)}
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
            while parent := self.plan[chain[-1]].parent:
                chain.append(parent)
            for c in chain:
                if (c not in todo and c not in self.cache
                        and not self.disk.has(c, self.fingerprint(c), self._extra_keys(self.plan[c]))):
                    todo.append(c)
        if not todo:
            return
        self.say(f"training {len(todo)} runs in {jobs} worker processes (1 torch thread each, device "
                 f"{self.device}) into {self.cache_dir}")
        # largest messages first: the longest runs start early and the pool stays busy; a derived run waits
        # for its parent only
        todo.sort(key=lambda n: -(getattr(self.plan[n], "bits", None) or 0))
        after = [todo.index(p) if (p := self.plan[n].parent) in todo else None for n in todo]
        jobs_ = [(type(self), self.scale, self.data_dir, self.cache_dir, n, self.device) for n in todo]
        ex = ProcessExecutor(jobs, threads=1)
        try:
            for name, msg in ex.map(_train_in_worker, jobs_, after):
                self.say(f"  {name}: {msg}")
                self._from_workers.add(name)
        finally:
            ex.close()  # after Ctrl-C / SIGTERM the running runs stop now (a run is cached atomically when it
            # ends, so a stopped one leaves nothing behind and trains again on resuming)

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


def _train_in_worker(job: tuple[type[RunnerBase], Any, Any, Any, str, str]) -> tuple[str, str]:
    """Body of a :meth:`RunnerBase.prefetch` worker: train run ``name`` into the disk cache."""
    runner_cls, scale, data_dir, cache_dir, name, device = job
    t = runner_cls(scale, data_dir=data_dir, cache_dir=cache_dir, device=device).get(name)
    return name, f"{t.seconds:.0f} s in a worker, test accuracy {100 * t.test_accuracy:.2f}%"
