"""Fine-pruning (Liu, Dolan-Gavitt, Garg, "Fine-Pruning: Defending Against Backdooring Attacks on Deep Neural
Networks", RAID 2018, §4): prune the units of the last hidden layer that stay dormant on clean data, then fine-tune.

A backdoor — and so a trigger-set watermark — tends to live in units that clean inputs hardly activate. §4.1 prunes
the last convolutional layer's channels in increasing order of their mean activation on clean validation data and
§4.3 fine-tunes the pruned network on clean data. netmark prunes the last hidden layer (the last Conv2d/Linear
before the output head: a channel is removed by zeroing its weights and bias, kept at zero while fine-tuning) by its
mean activation (after ReLU) on the thief's data, ``rate`` of its units, then fine-tunes all layers.

Threat model: the thief holds the stolen model and some clean data of the task (the attacker's split).

Args:
    rate: share of the layer's units pruned [0.5; the paper prunes until clean accuracy drops by 4 %].
    layer: the layer to prune (default: the last hidden Conv2d/Linear).
    train: the fine-tuning [1 epoch, SGD lr 0.01; ``epochs=0``: prune only].
    seed: the fine-tuning.

Example::

    stolen = FinePruning(FinePruningConfig(rate=0.6))(model, thief_data)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from netmark.attacks.base import Attack, AttackConfig, register_attack
from netmark.attacks.finetune import output_layer
from netmark.errors import ConfigError
from netmark.training import TrainConfig, TrainHook, evaluating, forward, iter_batches, model_device, to_device, train


@dataclass
class FinePruningConfig(AttackConfig):
    """Settings of :class:`FinePruning` (module docstring)."""

    rate: float = 0.5
    layer: str | None = None
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, lr=0.01, progress=False))

    def __post_init__(self) -> None:
        if isinstance(self.rate, bool) or not isinstance(self.rate, int | float) or not 0.0 <= float(self.rate) < 1.0:
            raise ConfigError(f"rate must be a share of units in [0, 1), got {self.rate!r}")
        if not isinstance(self.train, TrainConfig):
            raise ConfigError("FinePruningConfig.train must be a TrainConfig")


def last_hidden_layer(model: nn.Module) -> str:
    """The last Conv2d/Linear before the output head."""
    from netmark.models import conv_and_linear_layers

    names = list(conv_and_linear_layers(model))
    head = output_layer(model)
    hidden = [n for n in names if n != head]
    if not hidden:
        raise ConfigError("fine-pruning needs a hidden Conv2d/Linear layer before the output head")
    return hidden[-1]


@torch.no_grad()
def mean_activations(model: nn.Module, layer: str, data: Dataset, batch_size: int = 256) -> Tensor:
    """Mean of ``ReLU(output)`` of ``layer`` per unit (channel) over ``data``."""
    mod = model.get_submodule(layer)
    sums: list[Tensor] = []

    def grab(_: nn.Module, __: object, out: Tensor) -> None:
        a = out.detach().clamp_min(0)
        sums.append(a.mean(dim=(0, 2, 3)) if a.ndim == 4 else a.mean(dim=0))

    handle = mod.register_forward_hook(grab)
    try:
        with evaluating(model):
            for x, _ in iter_batches(data, batch_size):
                forward(model, to_device(x, model_device(model)))
    finally:
        handle.remove()
    return torch.stack(sums).mean(0).cpu()


class _KeepPruned(TrainHook):
    """Zeroes the pruned units' weights and bias again after every step (a removed unit stays removed)."""

    def __init__(self, layer: str, units: Tensor) -> None:
        self.layer, self.units = layer, units

    def after_step(self, model: nn.Module) -> None:
        zero_units(model.get_submodule(self.layer), self.units)


@torch.no_grad()
def zero_units(mod: nn.Module, units: Tensor) -> None:
    for attr in ("weight", "bias"):
        t = getattr(mod, attr, None)
        if isinstance(t, Tensor):
            t[units.to(t.device)] = 0


@register_attack
class FinePruning(Attack[FinePruningConfig]):
    """Prune the dormant units of the last hidden layer, then fine-tune (module docstring)."""

    name = "fine-pruning"
    needs_data = True
    VERSION = 1

    @classmethod
    def example_config(cls) -> FinePruningConfig:
        return FinePruningConfig(rate=0.5, train=TrainConfig(epochs=1, lr=0.01, batch_size=64, progress=False))

    def apply(self, model: nn.Module, data: Dataset | None) -> nn.Module:
        cfg = self.config
        if data is None:
            raise ConfigError("fine-pruning needs the thief's clean data")
        layer = cfg.layer or last_hidden_layer(model)
        from netmark.models import conv_and_linear_layers

        if layer not in conv_and_linear_layers(model):
            raise ConfigError(f"fine-pruning: the model has no Conv2d/Linear layer {layer!r}")
        act = mean_activations(model, layer, data)
        k = math.floor(float(cfg.rate) * len(act))
        units = torch.argsort(act, stable=True)[:k]  # most dormant first (ties: lower index first)
        zero_units(model.get_submodule(layer), units)
        if cfg.train.epochs > 0:
            train(model, data, replace(cfg.train, seed=cfg.seed), hooks=(_KeepPruned(layer, units),))
        return model
