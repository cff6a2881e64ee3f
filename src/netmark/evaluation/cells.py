"""The independent jobs of an evaluation and their on-disk cache.

A :class:`Job` is a small picklable record (the config, the cache directory and which cell);
:func:`netmark.evaluation.jobs.run_job` is the one top-level function every executor runs, in this process or in a
worker. It returns a JSON-serialisable dict.

Cache layout under ``cache_dir``:

* ``runs/``: trained models and keys (:class:`netmark.bench.cache.RunCache`): ``baseline`` (no watermark),
  ``marked-<method>`` (same seeds and schedule, embedding) and ``independent-<i>`` (other seeds);
* ``cells/<fingerprint>.json``: every measured cell (an attack point, a capacity probe, an overhead timing, a
  false-positive count), written atomically; a cell found there with its fingerprint is not recomputed.

Fingerprints (:func:`netmark.bench.cache.fingerprint`) cover what determines the result, by explicit versions
and configs (never source text): the trained run's fingerprint (seeds, schedule, model and its registry version,
method config and ``VERSION``, the training data's bytes, the training loop's version), the attack config and
``VERSION``, the digests of the data the cell uses, ``alpha`` and :data:`CACHE_VERSION` (bump it when this
package changes how a cell is computed). A :class:`~netmark.errors.NetmarkError` inside a cell (a size a method
cannot host, an attack that does not apply) is recorded in the cell's ``error``; any other exception aborts the run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from netmark._util import canonical_json, generator
from netmark.attacks import ATTACKS, AttackConfig
from netmark.bench.cache import RunCache, fingerprint, method_part
from netmark.bench.report import write_json
from netmark.bench.roles import Roles, fresh_model
from netmark.data import ArrayDataset, load
from netmark.data.loading import Split
from netmark.errors import ConfigError, NetmarkError
from netmark.evaluation.spec import EvaluationConfig, PiracyAttack, Strength, Sweep
from netmark.keys import WatermarkKey
from netmark.methods import WatermarkMethod, get_method, verify
from netmark.models.registry import model_version
from netmark.training import evaluate, make_optimizer, train
from netmark.verify import VerificationResult

CACHE_VERSION = 1
_SPLITS: dict[str, Split] = {"train": "train", "attacker": "val", "test": "test"}
#: a sweep's ``data`` -> the roles (:meth:`Context.data`) its attack trains on (None: no data) and is tested on
_ATTACK_DATA: dict[str, tuple[str | None, str]] = {"none": (None, "test"), "attacker": ("attacker", "test"),
                                                   "other-domain": ("other", "other-test"),
                                                   "other-images": ("other", "test")}

#: How a job of each kind is named (``str.format`` fields: method, kind, index, strength, piracy, sweep: the label
#: of the sweep ``index``); any other kind is ``"{method}: {kind}"``.
_JOB_NAMES = {
    "baseline": "baseline",
    "independent": "independent-{index}",
    "attack": "{method}: {sweep} @ {strength}",
    "capacity": "{method}: capacity {strength}",
    "protect": "anti-piracy ({method})",
    "access-attack": "anti-piracy ({method}): {sweep} @ {strength}",
    "piracy": "anti-piracy ({method}): {piracy.name} attack",
}
#: the kind of the run a training job trains
_RUN_KINDS: dict[str, Literal["baseline", "marked", "independent"]] = {
    "baseline": "baseline", "independent": "independent", "embed": "marked"}


@dataclass
class Job:
    """One cell of the grid. ``index``: the independent model's or the sweep's index; ``strength``: the attack
    strength or the capacity probe's payload size; ``piracy``: the forged-transform attack of a ``piracy`` job."""

    kind: str
    config: EvaluationConfig
    cache_dir: str
    method: str | None = None
    index: int = 0
    strength: Strength | None = None
    piracy: PiracyAttack | None = None

    @property
    def name(self) -> str:
        sweep = self.config.sweeps[self.index].label if self.kind in ("attack", "access-attack") else ""
        return _JOB_NAMES.get(self.kind, "{method}: {kind}").format(
            method=self.method, kind=self.kind, sweep=sweep, strength=self.strength, index=self.index,
            piracy=self.piracy)

    @property
    def run(self) -> Run:
        """The trained run of a ``baseline`` / ``independent`` / ``embed`` job."""
        if self.kind not in _RUN_KINDS:
            raise ConfigError(f"a {self.kind!r} job trains no run")
        return Run(_RUN_KINDS[self.kind], self.method, self.index)


