"""Anti-piracy transforms G of Chen & Wu 2018, §2.3: x_p = G(x_r) = x_r + δ(x_r).

**Patent notice.** The anti-piracy transform + DNN scheme is covered by US patent 11,687,623 B2
(University of Maryland); commercial use may need a licence from the patent holder.

Three transforms, from simple to input-dependent (paper §2.3, settings of §3.2):

* ``fixed``: a universal bipolar perturbation drawn once by the owner: every input element gets
  σ·{+1, 0, −1} with probability {p, 1 − 2p, p} (σ = 0.1, p = 0.2). Not trained.
* ``learned``: a universal perturbation trained jointly with the network (netmark starts it from the
  Fixed draw of the same seed; the paper does not say how it is initialised).
* ``generator``: an input-dependent perturbation, conv 5×5 (``hidden`` channels: 16 for MNIST/Fashion,
  64 for CIFAR) → ReLU → bottleneck conv 1×1 back to the input channels → tanh.

The paper's own weakness, kept visible: a universal perturbation (fixed, learned) is revealed by a
single (raw, processed) pair, δ = x_p − x_r (:func:`recover_universal`).

Example::

    >>> g = build_transform(TransformConfig("fixed", seed=7), shape=(1, 28, 28))
    >>> x = torch.rand(4, 1, 28, 28)
    >>> bool(torch.allclose(recover_universal(x[:1], g(x[:1])), g.perturbation(x)[0]))
    True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from netmark._util import seeded
from netmark.draws import KeyRoot, derived_seed, draw, new_root
from netmark.errors import ConfigError

TransformKind = Literal["fixed", "learned", "generator"]
KINDS: tuple[str, ...] = ("fixed", "learned", "generator")


@dataclass(frozen=True)
class TransformConfig:
    """Which transform and its parameters (paper defaults, §3.2).

    Args:
        kind: ``fixed``, ``learned`` or ``generator``.
        sigma: amplitude σ of the bipolar perturbation (fixed; learned's start) [0.1].
        p: probability of +σ (and of −σ) per element [0.2]; 1 − 2p of 0.
        hidden: intermediate channels of the generator [16 for MNIST/Fashion, 64 for CIFAR-10].
        seed: draws the bipolar pattern and the generator's initial weights from this research seed (reproducible,
            and guessable); ``None`` (the default): from a 256-bit secret out of the OS CSPRNG (:mod:`netmark.draws`).
    """

    kind: TransformKind = "generator"
    sigma: float = 0.1
    p: float = 0.2
    hidden: int = 16
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown transform {self.kind!r}; choose one of {', '.join(KINDS)}")
        if not 0 < self.sigma < float("inf"):
            raise ConfigError(f"sigma must be a positive number, got {self.sigma!r}")
        if not 0 < self.p <= 0.5:
            raise ConfigError(f"p must be in (0, 0.5], got {self.p!r}")
        if int(self.hidden) != self.hidden or self.hidden < 1:
            raise ConfigError(f"hidden must be a positive integer, got {self.hidden!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ConfigError(f"seed must be an integer or None, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bipolar(shape: tuple[int, ...], sigma: float, p: float, root: KeyRoot) -> Tensor:
    """A bipolar pattern: σ·{+1, 0, −1} with probability {p, 1 − 2p, p} per element (§2.3), drawn from ``root``."""
    u = draw(root).rand(*shape)
    return sigma * ((u < p).float() - (u >= 1 - p).float())


class AntiPiracyTransform(nn.Module):
    """G: raw input → processed input. Subclasses define the perturbation δ(x)."""

    kind: str = ""

    def __init__(self, config: TransformConfig, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.config, self.shape = config, tuple(int(s) for s in shape)
        #: what the secret's first draw comes from: the research seed, or 32 secret bytes (kept in the key file)
        self.root: KeyRoot = config.seed if config.seed is not None else new_root()

    def perturbation(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.shape:
            raise ConfigError(f"the transform was built for inputs of shape {list(self.shape)}, "
                              f"got {list(x.shape[1:])}")
        return x + self.perturbation(x)


class UniversalTransform(AntiPiracyTransform):
    """One δ for every input (fixed: a buffer; learned: a parameter started from the same draw)."""

    def __init__(self, config: TransformConfig, shape: tuple[int, int, int]) -> None:
        super().__init__(config, shape)
        delta = bipolar(self.shape, config.sigma, config.p, self.root)
        if config.kind == "learned":
            self.delta = nn.Parameter(delta)
        else:
            self.register_buffer("delta", delta)

    def perturbation(self, x: Tensor) -> Tensor:
        return self.delta.expand_as(x)


class GeneratorTransform(AntiPiracyTransform):
    """δ(x) = tanh(conv1×1(relu(conv5×5(x)))), input-dependent (§3.2)."""

    def __init__(self, config: TransformConfig, shape: tuple[int, int, int]) -> None:
        super().__init__(config, shape)
        c = self.shape[0]
        with seeded(derived_seed(self.root, 0)):  # torch's default init, drawn from the secret
            self.conv = nn.Conv2d(c, config.hidden, 5, padding=2)
            self.bottleneck = nn.Conv2d(config.hidden, c, 1)

    def perturbation(self, x: Tensor) -> Tensor:
        return torch.tanh(self.bottleneck(torch.relu(self.conv(x))))


def build_transform(config: TransformConfig, shape: tuple[int, int, int]) -> AntiPiracyTransform:
    """The transform ``config`` describes for inputs of ``shape`` = (channels, height, width)."""
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"shape must be (channels, height, width), got {shape}")
    cls = GeneratorTransform if config.kind == "generator" else UniversalTransform
    return cls(config, shape)


def recover_universal(x_raw: Tensor, x_processed: Tensor) -> Tensor:
    """The pair attack on a universal transform: one (raw, processed) pair gives δ = x_p − x_r."""
    if x_raw.shape != x_processed.shape:
        raise ConfigError("raw and processed inputs must have the same shape")
    return (x_processed - x_raw)[0].detach()
