"""Unit permutation: reorder the hidden units of a network without changing what it computes.

Yan et al., "Rethinking white-box watermarks on deep learning models under neural structural obfuscation" (USENIX
Security 2023) and Li et al., neuron alignment (arXiv 2112.14108): a white-box watermark key indexes weights by
position, but the hidden units of a layer can be listed in any order. Permuting the output units of a layer (its
weight rows, bias, BatchNorm parameters and running statistics) and, with the same permutation, the input units of
every layer reading them leaves the model computing exactly the same function while every keyed weight moves.

Threat model: the thief has the stolen model only (no data, no training, no cost). Which tensors move together is
found by :mod:`netmark.models.structure` (a flatten between a conv and a Linear moves whole blocks of ``H·W``
columns; a residual stream is one permutation shared by every layer reading or writing it; option-A zero-padded
shortcuts keep the previous stream's permutation at their offset). The output units (classes) never move.

Args:
    layers: names of the conv/linear layers whose output units to permute (a residual stream is selected by any layer
        writing it), or ``None`` (default) for every hidden unit space of the model.
    fraction: share of the selected spaces that are permuted (default 1.0: all of them), chosen at random: the
        strength axis of ``netmark evaluate``.
    seed: draws the chosen spaces and the permutations.

Example::

    attacked = Permute(PermuteConfig(seed=3, layers=["conv1"]))(model)
"""

from __future__ import annotations

import logging
import math
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import torch
from torch import nn
from torch.utils.data import Dataset

from netmark._util import generator
from netmark.attacks.base import Attack, AttackConfig, register_attack
from netmark.errors import ConfigError
from netmark.models.structure import UnitSpace, apply_permutation, draw_permutations, unit_spaces

log = logging.getLogger(__name__)


@dataclass
class ObfuscationConfig(AttackConfig):
    """Which unit spaces a function-preserving obfuscation touches: ``layers`` (``None``: all) and ``fraction``."""

    layers: list[str] | None = None
    fraction: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.layers, tuple):
            self.layers = list(self.layers)
        if self.layers is not None and (not isinstance(self.layers, list) or not self.layers
                                        or not all(isinstance(n, str) and n for n in self.layers)):
            raise ConfigError(f"layers must be a non-empty list of layer names or None, got {self.layers!r}")
        if (isinstance(self.fraction, bool) or not isinstance(self.fraction, int | float)
                or not 0.0 <= float(self.fraction) <= 1.0):
            raise ConfigError(f"fraction must be a number in [0, 1], got {self.fraction!r}")


CO = TypeVar("CO", bound=ObfuscationConfig)


def select_spaces(model: nn.Module, spaces: list[UnitSpace], config: ObfuscationConfig, gen: torch.Generator,
                  why_not: Callable[[UnitSpace], str | None], verb: str) -> list[UnitSpace]:
    """The spaces to obfuscate: those of ``config.layers`` (every space ``why_not`` has no objection to, when
    ``None``), of which a random ``round(fraction · count)`` are kept, in graph order. A name that is not a
    conv/linear layer of ``model``, or a layer whose units cannot be ``verb`` exactly (``why_not`` says why), raises
    ConfigError."""
    usable = [s for s in spaces if why_not(s) is None]
    if config.layers is not None:
        owner = {p: s for s in spaces for p in s.producers}
        known = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
        picked: list[UnitSpace] = []
        for name in config.layers:
            if name not in known:
                raise ConfigError(f"the model has no conv/linear layer {name!r}; layers: {', '.join(known) or 'none'}")
            space = owner.get(name)
            if space is None or space not in usable:
                why = why_not(space) if space is not None else "its outputs cannot be followed"
                raise ConfigError(f"the units of layer {name!r} cannot be {verb} exactly: {why}")
            if space not in picked:
                picked.append(space)
        usable = picked
    k = math.floor(config.fraction * len(usable) + 0.5)
    keep = sorted(torch.randperm(len(usable), generator=gen)[:k].tolist())
    return [usable[i] for i in keep]


class ObfuscationAttack(Attack[CO]):
    """A function-preserving obfuscation: finds the model's unit spaces, selects some (:func:`select_spaces`, among
    those :meth:`why_not` accepts) with a generator seeded by the config's seed, and :meth:`obfuscate` s them."""

    #: what the attack does to units, for messages ("permuted", "rescaled", ...)
    verb: ClassVar[str] = "permuted"

    def why_not(self, space: UnitSpace, spaces: list[UnitSpace]) -> str | None:
        """Why this attack cannot move ``space``'s units exactly (``None``: it can). Default: unless permutable."""
        return None if space.permutable else space.reason or "they are fixed"

    def apply(self, model: nn.Module, data: Dataset | None) -> nn.Module:
        gen = generator(self.config.seed)
        spaces = unit_spaces(model)
        chosen = select_spaces(model, spaces, self.config, gen, lambda s: self.why_not(s, spaces), self.verb)
        self.obfuscate(model, spaces, chosen, gen)
        log.info("%s: %d of %d unit spaces chosen", self.name, len(chosen), len(spaces))
        return model

    @abstractmethod
    def obfuscate(self, model: nn.Module, spaces: list[UnitSpace], chosen: list[UnitSpace],
                  gen: torch.Generator) -> None:
        """Rewrite ``model`` in place: the ``chosen`` ones of its ``spaces``, drawing from ``gen``."""


@dataclass
class PermuteConfig(ObfuscationConfig):
    """Settings of :class:`Permute` (module docstring)."""


@register_attack
class Permute(ObfuscationAttack[PermuteConfig]):
    """Random permutation of the hidden units of every chosen unit space (module docstring)."""

    name = "permute"
    VERSION = 1

    def obfuscate(self, model: nn.Module, spaces: list[UnitSpace], chosen: list[UnitSpace],
                  gen: torch.Generator) -> None:
        perms = draw_permutations(spaces, {s.name for s in chosen}, gen)
        for space in spaces:
            if space.name in perms:
                apply_permutation(model, space, perms[space.name])


def permute(model: nn.Module, config: PermuteConfig | None = None) -> nn.Module:
    """Functional form of :class:`Permute`."""
    return Permute(config)(model)