@dataclass(frozen=True)
class Run:
    """A trained model of an evaluation, by kind: the ``baseline`` (no watermark), ``marked`` by ``method`` (the
    baseline's seeds and schedule) or the ``independent`` model ``index`` (other seeds). :attr:`name` is its name
    in the run cache."""

    kind: Literal["baseline", "marked", "independent"]
    method: str | None = None
    index: int = 0

    @property
    def name(self) -> str:
        if self.kind == "marked":
            return f"marked-{self.method}"
        return f"independent-{self.index}" if self.kind == "independent" else "baseline"


BASELINE = Run("baseline")


def marked_run(method: str) -> Run:
    return Run("marked", method)


def independent_run(index: int) -> Run:
    return Run("independent", index=index)


def failed(e: NetmarkError, seconds: float = 0.0) -> dict[str, Any]:
    """The record of a job or cell that ``e`` stopped (a size a method cannot host, an attack that does not apply)."""
    return {"error": f"{type(e).__name__}: {e}", "seconds": seconds, "cached": False}


class Context:
    """What the jobs of one evaluation share inside one process: data, digests, fingerprints, the caches."""

    def __init__(self, config: EvaluationConfig, cache_dir: str | Path) -> None:
        self.cfg = config
        self.dir = Path(cache_dir)
        self.runs = RunCache(self.dir / "runs")
        self.roles: Roles[ArrayDataset] = Roles(self._load)

    # ------------------------------------------------------------------ data

    def data(self, role: str) -> ArrayDataset:
        """``train`` (the owner's), ``attacker``, ``test``, ``other`` / ``other-test`` (the other domain)."""
        return self.roles(role)

    def _load(self, role: str) -> ArrayDataset:
        c = self.cfg
        if "@" in role:  # a data budget: the first n images of a role, in one seeded order (nested budgets)
            whole, n = role.split("@")
            d = self.data(whole)
            if int(n) > len(d):
                raise ConfigError(f"the data budget asks for {n} images but the {whole} data holds {len(d)}: raise "
                                  "attacker_size or lower the sweep's data_fraction")
            return d.subset(torch.randperm(len(d), generator=generator(c.split_seed))[:int(n)])
        split = _SPLITS.get(role)
        if split is not None:
            d = load(c.dataset, split, data_dir=c.data_dir, train_size=c.train_size, val_size=c.attacker_size,
                     split_seed=c.split_seed)
            return _first(d, c.test_size, c.split_seed) if role == "test" else d
        if role not in ("other", "other-test"):
            raise ConfigError(f"unknown data role {role!r}")
        base = self.data("attacker" if role == "other" else "test")
        domain = c.resolved_other_domain()
        if domain == "inverted":
            k = base.num_classes
            return ArrayDataset(1.0 - base.x, (base.y + 1) % k, name=f"{base.name}-inverted", num_classes=k)
        src = load(domain, "train" if role == "other" else "test", data_dir=c.data_dir)
        src = _first(src, c.attacker_size if role == "other" else c.test_size, c.split_seed)
        return ArrayDataset(_resize(src.x, base.shape), src.y, name=f"{src.name}-as-{base.name}",
                            num_classes=src.num_classes, classes=src.classes)

    def digest(self, role: str) -> str:
        return self.roles.digest(role)

    # ------------------------------------------------------------------ models and runs

    def fresh_model(self, seed: int) -> nn.Module:
        return fresh_model(self.cfg.model, self.data("train"), seed, self.cfg.model_args)

    def method(self, name: str, **changes: Any) -> WatermarkMethod:
        cls = get_method(name)
        return cls(cls.config_cls.from_dict({**self.cfg.methods[name], **changes}))

    def run_parts(self, model_seed: int, method: WatermarkMethod | None) -> dict[str, Any]:
        """Fingerprint parts of a model trained from ``model_seed`` (also its training seed)."""
        sched = {k: v for k, v in self.cfg.train.to_dict().items() if k not in ("progress", "device")}
        parts: dict[str, Any] = {"evaluation": CACHE_VERSION, "model": self.cfg.model,
                                 "model_version": model_version(self.cfg.model), "model_args": self.cfg.model_args,
                                 "schedule": sched, "data": self.digest("train"), "seed": model_seed, "method": None}
        if method is not None:
            parts["method"] = {**method_part(method), "key_seed": self.cfg.key_seed}
        return parts

    def _run_spec(self, run: Run) -> tuple[int, WatermarkMethod | None]:
        if run.kind == "independent":
            return self.cfg.independent_seed(run.index), None
        return self.cfg.seed, None if run.kind == "baseline" else self.method(str(run.method))

    def run_fp(self, run: Run) -> str:
        seed, method = self._run_spec(run)
        return fingerprint(self.run_parts(seed, method))

    def embed(self, seed: int, method: WatermarkMethod | None, **kw: Any,
              ) -> tuple[nn.Module, WatermarkKey | None, float]:
        """Train a model from ``seed`` (and embed with ``method``): ``(model, key, seconds)``."""
        model, t0 = self.fresh_model(seed), time.perf_counter()
        cfg = replace(self.cfg.train, seed=seed, progress=False)
        if method is None:
            train(model, self.data("train"), cfg)
            return model, None, time.perf_counter() - t0
        model, key, _ = method.embed(model, self.data("train"), cfg, seed=self.cfg.key_seed, **kw)
        return model, key, time.perf_counter() - t0

    def cached(self, name: str, fp: str, make: Callable[[], tuple[nn.Module, WatermarkKey | None, dict[str, Any]]],
               ) -> tuple[nn.Module, WatermarkKey | None, dict[str, Any]]:
        """The run ``name`` from the run cache, made by ``make() -> (model, key, record)`` and stored first if
        absent: ``(model, key, record)``, the record's ``cached`` says which."""
        hit = self.runs.load(name, fp)
        if hit is not None:
            model, key, record, _ = hit
            return model, key, {**record, "cached": True}
        model, key, record = make()
        record = {"run": name, **record}
        self.runs.save(name, fp, model, key, record)
        return model, key, {**record, "cached": False}

    def trained(self, run: Run) -> tuple[nn.Module, WatermarkKey | None, dict[str, Any]]:
        """``run`` from the run cache, trained (and stored) first if absent: ``(model, key, record)``."""
        def make() -> tuple[nn.Module, WatermarkKey | None, dict[str, Any]]:
            model, key, seconds = self.embed(*self._run_spec(run))
            return model, key, {"seconds": seconds, "test_accuracy": evaluate(model, self.data("test"))["accuracy"],
                                "torch_threads": torch.get_num_threads()}

        return self.cached(run.name, self.run_fp(run), make)

    def attack_roles(self, sweep: Sweep) -> tuple[str | None, str]:
        """The data roles ``sweep`` attacks with (None: no data; ``attacker@n``: a budget of n images) and tests on."""
        data, test = _ATTACK_DATA[sweep.data]
        if data is None or sweep.data_fraction is None:
            return data, test
        return f"{data}@{max(1, round(sweep.data_fraction * len(self.data('train'))))}", test

    def budget(self, sweep: Sweep, acfg: AttackConfig) -> dict[str, Any]:
        """The attacker's budget of one point (issue 23), recorded in its cell: ``data`` (the sweep's kind of data),
        ``data_images`` (how many images the attack used; 0: none), ``data_fraction`` (their share of the owner's
        training-set size) and ``compute`` (the attack's training epochs over its data relative to the owner's
        epochs: :meth:`AttackConfig.training_epochs`)."""
        data, _ = self.attack_roles(sweep)
        n = len(self.data(data)) if data else 0
        return {"data_images": n, "data_fraction": n / len(self.data("train")), "data": sweep.data,
                "compute": acfg.training_epochs() / max(1, self.cfg.train.epochs)}

    def sweep_point(self, job: Job, **method: Any) -> tuple[Sweep, AttackConfig, dict[str, Any]]:
        """The sweep of the attack job ``job``, its attack config (``method``, ``method_options``: an overwriting
        attack's) and the fingerprint parts of the point: the attack, its version and config, the data digests."""
        sweep = self.cfg.sweeps[job.index]
        strength = job.strength if job.strength is not None else sweep.strengths[0]
        acfg = sweep.attack_config(strength, train=self.cfg.train, seed=self.cfg.attack_seed, **method)
        data, test = self.attack_roles(sweep)
        return sweep, acfg, {"attack": sweep.attack, "attack_version": ATTACKS[sweep.attack].VERSION,
                             "config": acfg.to_dict(), "data": self.digest(data) if data else None,
                             "test": self.digest(test)}

    def attacked(self, sweep: Sweep, acfg: AttackConfig, model: nn.Module) -> tuple[nn.Module, ArrayDataset]:
        """``model`` attacked at one point of ``sweep`` (:meth:`sweep_point`) and the data to test it on."""
        data, test = self.attack_roles(sweep)
        return ATTACKS[sweep.attack](acfg)(model, self.data(data) if data else None), self.data(test)

    # ------------------------------------------------------------------ cells

    def cell(self, parts: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The cached result of the cell ``parts`` (``cached: True``), or ``compute()`` stored atomically."""
        fp = fingerprint({"evaluation": CACHE_VERSION, **parts})
        path = self.dir / "cells" / f"{fp}.json"
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(stored, dict) and stored.get("fingerprint") == fp:
                return {**stored, "cached": True}
        except (OSError, ValueError):
            pass  # absent or damaged: computed again
        t0 = time.perf_counter()
        try:
            result = {**compute(), "error": None}
        except NetmarkError as e:
            result = {"error": f"{type(e).__name__}: {e}"}
        result["seconds"] = time.perf_counter() - t0
        write_json(path, {**result, "fingerprint": fp}, force=True)
        return {**result, "fingerprint": fp, "cached": False}


def _first(d: ArrayDataset, n: int | None, seed: int) -> ArrayDataset:
    """``n`` samples of ``d`` in a seeded random order (all of it when ``n`` is None or not smaller)."""
    if n is None or n >= len(d):
        return d
    return d.subset(torch.randperm(len(d), generator=generator(seed))[:n])


def _resize(x: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Images ``x`` as ``shape`` = (C, H, W): bilinear (antialiased) resizing; grey ↔ colour by mean/repetition."""
    c = shape[0]
    if x.shape[1] != c:
        if x.shape[1] == 1:
            x = x.repeat(1, c, 1, 1)
        elif c == 1:
            x = x.mean(1, keepdim=True)
        else:
            raise ConfigError(f"cannot map {x.shape[1]}-channel images to {c} channels")
    if tuple(x.shape[2:]) != shape[1:]:
        x = F.interpolate(x, size=shape[1:], mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    return x.contiguous()


def result_fields(res: VerificationResult) -> dict[str, Any]:
    return {"p_value": res.p_value, "score": res.score, "detected": bool(res.detected)}


def verified(model: nn.Module, key: WatermarkKey | None, alpha: float) -> VerificationResult:
    if key is None:
        raise ConfigError("this run carries no key")
    return verify(model, key, alpha=alpha)


# ---------------------------------------------------------------------- per-process contexts and dispatch

_CONTEXTS: dict[tuple[str, str], Context] = {}


def context(config: EvaluationConfig, cache_dir: str | Path) -> Context:
    """This process's :class:`Context` of ``config`` (data loaded once for every job a worker runs)."""
    k = (canonical_json(config.to_dict()), str(cache_dir))
    if k not in _CONTEXTS:
        _CONTEXTS.clear()  # one evaluation at a time per process
        _CONTEXTS[k] = Context(config, cache_dir)
        # the first optimizer imports torch._dynamo (seconds): not inside the first timed training of a worker
        make_optimizer([torch.zeros(1, requires_grad=True)], config.train)
    return _CONTEXTS[k]
