"""The runs of :mod:`.spec`'s ``STUDY`` (:data:`RUNS`): their data roles, the scheme that marks them, their records."""

from __future__ import annotations

from typing import Any

from torch import nn

from netmark.bench.measure import HistoryHook
from netmark.bench.reproduce import make_run
from netmark.bench.runner import Runner, Runs, Trained
from netmark.data import ArrayDataset, load
from netmark.errors import ConfigError
from netmark.keys import WatermarkKey
from netmark.methods import get_method, method_from_key
from netmark.methods.base import WatermarkMethod

from .spec import STUDY, RunSpec, Scale


def scheme_method(scheme: str, scale: Scale, *, null_models: int) -> WatermarkMethod:
    """The method (and config) that embeds ``scheme`` at ``scale``."""
    common: dict[str, Any] = {"per_batch": scale.per_batch, "null_models": null_models,
                              "null_epochs": scale.null_epochs}
    if scheme == "deepsigns-white":
        cls = get_method("deepsigns")
        return cls(cls.config_cls(mode="white"))  # type: ignore[call-arg]
    cls = get_method(scheme)
    if scheme == "deepsigns":
        common["mode"] = "black"
    if scheme == "frontier-stitching":
        common["finetune_epochs"] = scale.frontier_finetune_epochs
    return cls(cls.config_cls(**common))


def black_box(key: WatermarkKey) -> bool:
    """Whether ``key`` is verified through queries (a trigger set; not DeepSigns' white-box mode)."""
    return method_from_key(key).query_verifiable()


def watermark_score(model: nn.Module, key: WatermarkKey) -> tuple[float, float | None]:
    """``(watermark accuracy, log10 p-value)``: trigger accuracy (bit accuracy for a white-box key); the
    p-value only when the key can be decided (random labels, or calibrated)."""
    method = method_from_key(key)
    if black_box(key) and not key.message_random and "null_counts" not in key.tensors:  # cannot be decided
        return float(method.extract(model, key).details["trigger_accuracy"]), None
    res = method.verify(model, key)  # a trigger set's score is its trigger accuracy
    return float(res.score), float(res.details["log10_p_value"])


def key_summary(key: WatermarkKey) -> dict[str, Any]:
    return {"method": key.method, "seed": key.seed, "mode": key.config.get("mode"), "size": key.config.get("size"),
            "labels_random": key.message_random, "calibrated": "null_counts" in key.tensors,
            "fingerprint": key.fingerprint}


def _scores(model: nn.Module, key: WatermarkKey) -> dict[str, float]:
    """``watermark_accuracy`` and, where the key can be decided, ``log10_p_value``."""
    acc, lg = watermark_score(model, key)
    return {"watermark_accuracy": acc, **({} if lg is None else {"log10_p_value": lg})}


def _record(t: Trained) -> dict[str, Any]:
    if t.key is None:
        return {}
    acc, lg = watermark_score(t.model, t.key)
    return {"watermark_accuracy": acc, "log10_p_value": lg}


def main_dataset(runner: Runner) -> str:
    """The scale's first dataset (the scheme checks')."""
    return str(runner.scale.datasets[0][0])


def _load(runner: Runner, role: str) -> tuple[ArrayDataset, ArrayDataset]:
    """``main`` / a dataset name: the owner's part; ``<dataset>@attacker``: the attacker's disjoint part."""
    name, _, part = (main_dataset(runner) if role == "main" else role).partition("@")
    sizes = dict(runner.scale.datasets)
    if name not in sizes:
        raise ConfigError(f"unknown data role {role!r}")
    sc, test = runner.scale, load(name, "test", data_dir=runner.data_dir)
    common = {"data_dir": runner.data_dir, "val_size": sc.attacker_size, "split_seed": sc.split_seed}
    if part == "attacker":
        return load(name, "val", **common), test
    return load(name, "train", train_size=sizes[name], **common), test


def _method(runner: Runner, spec: RunSpec) -> WatermarkMethod | None:
    if spec.scheme is None:
        return None
    checked = spec.dataset == main_dataset(runner) and spec.optimizer == "sgd" and spec.run == 0
    return scheme_method(spec.scheme, runner.scale, null_models=runner.scale.null_models if checked else 0)


def _describe(runner: Runner, spec: RunSpec) -> str:
    return "unmarked" if spec.scheme is None else f"{spec.scheme}, {spec.optimizer} lr {spec.lr:g}"


def _score(runner: Runner, t: Trained) -> str:
    return f"watermark accuracy {100 * watermark_score(t.model, t.owner)[0]:.1f}%"


def _attack_data(spec: RunSpec) -> str:
    return f"{spec.dataset}@attacker"


def _attack_hook(parent: Trained, test: ArrayDataset) -> HistoryHook:
    """The owner's watermark accuracy (and p-value) after every epoch of an attack."""
    return HistoryHook(lambda m: _scores(m, parent.owner))


def _scale_record(runner: Runner) -> dict[str, Any]:
    return {"sizes": {d: {"owner": len(runner.data(d)[0]), "attacker": len(runner.data(f"{d}@attacker")[0]),
                          "test": len(runner.data(d)[1])} for d, _ in runner.scale.datasets}}


RUNS = Runs(STUDY, _load, key_summary,
            ("epoch", "loss", "task_loss", "train_accuracy", "test_accuracy", "watermark_accuracy", "log10_p_value",
             "seconds"),
            method=_method, describe=_describe, score=_score, record=_record, attack_data=_attack_data,
            attack_hook=_attack_hook, scale_record=_scale_record)
run = make_run(__package__, STUDY, "digits only, about a minute", "``quick``/``cpu``")
