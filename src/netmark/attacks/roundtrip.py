"""Low-precision round trip: what a thief gets by saving the stolen model as a half-precision or int8
checkpoint and loading it back (no paper; the compression baseline every thief has for free, next to
Tartaglione et al. 2021's fixed-point attack in :mod:`netmark.attacks.fixed_point`).

Threat model: every floating-point parameter is stored in ``dtype`` and read back into its own dtype,
without retraining:

* ``fp16`` / ``bf16``: a plain cast there and back (round to nearest even; |w| > 65504 becomes Inf in
  fp16, which the attack rejects as a NaN/Inf model);
* ``int8``: per-tensor symmetric quantization, ``scale = max|w| / 127``, ``q = round(w / scale)`` (half to
  even) clamped to ``[-127, 127]`` and stored as ``torch.int8``, read back as ``q · scale``. An all-zero
  tensor stays zero.

Args:
    dtype: ``fp16`` (default), ``bf16`` or ``int8``.
    layer: one conv/linear layer's parameters, or ``None`` for every floating-point parameter.
    include_buffers: also round-trip floating-point buffers (BatchNorm running statistics), as
        ``model.half()`` does.

Example::

    thief = roundtrip(model, RoundTripConfig(dtype="int8"))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from netmark._util import check_choice
from netmark.attacks.base import AttackConfig, TensorAttack, register_attack
from netmark.errors import ConfigError, ModelFileError

RoundTripDtype = Literal["fp16", "bf16", "int8"]
DTYPES: tuple[RoundTripDtype, ...] = ("fp16", "bf16", "int8")
_FLOAT = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class RoundTripConfig(AttackConfig):
    dtype: RoundTripDtype = "fp16"
    layer: str | None = None
    include_buffers: bool = False

    def __post_init__(self) -> None:
        check_choice("round-trip dtype", self.dtype, DTYPES)


def roundtrip_tensor(t: torch.Tensor, dtype: str) -> torch.Tensor:
    """``t`` stored as ``dtype`` (fp16 | bf16 | int8) and read back (same dtype and shape; new tensor)."""
    check_choice("round-trip dtype", dtype, DTYPES)
    if not t.is_floating_point():
        raise ConfigError(f"round trip converts floating-point tensors, got {t.dtype}")
    w = t.detach()
    if not torch.isfinite(w).all():
        raise ModelFileError("cannot round-trip NaN/Inf values")
    if dtype in _FLOAT:
        return w.to(_FLOAT[dtype]).to(t.dtype)
    work = w.to(torch.promote_types(t.dtype, torch.float32))
    peak = work.abs().max() if w.numel() else torch.zeros((), dtype=work.dtype)
    scale = peak.clamp_min(torch.finfo(work.dtype).tiny) / 127
    q = torch.round(work / scale).clamp(-127, 127).to(torch.int8)
    return (q.to(work.dtype) * scale).to(t.dtype)


@register_attack
class RoundTrip(TensorAttack[RoundTripConfig]):
    """fp16 / bf16 / int8 checkpoint round trip (see module docstring)."""

    name = "roundtrip"

    def transform(self, t: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return roundtrip_tensor(t, self.config.dtype)


def roundtrip(model: nn.Module, config: RoundTripConfig | None = None) -> nn.Module:
    """Functional form of :class:`RoundTrip`."""
    return RoundTrip(config)(model)
