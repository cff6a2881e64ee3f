"""The one runner: trains each :class:`~.spec.RunSpec` at most once per invocation and runs every
:class:`~.spec.Experiment` on the shared models, then writes ``results.json``, README.md and PNGs.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from netmark import __version__
from netmark._util import check_writable, seeded
from netmark.attacks import Finetune, FinetuneConfig
from netmark.data import ArrayDataset, load
from netmark.errors import ConfigError
from netmark.experiments.report import write_json
from netmark.keys import WatermarkKey
from netmark.methods.base import WatermarkMethod
from netmark.methods.uchida import Uchida, UchidaConfig
from netmark.methods.wang import Wang, paper_config
from netmark.models import build
from netmark.training import evaluate, train
from netmark.verify import verify

from .spec import EXPERIMENTS, RunSpec, Scale, get_scale, plan, schedule_of

EXPERIMENT_ID = "wang2020"
PAPER = ("Wang, Li, Li, Zhang, Wu, Wang, Gu: Watermarking in Deep Neural Networks via Error Back-propagation, "
         "Electronic Imaging 2020")
#: fixed derangement of the 10 labels for the ``permuted-labels`` different domain (y → 3y + 1 mod 10).
PERMUTATION = tuple((3 * y + 1) % 10 for y in range(10))
_HISTORY_KEYS = ("epoch", "loss", "task_loss", "wang_loss", "embed_loss", "wang_l2", "bit_error_rate",
                 "wang_selected", "train_accuracy", "test_accuracy", "seconds")

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

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "spec": self.spec.to_dict(), "seconds": round(self.seconds, 2), "train_size": self.train_size,
            "test_size": len(self.test), "test_accuracy": self.test_accuracy,
            "history": [{k: h[k] for k in _HISTORY_KEYS if k in h} for h in self.history],
        }
        if self.key is not None:
            rec["key"] = key_summary(self.key)
        return rec


def key_summary(key: WatermarkKey) -> dict[str, Any]:
    out: dict[str, Any] = {"method": key.method, "seed": key.seed, "layer": key.layer, "bits": len(key.message),
                           "fingerprint": key.fingerprint}
    if key.method == "wang":
        out.update(variant=key.config.get("variant"), converge_epochs=key.config.get("converge_epochs"),
                   selected_weights=int((key.tensors["selection"] != 0).sum()),
                   M=int(key.tensors["selection"].numel()))
    else:
        out.update(strength=key.config.get("strength"), average=key.config.get("average"),
                   M=int(key.tensors["X"].shape[1]))
    return out


def method_of(key: WatermarkKey) -> WatermarkMethod:
    return Wang.from_key(key) if key.method == "wang" else Uchida.from_key(key)


def digits_28(data: ArrayDataset) -> ArrayDataset:
    """sklearn's 8×8 digits upsampled (bilinear) to 28×28: an MNIST-like domain for the Fashion MLP."""
    x = F.interpolate(data.x, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1).contiguous()
    return ArrayDataset(x, data.y.clone(), name="digits-28x28", num_classes=data.num_classes, classes=data.classes)


def permuted_labels(data: ArrayDataset) -> ArrayDataset:
    """The same images with labels mapped through :data:`PERMUTATION` (no label keeps its class)."""
    y = torch.tensor(PERMUTATION, dtype=torch.int64)[data.y]
    return ArrayDataset(data.x, y, name=f"{data.name}-permuted", num_classes=data.num_classes)


