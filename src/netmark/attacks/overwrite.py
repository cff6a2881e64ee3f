"""Watermark overwriting (Uchida et al. 2017 §5.1 "Watermark overwriting").

Threat model: the thief knows the scheme (and, worst case, the host layer) but not the
owner's key; they embed a second watermark of their own with an attacker key into the same
layer while fine-tuning on their data, hoping to erase the owner's. Uchida reports 30.9%,
8.6% and 0.4% bit errors on 256-bit owner watermarks in the conv 2/3/4 groups of WRN after
a 256-bit overwrite.

Args:
    method: scheme the attacker embeds with (registered name, paper: ``uchida``).
    method_config: that scheme's options (e.g. ``{"layer": "conv2", "bits": 256}``);
        ``None`` = the scheme's defaults (Uchida: 256 bits, auto-picked layer).
    train: the fine-tuning schedule used while embedding the attacker watermark.
    seed: generates the attacker key.

The attacker's key is kept on the attack object (``attack.attacker_key``) after a call.

Example::

    atk = Overwrite(OverwriteConfig(method_config={"layer": "conv2"}, seed=666))
    stolen = atk(model, thief_data)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from netmark.attacks.base import Attack, AttackConfig, register_attack
from netmark.errors import ConfigError
from netmark.keys import WatermarkKey
from netmark.training import TrainConfig, train


@dataclass
class OverwriteConfig(AttackConfig):
    method: str = "uchida"
    method_config: dict[str, Any] | None = None
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=10, lr=0.01, progress=False))
    seed: int = 666

    def __post_init__(self) -> None:
        if not isinstance(self.train, TrainConfig):
            raise ConfigError("OverwriteConfig.train must be a TrainConfig")
        from netmark.methods import get_method

        cls = get_method(self.method)
        cls.config_cls.from_dict(self.method_config or {})  # validate early


@register_attack
class Overwrite(Attack[OverwriteConfig]):
    """Embed an attacker watermark over the owner's (see module docstring)."""

    name = "overwrite"
    needs_data = True

    def __init__(self, config: OverwriteConfig | None = None) -> None:
        super().__init__(config)
        self.attacker_key: WatermarkKey | None = None

    def apply(self, model: nn.Module, data: Dataset | None) -> nn.Module:
        from netmark.methods import get_method

        if data is None:
            raise ConfigError("the overwrite attack needs training data")
        cls = get_method(self.config.method)
        method = cls(cls.config_cls.from_dict(self.config.method_config or {}))
        # keys made from training images (zhang-content, frontier stitching, DeepSigns) take the attacker's
        key = method.create_key(model, seed=self.config.seed, data=data)
        hook = method.hook(key)
        train(model, data, self.config.train, hooks=[hook])
        # the attacker's key in its final form (Wang: the trained extractor); no null calibration (null_models=[])
        self.attacker_key = method.finalize(key, model, hook=hook, null_models=[])
        return model


def overwrite(model: nn.Module, data: Dataset, config: OverwriteConfig | None = None) -> nn.Module:
    """Functional form of :class:`Overwrite`."""
    return Overwrite(config)(model, data)
