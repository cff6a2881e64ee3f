"""Outlier reset: every weight further than ``k`` standard deviations from its tensor's mean is set to the mean.

Not from a paper: a cheap, data-free attack on watermarks that write values far outside the weights' own
distribution (issue 18: the authors' public code of Tartaglione et al. 2021 writes its payload at ±10 inside
weights of spread ~0.1). Threat model: the thief holds the weights, no data; the task accuracy it costs is what
the outlying weights were worth to the task.

Per floating-point parameter tensor (of ``layer``, or of the whole model) with at least two entries: mean ``m`` and
standard deviation ``s`` (unbiased) of all its entries; every entry with ``|w − m| > k·s`` becomes ``m``. One pass
(the statistics are not recomputed after the reset). A tensor whose entries are all equal is left unchanged.

Args:
    k: the threshold in standard deviations (> 0; the issue's sweep: 4..8).
    layer: one conv/linear layer's parameters, or ``None`` for every floating-point parameter.

Example::

    cleaned = OutlierReset(OutlierResetConfig(k=4))(model)
    w, n = outlier_reset(model.fc1.weight, 4.0)     # the tensor and how many entries were reset
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from netmark._util import check_finite
from netmark.attacks.base import Attack, AttackConfig, register_attack, target_tensors


@dataclass
class OutlierResetConfig(AttackConfig):
    k: float = 4.0
    layer: str | None = None

    def __post_init__(self) -> None:
        check_finite("outlier threshold k", self.k, positive=True)


def outlier_reset(t: torch.Tensor, k: float) -> tuple[torch.Tensor, int]:
    """``t`` with every entry further than ``k`` standard deviations from the mean set to the mean (a new tensor),
    and the number of entries reset."""
    x = t.detach()
    if x.numel() < 2:
        return x.clone(), 0
    x64 = x.to(torch.float64)
    mean, std = x64.mean(), x64.std()
    far = (x64 - mean).abs() > k * std
    return torch.where(far, mean.to(x.dtype), x), int(far.sum())


@register_attack
class OutlierReset(Attack[OutlierResetConfig]):
    """Outlier reset (see module docstring); ``reset`` holds, after a call, the number of entries reset."""

    name = "outlier-reset"
    reset: int = 0

    def apply(self, model: nn.Module, data: Dataset | None) -> nn.Module:
        self.reset = 0
        with torch.no_grad():
            for t in target_tensors(model, self.config.layer).values():
                new, n = outlier_reset(t, self.config.k)
                t.copy_(new)
                self.reset += n
        return model


def outlier_reset_model(model: nn.Module, k: float = 4.0, layer: str | None = None) -> nn.Module:
    """Functional form of :class:`OutlierReset` (model in → new model out)."""
    return OutlierReset(OutlierResetConfig(k=k, layer=layer))(model)
