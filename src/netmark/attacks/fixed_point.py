"""Fixed-point compression (Tartaglione et al. 2021 §IV "compression", Fig. 4b/5b/6b: "all the floating
point parameters are first converted into fixed point representation, and then some bits, from the LSB,
are masked"; the paper sweeps 2–16 bits per parameter and expects an 8-bit pixel watermark to survive
8 bits or more).

Threat model: the thief shrinks the stolen model by storing every floating-point parameter in ``bits``
bits of fixed point, without retraining.

Format (per tensor, signed, sign-magnitude, ``bits`` = 1 sign bit + ``bits - 1`` magnitude bits):

* integer bits ``I`` = the smallest integer with ``max|w| < 2**I`` (``torch.frexp``'s exponent of
  ``max|w|``), so the largest entry never overflows; ``I`` may be negative (weights below 0.5 put the
  binary point left of the first magnitude bit: ``max|w| = 0.1`` gives ``I = -3``);
* fractional bits ``F = bits - 1 - I``; one LSB is ``2**-F``; a value is ``sign · code · 2**-F`` with an
  integer ``code`` in ``[0, 2**(bits-1) - 1]``;
* ``rounding="mask"`` (the paper): ``code = floor(|w| · 2**F)``, i.e. the float, written exactly as a
  long fixed-point code with the same binary point, has every bit below ``2**-F`` zeroed — truncation
  toward zero, error ``< 1`` LSB; ``rounding="nearest"``: round half to even, then clamp to the largest
  code, error ``<= 1/2`` LSB (``< 1`` LSB for the clamped top entries). An all-zero tensor stays zero.

The arithmetic is exact (float64 scaling by powers of two), and the result is cast back to the tensor's
dtype losslessly (it keeps a subset of the input's bits); 32 bits is the identity up to ``2**-30 · max|w|``.

Args:
    bits: total bits per parameter, 2–32 (paper sweep 2–16; default 8, the paper's "no change" point).
    rounding: ``mask`` (paper, truncate toward zero) or ``nearest``.
    layer: one conv/linear layer's parameters, or ``None`` for every floating-point parameter (paper).
    include_buffers: also convert floating-point buffers (BatchNorm running statistics).

Example::

    small = fixed_point_model(model, FixedPointConfig(bits=6))
    w6 = fixed_point(model.conv1.weight, 6)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from netmark._util import check_choice
from netmark.attacks.base import AttackConfig, TensorAttack, register_attack
from netmark.errors import ConfigError, ModelFileError

ROUNDINGS = ("mask", "nearest")


def check_bits_rounding(bits: object, rounding: object) -> None:
    """Raise ConfigError unless ``bits`` is an integer in 2..32 and ``rounding`` is known."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 32:
        raise ConfigError(f"fixed-point bits must be an integer in 2..32 (1 sign bit + magnitude), got {bits!r}")
    check_choice("rounding", rounding, ROUNDINGS)


@dataclass
class FixedPointConfig(AttackConfig):
    bits: int = 8
    rounding: Literal["mask", "nearest"] = "mask"
    layer: str | None = None
    include_buffers: bool = False

    def __post_init__(self) -> None:
        check_bits_rounding(self.bits, self.rounding)


def fixed_point_format(t: torch.Tensor, bits: int) -> tuple[int, int]:
    """``(integer_bits, fractional_bits)`` of ``t`` at ``bits`` total bits (see the module docstring)."""
    peak = t.detach().abs().max().to(torch.float64) if t.numel() else torch.zeros((), dtype=torch.float64)
    integer_bits = int(torch.frexp(peak).exponent) if peak > 0 else 0
    return integer_bits, bits - 1 - integer_bits


def _times_pow2(x: torch.Tensor, k: int) -> torch.Tensor:
    """``x · 2**k`` in two exact steps, so neither factor overflows float64."""
    h = k // 2
    return x * 2.0**h * 2.0 ** (k - h)


def fixed_point(t: torch.Tensor, bits: int, rounding: str = "mask") -> torch.Tensor:
    """``t`` stored in ``bits``-bit signed fixed point and read back (same dtype and shape; new tensor)."""
    check_bits_rounding(bits, rounding)
    if not t.is_floating_point():
        raise ConfigError(f"fixed point converts floating-point tensors, got {t.dtype}")
    x = t.detach().to(torch.float64)
    if not torch.isfinite(x).all():
        raise ModelFileError("cannot convert NaN/Inf values to fixed point")
    _, frac = fixed_point_format(x, bits)
    scaled = _times_pow2(x, frac)
    top = 2.0 ** (bits - 1) - 1
    code = torch.trunc(scaled) if rounding == "mask" else torch.round(scaled).clamp(-top, top)
    return _times_pow2(code, -frac).to(t.dtype)


@register_attack
class FixedPoint(TensorAttack[FixedPointConfig]):
    """Fixed-point conversion with LSB masking of the floating-point parameters (see module docstring): each tensor
    becomes :func:`fixed_point` of itself."""

    name = "fixed-point"

    def transform(self, t: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return fixed_point(t, self.config.bits, self.config.rounding)


def fixed_point_model(model: nn.Module, config: FixedPointConfig | None = None) -> nn.Module:
    """Functional form of :class:`FixedPoint` (model in → new model out)."""
    return FixedPoint(config)(model)
