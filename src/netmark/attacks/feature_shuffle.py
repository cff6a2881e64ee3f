"""Feature shuffling (Lukas et al., "SoK: How Robust is Image Classification Deep Neural Network Watermarking?",
S&P 2022, §V, model modification; WRT toolbox ``wrt/attacks/removal/feature_shuffling.py``): the thief shuffles the
order of the hidden features, against schemes that read a layer's activations or weights by position.

What the toolbox does: its ``FeatureShuffling`` attack sets a flag of the classifier wrapper that reorders the hidden
activations it hands to a feature-reading verifier; the model's weights and outputs are untouched. In weight space,
reordering the hidden features *while keeping the function* is exactly netmark's function-preserving ``permute``
(Yan et al. 2023), which is not repeated here. This module implements the other reading, the one that changes the
model: a share ``fraction`` of the units of every hidden unit space (:func:`netmark.models.structure.unit_spaces`)
is permuted on the *writing* side only (the producers' weight rows and biases, their BatchNorms) while the layers
reading them keep reading by position, so the features they receive are shuffled and the function changes; the
thief then fine-tunes on his data to recover the accuracy (``train``). With ``train.epochs = 0`` it is the shuffle
alone. A space that cannot be permuted (the classes, the input, an unknown op) or that embeds another (option-A
padded residual streams) is left alone. This is netmark's reading, stated here because the SoK defines the attack
by its name and the toolbox's own code only touches the verifier's view.

Threat model: the thief holds the stolen model and some labelled data of the task (the attacker's split).

Args:
    fraction: share of the units of each hidden space shuffled [0.25]: the strength axis of ``netmark evaluate``
        (1.0: every unit of every space moves).
    train: the fine-tuning [1 epoch, SGD lr 0.01].
    seed: which units, their permutation and the fine-tuning.

Example::

    stolen = FeatureShuffle(FeatureShuffleConfig(fraction=0.5))(model, thief_data)
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace

import torch
from torch import nn
from torch.utils.data import Dataset

from netmark._util import generator
from netmark.attacks.base import Attack, AttackConfig, register_attack
from netmark.errors import ConfigError
from netmark.models.structure import UnitSpace, apply_permutation, unit_spaces
from netmark.training import TrainConfig, train

log = logging.getLogger(__name__)


@dataclass
class FeatureShuffleConfig(AttackConfig):
    """Settings of :class:`FeatureShuffle` (module docstring)."""

    fraction: float = 0.25
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, lr=0.01, progress=False))

    def __post_init__(self) -> None:
        if (isinstance(self.fraction, bool) or not isinstance(self.fraction, int | float)
                or not 0.0 <= float(self.fraction) <= 1.0):
            raise ConfigError(f"fraction must be a share of the units in [0, 1], got {self.fraction!r}")
        if not isinstance(self.train, TrainConfig):
            raise ConfigError("FeatureShuffleConfig.train must be a TrainConfig")


def partial_permutation(size: int, fraction: float, gen: torch.Generator) -> torch.Tensor:
    """A permutation of ``range(size)`` that moves a random ``ceil(fraction·size)`` of the positions among
    themselves (a cyclic shift of them, so each chosen position really moves when two or more are chosen)."""
    k = math.ceil(fraction * size)
    perm = torch.arange(size)
    if k >= 2:
        chosen = torch.randperm(size, generator=gen)[:k]
        perm[chosen] = chosen.roll(1)
    return perm


def shuffle_space(model: nn.Module, space: UnitSpace, perm: torch.Tensor) -> None:
    """Reorder the units of ``space`` on the writing side only (producers and norms); its readers are unchanged."""
    apply_permutation(model, replace(space, consumers=()), perm)


@register_attack
class FeatureShuffle(Attack[FeatureShuffleConfig]):
    """Shuffle a share of every hidden layer's features, then fine-tune (module docstring)."""

    name = "feature-shuffle"
    needs_data = True
    VERSION = 1

    @classmethod
    def example_config(cls) -> FeatureShuffleConfig:
        return FeatureShuffleConfig(train=TrainConfig(epochs=1, lr=0.01, batch_size=64, progress=False))

    def apply(self, model: nn.Module, data: Dataset | None) -> nn.Module:
        cfg = self.config
        if data is None:
            raise ConfigError("feature-shuffle needs the thief's data to fine-tune")
        spaces = [s for s in unit_spaces(model) if s.permutable and s.parent is None and s.size >= 2]
        if not spaces:
            raise ConfigError("feature-shuffle: the model has no hidden unit space that can be shuffled")
        gen = generator(cfg.seed)
        for s in spaces:
            shuffle_space(model, s, partial_permutation(s.size, float(cfg.fraction), gen))
        log.info("feature-shuffle: %.0f%% of the units of %d spaces shuffled", 100 * cfg.fraction, len(spaces))
        if cfg.train.epochs > 0:
            train(model, data, replace(cfg.train, seed=cfg.seed))
        return model
