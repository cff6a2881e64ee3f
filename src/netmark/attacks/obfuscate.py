"""Obfuscation, then fine-tuning: add dummy units, permute and rescale the hidden units, then keep training (issue 21,
item 4).

The combination the issue's evaluation sweeps: the zero-cost function-preserving obfuscations of
:mod:`netmark.attacks.dummy_neurons`, :mod:`netmark.attacks.permute` and :mod:`netmark.attacks.rescale` (Yan et al.,
USENIX Security 2023: neural structural obfuscation; in this order, so the dummy units are mixed among the real ones
and rescaled like them), followed by a short fine-tuning on the thief's data (:mod:`netmark.attacks.finetune`, same
domain, the output layer kept), so that the weights also move away from any alignment reference.

Threat model: the thief holds the stolen model and some data of the task; he spends the fine-tuning's compute only.

Args:
    fraction: share of the permutable (and, for the rescaling, scalable) unit spaces obfuscated [1.0].
    dummy_width: dummy units (``zero`` mode) added per widenable unit space, as a share of its units [0.5; 0: none,
        the attack of version 1].
    max_scale: rescaling factors log-uniform in ``[1/max_scale, max_scale]`` [4.0].
    train: the fine-tuning schedule [1 epoch, SGD lr 0.01]; ``epochs=0`` obfuscates only.
    seed: the permutations, the factors and the fine-tuning.

Example::

    stolen = Obfuscate(ObfuscateConfig(train=TrainConfig(epochs=1, lr=0.01)))(model, thief_data)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from torch import nn
from torch.utils.data import Dataset

from netmark.attacks.base import Attack, AttackConfig, register_attack
from netmark.attacks.dummy_neurons import DummyNeurons, DummyNeuronsConfig
from netmark.attacks.finetune import Finetune, FinetuneConfig
from netmark.attacks.permute import Permute, PermuteConfig
from netmark.attacks.rescale import Rescale, RescaleConfig
from netmark.errors import ConfigError
from netmark.training import TrainConfig


@dataclass
class ObfuscateConfig(AttackConfig):
    """Settings of :class:`Obfuscate` (module docstring)."""

    fraction: float = 1.0
    max_scale: float = 4.0
    dummy_width: float = 0.5
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, lr=0.01, progress=False))

    def __post_init__(self) -> None:
        if not isinstance(self.train, TrainConfig):
            raise ConfigError("ObfuscateConfig.train must be a TrainConfig")
        self.permute_config()  # validates fraction
        self.rescale_config()  # validates max_scale
        self.dummy_config()  # validates dummy_width

    def dummy_config(self) -> DummyNeuronsConfig:
        return DummyNeuronsConfig(seed=self.seed + 3, fraction=self.fraction, width=self.dummy_width)

    def permute_config(self) -> PermuteConfig:
        return PermuteConfig(seed=self.seed, fraction=self.fraction)

    def rescale_config(self) -> RescaleConfig:
        return RescaleConfig(seed=self.seed + 1, fraction=self.fraction, max_scale=self.max_scale)


@register_attack
class Obfuscate(Attack[ObfuscateConfig]):
    """Add dummy units, permute, rescale, then fine-tune (module docstring)."""

    name = "obfuscate"
    needs_data = True
    VERSION = 2

    @classmethod
    def example_config(cls) -> ObfuscateConfig:
        return ObfuscateConfig(train=TrainConfig(epochs=1, lr=0.01, batch_size=64, progress=False))

    def apply(self, model: nn.Module, data: Dataset | None) -> nn.Module:
        cfg = self.config
        model = Rescale(cfg.rescale_config())(Permute(cfg.permute_config())(DummyNeurons(cfg.dummy_config())(model)))
        if cfg.train.epochs == 0 or data is None:  # data: always given (needs_data), checked by Attack.__call__
            return model
        tuned = FinetuneConfig(seed=cfg.seed + 2, train=replace(cfg.train, seed=cfg.seed + 2), new_head=False)
        return Finetune(tuned)(model, data)
