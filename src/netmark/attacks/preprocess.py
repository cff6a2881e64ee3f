"""Input preprocessing at query time (Lukas et al., "SoK: How Robust is Image Classification Deep Neural Network
Watermarking?", S&P 2022, §V-A "input preprocessing" and the WRT toolbox, which builds these on IBM ART's
preprocessors): the thief changes no weight; every query is transformed before the stolen network sees it, so a
trigger whose effect rests on fine pixel patterns may no longer fire, while ordinary inputs keep their class.

* ``jpeg`` — JPEG compression and decompression (Pillow) at ``quality`` [50: ART's ``JpegCompression`` default];
* ``blur`` — a Gaussian blur (the SoK's "input smoothing") with ``sigma`` [1.0] and ``kernel_size`` [3: the window of
  ART's ``SpatialSmoothing``];
* ``noise`` — additive Gaussian noise of ``std`` [0.05 of the [0, 1] pixel range; netmark's choice: the SoK sweeps it
  against accuracy], clipped to [0, 1]; the noise of an input is drawn from ``seed`` and a hash of the input, so the
  same query always gets the same answer (a thief who re-draws per query is not modelled);
* ``quantize`` — input quantization (ART's ``FeatureSqueezing``) to ``bits`` per pixel [4; netmark's choice: 8 bits
  leaves 8×8 digits, which have 17 grey levels, unchanged].

Threat model: the thief serves (or ships) the stolen model and controls its input pipeline; no data is needed. The
result is a :class:`netmark.models.wrapped.Preprocess` module whose forward gives the network's logits on the
transformed input; it saves and loads with its record (``netmark attack preprocess M --set kind=jpeg -o OUT``, then
``netmark serve OUT``). Departures from the SoK: the defaults are single points, not the SoK's sweeps, and the
images are the small ones of netmark's quick presets.

Measured (``benchmarks/capsulation.py --preprocess``, simple-cnn on digits, 12 epochs, served and verified
through queries): at these defaults JPEG, noise and quantization leave every black-box scheme detected; blur removes
frontier stitching, Zhang's noise and DeepSigns' black-box marks but costs 8–18 pp of clean accuracy on 8×8 images.

Args:
    kind: ``jpeg`` (default), ``blur``, ``noise`` or ``quantize``.
    quality, sigma, kernel_size, std, bits: the kind's parameter (the others are ignored).
    seed: the noise (``noise`` only).

Example::

    served = Preprocess(PreprocessConfig(kind="blur", sigma=0.8))(stolen)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from netmark.attacks.base import Attack, AttackConfig, register_attack
from netmark.errors import ConfigError
from netmark.models.wrapped import PREPROCESS_KINDS, check_preprocess
from netmark.models.wrapped import Preprocess as PreprocessWrapper


@dataclass
class PreprocessConfig(AttackConfig):
    """Settings of :class:`Preprocess` (module docstring)."""

    kind: str = "jpeg"
    quality: int = 50
    sigma: float = 1.0
    kernel_size: int = 3
    std: float = 0.05
    bits: int = 4

    def __post_init__(self) -> None:
        if self.kind not in PREPROCESS_KINDS:
            raise ConfigError(f"kind must be one of {', '.join(PREPROCESS_KINDS)}, got {self.kind!r}")
        check_preprocess(self.wrapper_config())

    def wrapper_config(self) -> dict[str, Any]:
        """The wrapper's record: the kind's own parameters."""
        return {"op": self.kind, **{name: getattr(self, name) for name in PREPROCESS_KINDS[self.kind]}}


@register_attack
class Preprocess(Attack[PreprocessConfig]):
    """The stolen model behind an input transformation (module docstring)."""

    name = "preprocess"
    VERSION = 1

    def apply(self, model: nn.Module, data: Dataset | None) -> nn.Module:
        return PreprocessWrapper(model, self.config.wrapper_config())
