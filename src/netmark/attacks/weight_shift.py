"""Weight shifting (Lukas, Jiang, Li, Kerschbaum, "SoK: How Robust is Image Classification Deep Neural Network
Watermarking?", S&P 2022, §V "Weight Shifting", one of the SoK's novel attacks; WRT toolbox
``wrt/attacks/removal/weight_shifting.py`` and ``configs/cifar10/attack_configs/weight_shifting.yaml``).

An adaptive attack on white-box schemes that read a layer's weights through their mean over the filters (Uchida et
al. 2017 embed into ``w = mean over the L filters``; DeepSigns-style keys also read fixed positions). Every
convolution weight ``W`` (``(out, in, kh, kw)``) is shifted by its mean filter and noised::

    W ← W − λ · mean_out(W) − λ₂ · N(0, std(W)²)

With λ > 1 the mean filter changes sign (it becomes ``(1 − λ)·mean``), so every bit read through a projection of it
flips; the noise hides the shift. The accuracy lost is then recovered by fine-tuning on the thief's data (WRT: 10
epochs on CIFAR-10, with the stolen model's own predictions as labels: ``true_labels: False``).

Defaults are the toolbox's CIFAR-10 config: ``shift`` λ = 1.5, ``noise`` λ₂ = 1.0, 10 epochs of fine-tuning, labels
from the stolen model (``relabel``). netmark departs in one point: ``linear=True`` also shifts the Linear layers'
weights (the toolbox shifts parameters whose name contains ``conv``; netmark's Uchida may host its mark in a Linear
layer), default False as in the toolbox.

Threat model: the thief holds the stolen model and some data of the task (its labels are not needed with
``relabel``).

Args:
    shift: λ, the share of the mean filter subtracted [1.5]: the strength axis of ``netmark evaluate``.
    noise: λ₂, the Gaussian noise in units of each weight tensor's standard deviation [1.0].
    linear: also shift the Linear layers' weights [False].
    relabel: fine-tune on the stolen model's predictions instead of the data's labels [True].
    train: the fine-tuning [10 epochs, SGD lr 0.01; ``epochs=0``: shift only].
    seed: the noise and the fine-tuning.

Example::

    stolen = WeightShift(WeightShiftConfig(shift=2.0))(model, thief_data)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import nn
from torch.utils.data import Dataset

from netmark._util import check_bool, check_finite, generator
from netmark.attacks.base import Attack, AttackConfig, register_attack
from netmark.attacks.extraction import ask
from netmark.data import TensorPairs, inputs_of
from netmark.errors import ConfigError
from netmark.training import TrainConfig, train


@dataclass
class WeightShiftConfig(AttackConfig):
    """Settings of :class:`WeightShift` (module docstring)."""

    shift: float = 1.5
    noise: float = 1.0
    linear: bool = False
    relabel: bool = True
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=10, lr=0.01, progress=False))

    def __post_init__(self) -> None:
        check_finite("shift", self.shift, positive=False)
        check_finite("noise", self.noise, positive=False)
        check_bool("linear", self.linear)
        check_bool("relabel", self.relabel)
        if not isinstance(self.train, TrainConfig):
            raise ConfigError("WeightShiftConfig.train must be a TrainConfig")


def shifted(w: torch.Tensor, shift: float, noise: float, gen: torch.Generator) -> torch.Tensor:
    """``w − shift · mean over dim 0 − noise · N(0, std(w)²)`` (the noise drawn on the CPU from ``gen``)."""
    eps = torch.randn(w.shape, generator=gen, dtype=torch.float32).to(w.device, w.dtype)
    return w - shift * w.mean(0, keepdim=True) - noise * w.std() * eps


def relabelled(model: nn.Module, data: Dataset) -> TensorPairs:
    """The thief's inputs labelled with ``model``'s top-1 predictions (the toolbox's ``true_labels: False``)."""
    x = inputs_of(data)
    return TensorPairs(x, ask(model, x, "label", 512))


@register_attack
class WeightShift(Attack[WeightShiftConfig]):
    """Shift every conv filter bank by its mean filter, add noise, fine-tune (module docstring)."""

    name = "weight-shift"
    needs_data = True
    VERSION = 1

    @classmethod
    def example_config(cls) -> WeightShiftConfig:
        return WeightShiftConfig(train=TrainConfig(epochs=1, lr=0.01, batch_size=64, progress=False))

    def apply(self, model: nn.Module, data: Dataset | None) -> nn.Module:
        cfg = self.config
        if data is None:
            raise ConfigError("weight-shift needs the thief's data to fine-tune")
        kinds: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear) if cfg.linear else (nn.Conv2d,)
        weights = [m.weight for m in model.modules() if isinstance(m, kinds) and isinstance(m.weight, torch.Tensor)]
        if not weights:
            raise ConfigError("weight-shift: the model has no " + ("Conv2d/Linear" if cfg.linear else "Conv2d")
                              + " layer (set linear=true to shift Linear layers)")
        fit_data = relabelled(model, data) if cfg.relabel else data
        gen = generator(cfg.seed)
        with torch.no_grad():
            for w in weights:
                w.copy_(shifted(w, float(cfg.shift), float(cfg.noise), gen))
        if cfg.train.epochs > 0:
            train(model, fit_data, replace(cfg.train, seed=cfg.seed))
        return model
