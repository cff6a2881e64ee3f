"""Dummy neurons: widen hidden layers without changing what the network computes.

Yan et al., "Rethinking white-box watermarks on deep learning models under neural structural obfuscation" (USENIX
Security 2023), Sec. 4 (neural structural obfuscation): a thief injects dummy neurons into the stolen model, so the
host layer of a white-box key no longer has the owner's shape, and the real units are mixed with fakes. Two modes:

* ``zero``: units whose incoming weights are random (drawn with the layer's
  weight scale, so they look like real units) and whose outgoing weights are zero;
* ``split``: a copy of an existing unit, whose outgoing weights are split between the copy and the original
  (``a·h + (1 − a)·h = h``, ``a`` ~ U(0.2, 0.8); exact through any activation, the copy computes the same value).

Both are exact whatever follows the layer, because the readers' new input columns cancel. A residual stream gets
its new units in every layer writing it (one space, :mod:`netmark.models.structure`); a stream linked to an
option-A zero-padded shortcut cannot be widened (the padding fixes its width) and is skipped. The layer widths
change, so the model's architecture record gains ``"widths"`` (:mod:`netmark.models.resize`): the saved file
rebuilds with its new shapes. A model not built by the registry (a user's own ``nn.Sequential``) is widened in memory.

Threat model: the thief has the stolen model only (no data, no training, no cost).

Args:
    width: dummy units added per chosen layer, as a fraction of its units (default 0.5: the issue's k = 50 %; at
        least one unit; 0: none, the sweep's baseline).
    mode: ``zero`` (default) or ``split``.
    layers, fraction: which hidden unit spaces (as :mod:`netmark.attacks.permute`; default: all of them).
    seed: draws the chosen spaces, the dummy units and the split shares.

Example::

    attacked = DummyNeurons(DummyNeuronsConfig(seed=3, width=0.5, mode="split"))(model)
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from netmark.attacks.base import register_attack
from netmark.attacks.permute import ObfuscationAttack, ObfuscationConfig
from netmark.errors import ArchitectureError, ConfigError
from netmark.models import ARCH_ATTR
from netmark.models.resize import resized, set_layer, widths_of
from netmark.models.structure import UnitSpace

log = logging.getLogger(__name__)

WidenMode = Literal["zero", "split"]
MODES = ("zero", "split")


@dataclass
class DummyNeuronsConfig(ObfuscationConfig):
    """Settings of :class:`DummyNeurons` (module docstring)."""

    width: float = 0.5
    mode: str = "zero"

    def __post_init__(self) -> None:
        super().__post_init__()
        if (isinstance(self.width, bool) or not isinstance(self.width, int | float) or not math.isfinite(self.width)
                or not 0.0 <= float(self.width) <= 10.0):
            raise ConfigError(f"width must be a fraction of a layer's units in [0, 10], got {self.width!r}")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")


def _why_not(space: UnitSpace | None, spaces: list[UnitSpace]) -> str | None:
    """Why ``space``'s units cannot be widened exactly (``None``: they can)."""
    if space is None:
        return "its outputs cannot be followed"
    if not space.permutable:
        return space.reason or "they are fixed"
    if space.parent is not None or any(s.parent == space.name for s in spaces):
        return "a zero-padded shortcut fixes its width"
    return None


@register_attack
class DummyNeurons(ObfuscationAttack[DummyNeuronsConfig]):
    """Dummy units in every chosen unit space (module docstring)."""

    name = "dummy-neurons"
    VERSION = 1
    verb = "widened"

    def why_not(self, space: UnitSpace, spaces: list[UnitSpace]) -> str | None:
        return _why_not(space, spaces)

    def obfuscate(self, model: nn.Module, spaces: list[UnitSpace], chosen: list[UnitSpace],
                  gen: torch.Generator) -> None:
        if self.config.width == 0:
            return
        for space in chosen:  # spaces are disjoint: widening one leaves the others' tensors where they are
            k = max(1, math.floor(float(self.config.width) * space.size + 0.5))
            widen_space(model, spaces, space.name, k, self.config.mode, gen)  # type: ignore[arg-type]


def dummy_neurons(model: nn.Module, config: DummyNeuronsConfig | None = None) -> nn.Module:
    """Functional form of :class:`DummyNeurons`."""
    return DummyNeurons(config)(model)


