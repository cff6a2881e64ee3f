"""Weight quantization (Uchida et al. 2017 §4.3 mentions it beside pruning: Han et al.'s deep
compression prunes, then quantizes weights; Uchida argues quantization "has less impact than
parameter pruning" and does not evaluate it — netmark measures it).

Threat model: the thief compresses the stolen model by rounding every weight of one layer (or of
all conv/linear layers) to ``2**bits`` uniformly spaced levels, without retraining.

Args:
    bits: bits per weight (1–16); 8 is typical deployment, 2–4 aggressive compression.
    layer: module name, or ``None`` for all conv/linear layers.
    per_channel: one scale per output channel (as deployment toolchains do) instead of per layer.

Example::

    small = quantize(model, QuantizeConfig(bits=4))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from netmark.attacks.base import AttackConfig, TensorAttack, register_attack
from netmark.errors import ConfigError


@dataclass
class QuantizeConfig(AttackConfig):
    bits: int = 8
    layer: str | None = None
    per_channel: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 1 <= self.bits <= 16:
            raise ConfigError(f"quantization bits must be an integer in 1..16, got {self.bits!r}")


def quantize_tensor(w: torch.Tensor, bits: int, per_channel: bool = True) -> torch.Tensor:
    """Symmetric uniform quantization to ``2**bits - 1`` levels (1 bit: sign × mean |w|)."""
    w = w.detach()
    dims = tuple(range(1, w.ndim)) if per_channel and w.ndim > 1 else tuple(range(w.ndim))
    if bits == 1:
        return torch.sign(w) * w.abs().mean(dim=dims, keepdim=True)
    levels = 2 ** (bits - 1) - 1
    scale = w.abs().amax(dim=dims, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny) / levels
    return torch.round(w / scale).clamp(-levels, levels) * scale


@register_attack
class Quantize(TensorAttack[QuantizeConfig]):
    """Uniform weight quantization (see module docstring)."""

    name = "quantize"

    def transform(self, t: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return quantize_tensor(t, self.config.bits, self.config.per_channel)


def quantize(model: nn.Module, config: QuantizeConfig | None = None) -> nn.Module:
    """Functional form of :class:`Quantize`."""
    return Quantize(config)(model)
