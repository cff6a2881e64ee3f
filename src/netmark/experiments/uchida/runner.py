"""The one runner: trains each :class:`~.spec.RunSpec` at most once per invocation and runs every
:class:`~.spec.Experiment` on the shared models, then writes ``results.json``, README.md and PNGs.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netmark import __version__
from netmark._util import check_writable, seeded
from netmark.attacks import Finetune, FinetuneConfig, Overwrite, OverwriteConfig
from netmark.data import ArrayDataset, load
from netmark.errors import ConfigError
from netmark.experiments.report import write_json
from netmark.keys import WatermarkKey
from netmark.methods.uchida import Uchida, UchidaConfig, host_module, host_vector
from netmark.models import build
from netmark.training import evaluate, train

from .spec import EXPERIMENTS, RunSpec, Scale, get_scale, plan, schedule_of

EXPERIMENT_ID = "uchida2017"
PAPER = "Uchida, Nagai, Sakazawa, Satoh: Embedding Watermarks into Deep Neural Networks, ICMR 2017"
_HISTORY_KEYS = ("epoch", "lr", "loss", "task_loss", "embed_loss", "embed_loss_raw", "bit_error_rate",
                 "train_accuracy", "test_accuracy", "test_loss", "seconds")

Progress = Callable[[str], None]


@dataclass
class Trained:
    """A model of the reproduction, with the owner key it carries (own or inherited)."""

    spec: RunSpec
    model: nn.Module
    key: WatermarkKey | None
    test: ArrayDataset
    train_size: int
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    test_accuracy: float = float("nan")
    attacker_key: WatermarkKey | None = None

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "spec": self.spec.to_dict(), "seconds": round(self.seconds, 2), "train_size": self.train_size,
            "test_size": len(self.test), "test_accuracy": self.test_accuracy,
            "test_error": 1.0 - self.test_accuracy,
            "history": [{k: h[k] for k in _HISTORY_KEYS if k in h} for h in self.history],
        }
        if self.key is not None:
            rec["key"] = key_summary(self.key)
        if self.attacker_key is not None:
            rec["attacker_key"] = key_summary(self.attacker_key)
        return rec


def key_summary(key: WatermarkKey) -> dict[str, Any]:
    return {"seed": key.seed, "layer": key.layer, "bits": len(key.message), "key_type": key.config.get("key_type"),
            "strength": key.config.get("strength"), "reduction": key.config.get("reduction"),
            "M": int(key.tensors["X"].shape[1]), "fingerprint": key.fingerprint}


class Runner:
    """Loads the data of a :class:`Scale` and trains/derives runs on demand, each once."""

    def __init__(self, scale: Scale, *, data_dir: Any = None, progress: Progress | None = None) -> None:
        self.scale = scale
        self.data_dir = data_dir
        self.say: Progress = progress or (lambda _msg: None)
        self.plan = plan(scale)
        self.cache: dict[str, Trained] = {}
        self._data: dict[str, tuple[ArrayDataset, ArrayDataset]] = {}

    # ------------------------------------------------------------------ data

    def data(self, role: str) -> tuple[ArrayDataset, ArrayDataset]:
        """``(train, test)`` for ``main`` / ``small`` / ``domain-a`` / ``domain-b``."""
        if role not in self._data:
            sc = self.scale
            kw = {"data_dir": self.data_dir, "split_seed": sc.split_seed}
            if role == "main":
                tr = load(sc.dataset, "train", train_size=sc.train_size, **kw)
                te = load(sc.dataset, "test", **kw)
            elif role in ("small", "capacity"):
                size = sc.small_train_size if role == "small" else sc.capacity_train_size
                tr = load(sc.dataset, "train", train_size=size, **kw)
                te = self.data("main")[1]
            elif role in ("domain-a", "domain-b"):
                classes = sc.domain_a if role == "domain-a" else sc.domain_b
                tr0, te0 = self.data("main")
                tr, te = tr0.select_classes(classes), te0.select_classes(classes)
            else:
                raise ConfigError(f"unknown data role {role!r}")
            self._data[role] = (tr, te)
        return self._data[role]

    def fresh_model(self, data: ArrayDataset, seed: int) -> nn.Module:
        c, h, _ = data.shape
        with seeded(seed):
            return build(self.scale.model, in_channels=c, image_size=h, num_classes=data.num_classes,
                         **dict(self.scale.model_args))

    def uchida_config(self, spec: RunSpec) -> UchidaConfig:
        return UchidaConfig(layer=spec.layer or self.scale.layer, bits=spec.bits or self.scale.bits,
                            key_type=spec.key_type or "random", strength=self.scale.strength)

    def host_size(self, layer: str | None = None) -> int:
        """M of a host layer (averaged filter size) for this scale's model."""
        m = self.fresh_model(self.data("main")[0], 0)
        return int(host_vector(host_module(m, layer or self.scale.layer).weight).numel())

    # ------------------------------------------------------------------ runs

    def get(self, name: str) -> Trained:
        """The trained model of run ``name`` (trained or derived on first use)."""
        if name not in self.cache:
            if name not in self.plan:
                raise ConfigError(f"unknown run {name!r}")
            spec = self.plan[name]
            t0 = time.perf_counter()
            trained = self._derive(spec) if spec.parent else self._train(spec)
            trained.seconds = time.perf_counter() - t0
            trained.test_accuracy = evaluate(trained.model, trained.test)["accuracy"]
            self.cache[name] = trained
            msg = f"  {name}: {trained.seconds:.0f} s, test error {100 * (1 - trained.test_accuracy):.2f}%"
            if trained.key is not None:
                ber = (Uchida.from_key(trained.key).extract(trained.model, trained.key).bits
                       != trained.key.bits).float().mean()
                msg += f", owner BER {float(ber):.3f}"
            self.say(msg)
        return self.cache[name]

    def _train(self, spec: RunSpec) -> Trained:
        tr, te = self.data(spec.data)
        cfg = schedule_of(self.scale, spec)
        what = "plain" if spec.key_type is None else f"{spec.key_type} key, {spec.bits or self.scale.bits} bits"
        self.say(f"training {spec.name} ({what}): {self.scale.model} on {len(tr)} {tr.name} images, "
                 f"{cfg.epochs} epochs")
        model = self.fresh_model(tr, spec.model_seed)
        if spec.key_type is None:
            run = train(model, tr, cfg, eval_data=te)
            key = None
        else:
            model, key, run = Uchida(self.uchida_config(spec)).embed(model, tr, cfg, seed=spec.key_seed, eval_data=te)
        return Trained(spec, model, key, te, len(tr), history=run.history)

    def _derive(self, spec: RunSpec) -> Trained:
        parent = self.get(spec.parent or "")
        tr, te = self.data(spec.data)
        cfg = schedule_of(self.scale, spec)
        self.say(f"attacking {spec.parent} -> {spec.name} ({spec.attack}, {cfg.epochs} epochs on {len(tr)} images)")
        attacker_key = None
        if spec.attack in ("finetune", "finetune-new-head"):
            ft = FinetuneConfig(train=cfg, new_head=spec.attack == "finetune-new-head", seed=spec.train_seed)
            model = Finetune(ft)(parent.model, tr)
        elif spec.attack == "overwrite":
            pcfg = self.uchida_config(self.plan[spec.parent or ""])
            atk = Overwrite(OverwriteConfig(method="uchida", method_config=pcfg.to_dict(), train=cfg,
                                            seed=spec.attacker_key_seed if spec.attacker_key_seed is not None else 666))
            model = atk(parent.model, tr)
            attacker_key = atk.attacker_key
        else:
            raise ConfigError(f"unknown attack {spec.attack!r}")
        return Trained(spec, model, parent.key, te, len(tr), attacker_key=attacker_key)


