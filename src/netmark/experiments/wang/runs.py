"""The runs of :mod:`.spec`'s ``STUDY`` (:data:`RUNS`): their data roles, the method that embeds them, their records."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F

from netmark.bench.reproduce import make_run
from netmark.bench.runner import Runner, Runs
from netmark.data import ArrayDataset, load
from netmark.errors import ConfigError
from netmark.keys import WatermarkKey
from netmark.methods.base import WatermarkMethod
from netmark.methods.uchida import Uchida, UchidaConfig
from netmark.methods.wang import Wang, paper_config

from .spec import STUDY, RunSpec

#: fixed derangement of the 10 labels for the ``permuted-labels`` different domain (y → 3y + 1 mod 10).
PERMUTATION = tuple((3 * y + 1) % 10 for y in range(10))


def selected_weights(key: WatermarkKey) -> dict[str, int]:
    """``{"selected_weights": n}``: the host weights a Wang key reads (an Uchida key: nothing)."""
    return {"selected_weights": int((key.tensors["selection"] != 0).sum())} if key.method == "wang" else {}


def key_summary(key: WatermarkKey) -> dict[str, Any]:
    out: dict[str, Any] = {"method": key.method, "seed": key.seed, "layer": key.layer, "bits": len(key.message),
                           "fingerprint": key.fingerprint}
    if key.method == "wang":
        out.update(variant=key.config.get("variant"), converge_epochs=key.config.get("converge_epochs"),
                   **selected_weights(key), M=int(key.tensors["selection"].numel()))
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


def _load(runner: Runner, role: str) -> tuple[ArrayDataset, ArrayDataset]:
    """``(train, test)`` for ``main`` / ``small`` / ``sd`` / ``dd`` and the conv part's ``conv-main`` / ``conv-sd`` /
    ``conv-dd``."""
    sc, data_dir = runner.scale, runner.data_dir
    kw = {"data_dir": data_dir, "split_seed": sc.split_seed, "val_size": sc.val_size}
    if role == "main":
        return load(sc.dataset, "train", **kw), load(sc.dataset, "test", data_dir=data_dir)
    if role in ("dd", "conv-dd") and sc.dd_source == "digits-28":  # another label space (conv: a new head)
        return (digits_28(load("digits", "train", data_dir=data_dir, split_seed=sc.split_seed)),
                digits_28(load("digits", "test", data_dir=data_dir)))
    if role in ("dd", "conv-dd"):
        tr, te = runner.data("main" if role == "dd" else "conv-main")
        return permuted_labels(tr), permuted_labels(te)
    test = runner.data("main")[1]
    if role == "small":
        return load(sc.dataset, "train", train_size=sc.small_train_size, **kw), test
    if role == "sd":
        return load(sc.dataset, "val", **kw), test
    if role == "conv-main":
        return load(sc.dataset, "train", train_size=sc.conv_train_size, **kw), test
    if role == "conv-sd":
        tr = load(sc.dataset, "val", **kw)
        return (tr.subset(range(sc.conv_sd_size)) if sc.conv_sd_size is not None and sc.conv_sd_size < len(tr)
                else tr), test
    raise ConfigError(f"unknown data role {role!r}")


def layer_of(runner: Runner, spec: RunSpec) -> str:
    """The host layer of a run's part."""
    return runner.scale.conv_layer if spec.part == "conv" else runner.scale.layer


def method(runner: Runner, spec: RunSpec) -> WatermarkMethod | None:
    """The method that embeds ``spec`` (``None``: a plain run)."""
    sc, bits, conv = runner.scale, spec.bits or runner.scale.bits, spec.part == "conv"
    if spec.method is None:
        return None
    if spec.method == "uchida":
        return Uchida(UchidaConfig(layer=layer_of(runner, spec), bits=bits, strength=sc.uchida_strength,
                                   average=False))
    if spec.method in ("manu", "auto"):
        # the extractor's optimizer follows the host's (the paper trains both with one optimizer)
        sgd = conv and sc.conv_train is not None and sc.conv_train.optimizer == "sgd"
        cfg = paper_config("vgg16" if sgd else "mlp", spec.method, bits)  # type: ignore[arg-type]
        # harden_steps=0: the committed runs predate the hardening step (issue 18); a re-run reproduces them
        return Wang(replace(cfg, layer=layer_of(runner, spec), converge_epochs=sc.conv_converge_epochs if conv
                            else sc.converge_epochs, harden_steps=0))
    raise ConfigError(f"unknown method {spec.method!r}")


def _model(runner: Runner, spec: RunSpec) -> str:
    return str(runner.scale.conv_model) if spec.part == "conv" else runner.scale.model


def _scale_record(runner: Runner) -> dict[str, Any]:
    sc, tr = runner.scale, runner.data("main")[0]
    return {"small_train_size_used": len(runner.data("small")[0]), "sd_size": len(runner.data("sd")[0]),
            "dd_size": len(runner.data("dd")[0]), "dd_test_size": len(runner.data("dd")[1]),
            "host_M": int(runner.fresh_model(tr, 0).get_parameter(f"{sc.layer}.weight").numel())}


RUNS = Runs(STUDY, _load, key_summary,
            ("epoch", "loss", "task_loss", "wang_loss", "embed_loss", "wang_l2", "bit_error_rate", "wang_selected",
             "train_accuracy", "test_accuracy", "seconds"),
            method=method, model=_model, scale_record=_scale_record)
run = make_run(__package__, STUDY, "digits + mlp, under a minute", "``quick``/``cpu``")