class Runner:
    """Loads the data of a :class:`Scale` and trains/derives runs on demand, each once."""

    def __init__(self, scale: Scale, *, data_dir: Any = None, progress: Progress | None = None) -> None:
        self.scale = scale
        self.data_dir = data_dir
        self.say: Progress = progress or (lambda _msg: None)
        self.plan = plan(scale)
        self.cache: dict[str, Trained] = {}
        self._data: dict[str, tuple[ArrayDataset, ArrayDataset]] = {}

    def data(self, role: str) -> tuple[ArrayDataset, ArrayDataset]:
        """``(train, test)`` for ``main`` / ``small`` / ``sd`` / ``dd``."""
        if role not in self._data:
            sc = self.scale
            kw = {"data_dir": self.data_dir, "split_seed": sc.split_seed, "val_size": sc.val_size}
            if role == "main":
                tr, te = load(sc.dataset, "train", **kw), load(sc.dataset, "test", data_dir=self.data_dir)
            elif role == "small":
                tr, te = load(sc.dataset, "train", train_size=sc.small_train_size, **kw), self.data("main")[1]
            elif role == "sd":
                tr, te = load(sc.dataset, "val", **kw), self.data("main")[1]
            elif role == "dd" and sc.dd_source == "digits-28":
                tr = digits_28(load("digits", "train", data_dir=self.data_dir, split_seed=sc.split_seed))
                te = digits_28(load("digits", "test", data_dir=self.data_dir))
            elif role == "dd":
                tr, te = (permuted_labels(d) for d in self.data("main"))
            else:
                raise ConfigError(f"unknown data role {role!r}")
            self._data[role] = (tr, te)
        return self._data[role]

    def fresh_model(self, data: ArrayDataset, seed: int) -> nn.Module:
        c, h, _ = data.shape
        with seeded(seed):
            return build(self.scale.model, in_channels=c, image_size=h, num_classes=data.num_classes)

    def method(self, spec: RunSpec) -> WatermarkMethod:
        bits = spec.bits or self.scale.bits
        if spec.method == "uchida":
            return Uchida(UchidaConfig(layer=self.scale.layer, bits=bits, strength=self.scale.uchida_strength,
                                       average=False))
        if spec.method in ("manu", "auto"):
            cfg = paper_config("mlp", spec.method, bits)  # type: ignore[arg-type]
            return Wang(replace(cfg, layer=self.scale.layer, converge_epochs=self.scale.converge_epochs))
        raise ConfigError(f"unknown method {spec.method!r}")

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
            msg = f"  {name}: {trained.seconds:.0f} s, test accuracy {100 * trained.test_accuracy:.2f}%"
            if trained.key is not None:
                msg += f", owner bit accuracy {100 * (verify(trained.model, trained.key).score):.2f}%"
            self.say(msg)
        return self.cache[name]

    def _train(self, spec: RunSpec) -> Trained:
        tr, te = self.data(spec.data)
        cfg = schedule_of(self.scale, spec)
        what = "plain" if spec.method is None else f"{spec.method}, {spec.bits} bits"
        self.say(f"training {spec.name} ({what}): {self.scale.model} on {len(tr)} {tr.name} images, "
                 f"{cfg.epochs} epochs")
        model = self.fresh_model(tr, spec.model_seed)
        if spec.method is None:
            result = train(model, tr, cfg, eval_data=te)
            key = None
        else:
            model, key, result = self.method(spec).embed(model, tr, cfg, seed=spec.key_seed, eval_data=te)
        return Trained(spec, model, key, te, len(tr), history=result.history)

    def _derive(self, spec: RunSpec) -> Trained:
        parent = self.get(spec.parent or "")
        tr, te = self.data(spec.data)
        cfg = schedule_of(self.scale, spec)
        if spec.attack != "finetune":
            raise ConfigError(f"unknown attack {spec.attack!r}")
        self.say(f"attacking {spec.parent} -> {spec.name} (fine-tuning, {cfg.epochs} epochs on {len(tr)} "
                 f"{tr.name} images, 10-way head kept)")
        model = Finetune(FinetuneConfig(train=cfg, new_head=False, seed=spec.train_seed))(parent.model, tr)
        return Trained(spec, model, parent.key, te, len(tr))


# ---------------------------------------------------------------------- entry point


def run(out_dir: str | Path, *, quick: bool = False, force: bool = False, progress: Progress | None = None,
        data_dir: Any = None, scale: str | Scale | None = None) -> dict[str, Any]:
    """Reproduce Wang et al. 2020 and write ``out_dir/results.json``, ``README.md`` and PNG plots.

    Args:
        out_dir: output directory (created).
        quick: the ``quick`` scale (digits + mlp, under a minute) instead of ``cpu``.
        force: overwrite an existing ``results.json`` (otherwise OutputExistsError, before any training).
        progress: called with one line per step (the CLI prints it).
        data_dir: where the datasets live (see :mod:`netmark.data`).
        scale: a preset name from ``SCALES`` (``quick``/``cpu``) or a custom :class:`Scale`; overrides ``quick``.

    Returns:
        The results dictionary that was written to ``results.json``.
    """
    from .measure import MEASURES
    from .render import render

    out = Path(out_dir)
    results_path = check_writable(out / "results.json", force)
    sc = get_scale(scale, quick)
    say: Progress = progress or (lambda _msg: None)
    runner = Runner(sc, data_dir=data_dir, progress=say)
    start = time.perf_counter()
    say(f"Wang et al. 2020 reproduction, scale {sc.name!r}: {sc.model} on {sc.dataset}, host {sc.layer}")
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
                  "small_train_size_used": len(runner.data("small")[0]), "sd_size": len(runner.data("sd")[0]),
                  "dd_size": len(runner.data("dd")[0]), "dd_test_size": len(runner.data("dd")[1]),
                  "host_M": int(runner.fresh_model(tr, 0).get_submodule(sc.layer).weight.numel()),
                  "torch_threads": torch.get_num_threads()},
        "seeds": {"model_seed": sc.model_seed, "train_seed": sc.train_seed, "key_seed": sc.key_seed,
                  "split_seed": sc.split_seed, "finetune_seed": sc.train_seed + 1,
                  "independent_model_seeds": [1000 + i for i in range(sc.n_independent)]},
        "runs": {name: t.record() for name, t in runner.cache.items()},
        "experiments": experiments,
        "timing": {"total_seconds": round(total, 1),
                   "train_seconds": round(sum(t.seconds for t in runner.cache.values()), 1)},
    }
    write_json(results_path, results, force=force)
    render(results_path, out, force=True)
    say(f"done in {total:.0f} s: {results_path}")
    return results