# ---------------------------------------------------------------------- entry point


def run(out_dir: str | Path, *, quick: bool = False, force: bool = False, progress: Progress | None = None,
        data_dir: Any = None, scale: str | Scale | None = None) -> dict[str, Any]:
    """Reproduce Uchida et al. 2017 and write ``out_dir/results.json``, ``README.md`` and PNG plots.

    Args:
        out_dir: output directory (created).
        quick: the ``quick`` scale (digits + simple-cnn, under a minute) instead of ``cpu``.
        force: overwrite an existing ``results.json`` (otherwise OutputExistsError, before any training).
        progress: called with one line per step (the CLI prints it); training shows tqdm on a terminal.
        data_dir: where the datasets live (see :mod:`netmark.data`).
        scale: a preset name from ``SCALES`` (``quick``/``cpu``/``paper``) or a custom :class:`Scale`;
            overrides ``quick``.

    Returns:
        The results dictionary that was written to ``results.json``.
    """
    from .render import render

    out = Path(out_dir)
    results_path = check_writable(out / "results.json", force)
    sc = get_scale(scale, quick)
    say: Progress = progress or (lambda _msg: None)
    threads = torch.get_num_threads()
    if sc.threads is not None:
        torch.set_num_threads(sc.threads)
    try:
        results = _run_all(sc, say, data_dir)
    finally:
        torch.set_num_threads(threads)
    write_json(results_path, results, force=force)
    render(results_path, out, force=True)
    say(f"done in {results['timing']['total_seconds']:.0f} s: {results_path}")
    return results