def _tensor(m: nn.Module, attr: str) -> torch.Tensor | None:
    t = getattr(m, attr, None)
    return t.detach() if isinstance(t, torch.Tensor) else None


def _weight(m: nn.Module) -> torch.Tensor:
    w = _tensor(m, "weight")
    if w is None:
        raise ArchitectureError(f"a {type(m).__name__} without weights cannot be widened")
    return w


def _replace(model: nn.Module, name: str, new: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    old = model.get_submodule(name)
    with torch.no_grad():
        for attr, t in tensors.items():
            getattr(new, attr).copy_(t)
    count, new_count = _tensor(old, "num_batches_tracked"), getattr(new, "num_batches_tracked", None)
    if count is not None and isinstance(new_count, torch.Tensor):
        new_count.copy_(count)
    set_layer(model, name, new)
    arch = getattr(model, ARCH_ATTR, None)
    if isinstance(arch, dict):  # the registry record gains the layer's new sizes (netmark.models.resize)
        setattr(model, ARCH_ATTR, {**arch, "widths": {**arch.get("widths", {}), name: widths_of(new)}})


def widen_space(model: nn.Module, spaces: list[UnitSpace], name: str, k: int, mode: WidenMode,
                gen: torch.Generator) -> None:
    """Add ``k`` dummy units to unit space ``name`` of ``model`` (one of ``spaces``, from
    :func:`~netmark.models.structure.unit_spaces` of this model), in place: the producers get ``k`` new rows (random
    for ``zero``, copies of random units for ``split``), BatchNorms ``k`` entries copied from random units, and every
    reader ``k`` new input columns (zero, or the split share ``1 − a`` of the copied unit's, ``a`` ~ U(0.2, 0.8)).
    A registry model's record gains the new layer sizes. Raises ArchitectureError for a space that cannot be widened
    exactly (fixed, or linked to a padded stream)."""
    space = {s.name: s for s in spaces}.get(name)
    why = _why_not(space, spaces)
    if space is None or why is not None:
        raise ArchitectureError(f"the units of {name!r} cannot be widened exactly: {why}")
    if mode not in MODES:
        raise ArchitectureError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if k < 1:
        raise ArchitectureError(f"k must be a positive number of units, got {k}")
    n = space.size
    src = torch.randint(n, (k,), generator=gen) if k > n else torch.randperm(n, generator=gen)[:k]
    share = 0.2 + 0.6 * torch.rand(k, generator=gen, dtype=torch.float64)
    for layer in space.producers:
        m = model.get_submodule(layer)
        w, b = _weight(m), _tensor(m, "bias")
        at = src.to(w.device)
        rows = w[at] if mode == "split" else torch.randn(k, *w.shape[1:], generator=gen).to(w) * w.std()
        tensors = {"weight": torch.cat([w, rows])}
        if b is not None:
            tensors["bias"] = torch.cat([b, b[at]])
        _replace(model, layer, resized(m, n_out=n + k), tensors)
    for layer in space.norms:
        m = model.get_submodule(layer)
        tensors = {a: torch.cat([t, t[src.to(t.device)]]) for a in ("weight", "bias", "running_mean", "running_var")
                   if (t := _tensor(m, a)) is not None}
        _replace(model, layer, resized(m, n_out=n + k), tensors)
    for layer, block in space.consumers:
        m = model.get_submodule(layer)
        w, b = _weight(m), _tensor(m, "bias")
        v = w.reshape(w.shape[0], n, block, -1).clone()
        new = torch.zeros(w.shape[0], k, block, v.shape[-1], dtype=w.dtype, device=w.device)
        if mode == "split":
            for j, (unit, a) in enumerate(zip(src.tolist(), share.tolist(), strict=True)):
                new[:, j] = v[:, unit] * (1.0 - a)
                v[:, unit] = v[:, unit] * a
        shape = (w.shape[0], (n + k) * w.shape[1] // n, *w.shape[2:])
        tensors = {"weight": torch.cat([v, new], dim=1).reshape(shape)}
        if b is not None:
            tensors["bias"] = b
        _replace(model, layer, resized(m, n_in=(n + k) * w.shape[1] // n), tensors)
    log.debug("widened %s by %d units (%s)", name, k, mode)
