"""Per-unit rescaling across ReLU: change every hidden unit's scale without changing what the network computes.

Yan et al., "Rethinking white-box watermarks on deep learning models under neural structural obfuscation" (USENIX
Security 2023) and Li et al., neuron alignment (arXiv 2112.14108): ReLU is positively homogeneous, ``ReLU(c·z) =
c·ReLU(z)`` for ``c > 0`` (and so are max and average pooling), so multiplying a hidden unit's incoming weights and
bias by ``c`` and its outgoing weights by ``1/c`` keeps the function while every keyed weight of the unit changes
(the sign of each weight is kept, its magnitude is not). Where a BatchNorm directly follows the layer writing the
unit, its weight and bias carry ``c`` instead (exact in eval mode, where it is an affine map per channel).

Threat model: the thief has the stolen model only (no data, no training, no cost). Only spaces where this is exact
are rescaled (:mod:`netmark.models.structure`): not the output layer, not a residual or zero-padded stream (several
layers write it), not a space passing through a non-homogeneous op (e.g. a sigmoid).

Args:
    layers: names of the conv/linear layers whose output units to rescale, or ``None`` (default) for every scalable
        unit space.
    fraction: share of those spaces rescaled (default 1.0), chosen at random: the strength axis of ``netmark
        evaluate``.
    max_scale: factors are drawn log-uniform in ``[1/max_scale, max_scale]`` (default 4.0; must be > 1).
    seed: draws the chosen spaces and the factors.

Example::

    attacked = Rescale(RescaleConfig(seed=3, max_scale=10.0))(model)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from netmark.attacks.base import register_attack
from netmark.attacks.permute import ObfuscationAttack, ObfuscationConfig
from netmark.errors import ConfigError
from netmark.models.structure import UnitSpace, apply_scaling


@dataclass
class RescaleConfig(ObfuscationConfig):
    """Settings of :class:`Rescale` (module docstring)."""

    max_scale: float = 4.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if (isinstance(self.max_scale, bool) or not isinstance(self.max_scale, int | float)
                or not math.isfinite(self.max_scale) or not 1.0 < self.max_scale <= 1e6):
            raise ConfigError(f"max_scale must be a number in (1, 1e6], got {self.max_scale!r}")


@register_attack
class Rescale(ObfuscationAttack[RescaleConfig]):
    """Random positive per-unit scaling of every chosen unit space (module docstring)."""

    name = "rescale"
    VERSION = 1
    verb = "rescaled"

    def why_not(self, space: UnitSpace, spaces: list[UnitSpace]) -> str | None:
        return None if space.scalable else space.reason or "they cannot be rescaled"

    def obfuscate(self, model: nn.Module, spaces: list[UnitSpace], chosen: list[UnitSpace],
                  gen: torch.Generator) -> None:
        log_max = math.log(float(self.config.max_scale))
        for space in chosen:
            u = torch.rand(space.size, generator=gen, dtype=torch.float64)
            apply_scaling(model, space, torch.exp((2.0 * u - 1.0) * log_max))


def rescale(model: nn.Module, config: RescaleConfig | None = None) -> nn.Module:
    """Functional form of :class:`Rescale`."""
    return Rescale(config)(model)