def _run_all(sc: Scale, say: Progress, data_dir: Any) -> dict[str, Any]:
    from .measure import MEASURES

    runner = Runner(sc, data_dir=data_dir, progress=say)
    start = time.perf_counter()
    say(f"Uchida et al. 2017 reproduction, scale {sc.name!r}: {sc.model} on {sc.dataset}, host {sc.layer}")
    experiments: dict[str, Any] = {}
    for exp in EXPERIMENTS:
        for r in exp.resolve_runs(sc):
            runner.get(r)
        t0 = time.perf_counter()
        say(f"[{exp.paper_ref}] {exp.title}")
        measured = MEASURES[exp.name](runner, exp)
        experiments[exp.name] = {"paper_ref": exp.paper_ref, "title": exp.title, "paper": exp.paper,
                                 "notes": exp.notes, "runs": exp.resolve_runs(sc), "measured": measured,
                                 "measure_seconds": round(time.perf_counter() - t0, 2)}
    total = time.perf_counter() - start
    tr, te = runner.data("main")
    results: dict[str, Any] = {
        "experiment": EXPERIMENT_ID,
        "paper": PAPER,
        "netmark_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": sc.command,
        "quick": sc.name == "quick",
        "scale": {**sc.to_dict(), "train_size_used": len(tr), "test_size": len(te),
                  "small_train_size_used": len(runner.data("small")[0]),
                  "capacity_train_size_used": len(runner.data("capacity")[0]), "host_M": runner.host_size(),
                  "capacity_M": {la: runner.host_size(la) for la in sc.capacity_layers},
                  "torch_threads": torch.get_num_threads()},
        "seeds": {"model_seed": sc.model_seed, "train_seed": sc.train_seed, "key_seed": sc.key_seed,
                  "split_seed": sc.split_seed, "finetune_seed": sc.train_seed + 1,
                  "overwrite_train_seed": sc.train_seed + 2, "attacker_key_seed": 666,
                  "independent_model_seeds": [1000 + i for i in range(sc.n_independent)]},
        "runs": {name: t.record() for name, t in runner.cache.items()},
        "experiments": experiments,
        "timing": {"total_seconds": round(total, 1),
                   "train_seconds": round(sum(t.seconds for t in runner.cache.values()), 1)},
    }
    return results
