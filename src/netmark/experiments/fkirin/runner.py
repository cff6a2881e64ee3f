"""The runs of :mod:`.spec`'s ``STUDY``: their data roles, the methods that train them, their records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from netmark.bench.study import make_run
from netmark.data import ArrayDataset, load
from netmark.errors import ConfigError
from netmark.experiments.common import RunnerBase, TrainedBase
from netmark.keys import WatermarkKey
from netmark.methods.base import WatermarkMethod
from netmark.training import TrainHook, evaluate

from .spec import STUDY, RunSpec, Scale

_HISTORY_KEYS = ("epoch", "loss", "task_loss", "train_accuracy", "test_accuracy", "watermark_accuracy",
                 "log10_p_value", "seconds")


def scheme_method(scheme: str, scale: Scale, *, null_models: int) -> WatermarkMethod:
    """The method (and config) that embeds ``scheme`` at ``scale``."""
    from netmark.methods import get_method

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
    from netmark.methods import method_from_key

    return method_from_key(key).query_verifiable()


def watermark_score(model: nn.Module, key: WatermarkKey) -> tuple[float, float | None]:
    """``(watermark accuracy, log10 p-value)``: trigger accuracy (bit accuracy for a white-box key); the
    p-value only when the key can be decided (random labels, or calibrated)."""
    from netmark.methods import method_from_key

    method = method_from_key(key)
    if black_box(key) and not key.message_random and "null_counts" not in key.tensors:  # cannot be decided
        return float(method.extract(model, key).details["trigger_accuracy"]), None
    res = method.verify(model, key)  # a trigger set's score is its trigger accuracy
    return float(res.score), float(res.details["log10_p_value"])


def key_summary(key: WatermarkKey) -> dict[str, Any]:
    return {"method": key.method, "seed": key.seed, "mode": key.config.get("mode"), "size": key.config.get("size"),
            "labels_random": key.message_random, "calibrated": "null_counts" in key.tensors,
            "fingerprint": key.fingerprint}


class ScoreHook(TrainHook):
    """Puts the owner's watermark accuracy (and p-value) into the metrics after every epoch of an attack."""

    def __init__(self, key: WatermarkKey) -> None:
        self.key = key
        self.history: list[dict[str, float]] = []

    def on_epoch_end(self, model: nn.Module, epoch: int, metrics: dict[str, float]) -> None:
        acc, lg = watermark_score(model, self.key)
        metrics["watermark_accuracy"] = acc
        if lg is not None:
            metrics["log10_p_value"] = lg
        self.history.append(dict(metrics))


@dataclass
class Trained(TrainedBase):
    """A model of the reproduction with the key it carries (None: unmarked)."""

    HISTORY_KEYS: ClassVar[tuple[str, ...]] = _HISTORY_KEYS
    key_summary = staticmethod(key_summary)

    def _extra_record(self) -> dict[str, Any]:
        if self.key is None:
            return {}
        acc, lg = watermark_score(self.model, self.key)
        return {"watermark_accuracy": acc, "log10_p_value": lg}


class Runner(RunnerBase[Scale, RunSpec, Trained]):
    STUDY = STUDY
    TRAINED: ClassVar[type[TrainedBase]] = Trained

    @property
    def main(self) -> str:
        return self.scale.datasets[0][0]

    def _load(self, role: str) -> tuple[ArrayDataset, ArrayDataset]:
        """``main`` / a dataset name: the owner's part; ``<dataset>@attacker``: the attacker's disjoint part."""
        name, _, part = (self.main if role == "main" else role).partition("@")
        sizes = dict(self.scale.datasets)
        if name not in sizes:
            raise ConfigError(f"unknown data role {role!r}")
        test = load(name, "test", data_dir=self.data_dir)
        common = {"data_dir": self.data_dir, "val_size": self.scale.attacker_size, "split_seed": self.scale.split_seed}
        if part == "attacker":
            return load(name, "val", **common), test
        return load(name, "train", train_size=sizes[name], **common), test


    def _method(self, spec: RunSpec) -> WatermarkMethod | None:
        if spec.scheme is None:
            return None
        checked = spec.dataset == self.main and spec.optimizer == "sgd" and spec.run == 0
        return scheme_method(spec.scheme, self.scale, null_models=self.scale.null_models if checked else 0)

    def _describe(self, spec: RunSpec) -> str:
        return "unmarked" if spec.scheme is None else f"{spec.scheme}, {spec.optimizer} lr {spec.lr:g}"

    def _owner_score(self, trained: Any) -> str:
        return f"watermark accuracy {100 * watermark_score(trained.model, trained.key)[0]:.1f}%"

    def _attack_data(self, spec: RunSpec) -> str:
        return f"{spec.dataset}@attacker"

    def _attack_hook(self, parent: Trained, test: ArrayDataset) -> ScoreHook:
        return ScoreHook(parent.key)  # type: ignore[arg-type]

    def scale_record(self) -> dict[str, Any]:
        return {"sizes": {d: {"owner": len(self.data(d)[0]), "attacker": len(self.data(f"{d}@attacker")[0]),
                              "test": len(self.data(d)[1])} for d, _ in self.scale.datasets}}

    def accuracy(self, model: nn.Module, dataset: str) -> float:
        return evaluate(model, self.data(dataset)[1])["accuracy"]


run = make_run(__package__, STUDY, "digits only, about a minute", "``quick``/``cpu``")
