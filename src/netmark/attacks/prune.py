"""Parameter pruning (Uchida et al. 2017 §4.3 "Robustness against Model Compression", Fig. 5;
Wang et al. 2020 "Model Compression").

Threat model: the thief compresses the stolen model by zeroing a fraction ``rate`` of the
weights of one layer (``layer=...``, Uchida prunes the host layer) or of every conv/linear
layer (``layer=None``, each layer pruned by the same rate), without retraining.

Args:
    rate: fraction α of weights set to zero, in [0, 1] (Uchida: up to 0.65 keeps BER 0).
    order: ``ascending`` = smallest |w| first (real magnitude pruning, Han et al.),
        ``descending`` = largest first, ``random`` (Uchida's comparison curves).
    layer: module name, or ``None`` for all conv/linear layers.
    seed: for ``random`` order.

Example::

    pruned = prune(model, PruneConfig(rate=0.65, order="ascending", layer="conv2"))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from netmark._util import check_choice
from netmark.attacks.base import AttackConfig, TensorAttack, register_attack
from netmark.errors import ConfigError

PruneOrder = Literal["ascending", "descending", "random"]
ORDERS: tuple[PruneOrder, ...] = ("ascending", "descending", "random")


@dataclass
class PruneConfig(AttackConfig):
    rate: float = 0.65
    order: PruneOrder = "ascending"
    layer: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.rate, int | float) or not 0.0 <= float(self.rate) <= 1.0:
            raise ConfigError(f"pruning rate must be in [0, 1], got {self.rate!r}")
        check_choice("order", self.order, ORDERS)


def prune_tensor(w: torch.Tensor, rate: float, order: str, gen: torch.Generator | None = None) -> torch.Tensor:
    """Return a copy of ``w`` with ``round(rate·numel)`` entries zeroed in the given order."""
    flat = w.detach().reshape(-1).clone()
    k = round(rate * flat.numel())
    if k == 0:
        return flat.reshape(w.shape)
    if order == "random":
        idx = torch.randperm(flat.numel(), generator=gen)[:k]
    else:
        idx = torch.argsort(flat.abs(), descending=(order == "descending"), stable=True)[:k]
    flat[idx] = 0.0
    return flat.reshape(w.shape)


@register_attack
class Prune(TensorAttack[PruneConfig]):
    """Magnitude / random parameter pruning (see module docstring)."""

    name = "prune"

    def transform(self, t: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return prune_tensor(t, self.config.rate, self.config.order, gen)


def prune(model: nn.Module, config: PruneConfig | None = None) -> nn.Module:
    """Functional form of :class:`Prune`."""
    return Prune(config)(model)
