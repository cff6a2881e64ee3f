"""The runs of :mod:`.spec`'s ``STUDY``: their data roles, the methods that train them, their records."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from netmark.bench.study import make_run
from netmark.data import ArrayDataset, load
from netmark.errors import ConfigError
from netmark.experiments.common import RunnerBase, TrainedBase
from netmark.keys import WatermarkKey
from netmark.methods import verify
from netmark.methods.base import WatermarkMethod
from netmark.methods.uchida import Uchida, UchidaConfig
from netmark.methods.wang import Wang, paper_config

from .spec import STUDY, RunSpec, Scale

#: fixed derangement of the 10 labels for the ``permuted-labels`` different domain (y → 3y + 1 mod 10).
PERMUTATION = tuple((3 * y + 1) % 10 for y in range(10))
_HISTORY_KEYS = ("epoch", "loss", "task_loss", "wang_loss", "embed_loss", "wang_l2", "bit_error_rate",
                 "wang_selected", "train_accuracy", "test_accuracy", "seconds")


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


@dataclass
class Trained(TrainedBase):
    """A model of the reproduction, with the owner key it carries (own or inherited)."""

    HISTORY_KEYS: ClassVar[tuple[str, ...]] = _HISTORY_KEYS
    key_summary = staticmethod(key_summary)


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


class Runner(RunnerBase[Scale, RunSpec, Trained]):
    """Loads the data of a :class:`Scale` and trains/derives runs on demand, each once."""

    STUDY = STUDY
    TRAINED = Trained

    def _load(self, role: str) -> tuple[ArrayDataset, ArrayDataset]:
        """``(train, test)`` for ``main`` / ``small`` / ``sd`` / ``dd``."""
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
        elif role == "conv-main":
            tr, te = load(sc.dataset, "train", train_size=sc.conv_train_size, **kw), self.data("main")[1]
        elif role == "conv-sd":
            tr, te = load(sc.dataset, "val", **kw), self.data("main")[1]
            if sc.conv_sd_size is not None and sc.conv_sd_size < len(tr):
                tr = tr.subset(range(sc.conv_sd_size))
        elif role == "conv-dd" and sc.dd_source == "digits-28":  # another label space, learnt by a new head
            tr, te = self.data("dd")
        elif role == "conv-dd":
            tr, te = (permuted_labels(d) for d in self.data("conv-main"))
        else:
            raise ConfigError(f"unknown data role {role!r}")
        return tr, te

    def method(self, spec: RunSpec) -> WatermarkMethod:
        sc, bits, conv = self.scale, spec.bits or self.scale.bits, spec.part == "conv"
        layer = sc.conv_layer if conv else sc.layer
        if spec.method == "uchida":
            return Uchida(UchidaConfig(layer=layer, bits=bits, strength=sc.uchida_strength, average=False))
        if spec.method in ("manu", "auto"):
            # the extractor's optimizer follows the host's (the paper trains both with one optimizer)
            sgd = conv and sc.conv_train is not None and sc.conv_train.optimizer == "sgd"
            cfg = paper_config("vgg16" if sgd else "mlp", spec.method, bits)  # type: ignore[arg-type]
            # harden_steps=0: the committed runs predate the hardening step (issue 18); a re-run reproduces them
            return Wang(replace(cfg, layer=layer, converge_epochs=sc.conv_converge_epochs if conv
                                else sc.converge_epochs, harden_steps=0))
        raise ConfigError(f"unknown method {spec.method!r}")

    def _model_name(self, spec: RunSpec) -> str:
        return str(self.scale.conv_model) if spec.part == "conv" else self.scale.model

    def layer_of(self, spec: RunSpec) -> str:
        """The host layer of a run's part."""
        return self.scale.conv_layer if spec.part == "conv" else self.scale.layer

    def _method(self, spec: RunSpec) -> WatermarkMethod | None:
        return None if spec.method is None else self.method(spec)

    def _describe(self, spec: RunSpec) -> str:
        return "plain" if spec.method is None else f"{spec.method}, {spec.bits} bits"

    def _owner_score(self, trained: Trained) -> str:
        assert trained.key is not None  # _summary asks for marked runs only
        return f"owner bit accuracy {100 * (verify(trained.model, trained.key).score):.2f}%"

    # ------------------------------------------------------------------ results

    def scale_record(self) -> dict[str, Any]:
        sc, tr = self.scale, self.data("main")[0]
        return {"small_train_size_used": len(self.data("small")[0]), "sd_size": len(self.data("sd")[0]),
                "dd_size": len(self.data("dd")[0]), "dd_test_size": len(self.data("dd")[1]),
                "host_M": int(self.fresh_model(tr, 0).get_parameter(f"{sc.layer}.weight").numel())}


run = make_run(__package__, STUDY, "digits + mlp, under a minute", "``quick``/``cpu``")
