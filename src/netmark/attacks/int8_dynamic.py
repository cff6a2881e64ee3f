"""Dynamic int8 quantization as served: what PyTorch's CPU serving path does to the weights (issue 22, item 6; no
paper).

``torch.ao.quantization.quantize_dynamic`` over every ``nn.Linear`` (int8 weights, per-tensor affine, the eager-mode
serving default for CPU inference); the int8 weights are dequantized back into the float model, which is what a
verifier reads from the deployed model. Unlike ``roundtrip`` with ``dtype=int8`` (symmetric, every tensor), it is
PyTorch's own observer and affine scheme, and only the Linear layers.

Threat model: the thief has the stolen model only (no data, no training).

Args:
    dtype: ``qint8`` (default: int8 weights) or ``float16`` (the dynamic fp16 path of the same API).
    seed: unused (the quantization is deterministic), kept for the attack protocol.

Example::

    served = Int8Dynamic(Int8DynamicConfig())(model)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from netmark.attacks.base import Attack, AttackConfig, register_attack
from netmark.errors import ConfigError

DTYPES = ("qint8", "float16")


@dataclass
class Int8DynamicConfig(AttackConfig):
    """Settings of :class:`Int8Dynamic` (module docstring)."""

    dtype: str = "qint8"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")


@register_attack
class Int8Dynamic(Attack[Int8DynamicConfig]):
    """torch.ao dynamic int8 quantization of the Linear layers, dequantized back (module docstring)."""

    name = "int8-dynamic"
    VERSION = 1

    def apply(self, model: nn.Module, data: Dataset | None) -> nn.Module:
        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():  # torch points users to torchao here; the eager API is what serving used
            warnings.simplefilter("ignore")
            quantized = quantize_dynamic(model.eval(), {nn.Linear}, dtype=getattr(torch, self.config.dtype))
        mods = dict(quantized.named_modules())
        with torch.no_grad():
            for name, layer in model.named_modules():
                if isinstance(layer, nn.Linear):
                    w = mods[name].weight()  # the quantized module's weight, as stored
                    layer.weight.copy_((w.dequantize() if w.is_quantized else w).to(layer.weight.dtype))
        return model
