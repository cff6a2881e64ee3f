"""Layer widths that differ from an architecture's defaults: how a model with dummy units is recorded and rebuilt.

A function-preserving obfuscation (Yan et al., USENIX Security 2023: neural structural obfuscation; the
``dummy-neurons`` attack, :mod:`netmark.attacks.dummy_neurons`) adds units to hidden layers, so the model no longer
has the shapes its registry arguments describe, and most builders have no argument for each layer's width. The
architecture record (:data:`~netmark.models.registry.ARCH_ATTR`) then carries ``"widths"``: per resized layer its unit
counts, ``[out, in]`` for a Linear / Conv2d (features or channels) and ``[features]`` for a BatchNorm.
:func:`resize_layers` replaces those layers of a freshly built model by layers of these sizes (hyper-parameters kept,
weights freshly initialised: a loaded file then overwrites them). A model that was never resized has no ``"widths"``,
so the record of every other model, and every cache key made from it, is unchanged.

Sizes come from untrusted files: every entry is checked (a known layer of a resizable type, positive integers, at
most :data:`MAX_WIDTH`), and the resized model is counted against the registry's parameter bound before it is built
for real (:func:`netmark.models.registry.build`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from netmark.errors import ArchitectureError

#: most units one resized layer may have (the bound on the parameters applies as well)
MAX_WIDTH = 1_000_000
RESIZABLE = (nn.Linear, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d)


def widths_of(m: nn.Module) -> list[int]:
    """A resizable layer's unit counts in the record's form (module docstring), read off its tensors (which a caller
    may have replaced without updating the module's size attributes)."""
    w = getattr(m, "weight", None)
    if isinstance(m, nn.Linear | nn.Conv2d):
        if isinstance(w, torch.Tensor):
            return [int(w.shape[0]), int(w.shape[1]) * (m.groups if isinstance(m, nn.Conv2d) else 1)]
        return [m.out_features, m.in_features] if isinstance(m, nn.Linear) else [m.out_channels, m.in_channels]
    if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
        t = w if isinstance(w, torch.Tensor) else getattr(m, "running_mean", None)
        return [int(t.shape[0])] if isinstance(t, torch.Tensor) else [m.num_features]
    raise ArchitectureError(f"a {type(m).__name__} cannot be resized")


def resized(m: nn.Module, n_out: int | None = None, n_in: int | None = None) -> nn.Module:
    """A new layer like ``m`` (same type, hyper-parameters, device and dtype) with ``n_out`` output and ``n_in``
    input units (``None``: ``m``'s); its weights are freshly initialised."""
    ref = next(m.parameters(), None)
    dev, dt = (ref.device, ref.dtype) if ref is not None else (None, None)
    sizes = widths_of(m)
    out, inp = n_out or sizes[0], n_in or sizes[-1]
    if isinstance(m, nn.Linear):
        return nn.Linear(inp, out, bias=m.bias is not None, device=dev, dtype=dt)
    if isinstance(m, nn.Conv2d):
        return nn.Conv2d(inp, out, m.kernel_size, m.stride, m.padding, m.dilation,  # type: ignore[arg-type]
                         m.groups, m.bias is not None, m.padding_mode, device=dev, dtype=dt)
    if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
        return type(m)(out, m.eps, m.momentum, m.affine, m.track_running_stats, device=dev, dtype=dt)
    raise ArchitectureError(f"a {type(m).__name__} cannot be resized")


def set_layer(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace ``model``'s sub-module ``name`` by ``new`` (keeping the old one's train/eval mode)."""
    old = model.get_submodule(name)
    new.train(old.training)
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def checked_widths(model: nn.Module, widths: object) -> dict[str, list[int]]:
    """``widths`` validated against ``model``'s layers (module docstring); ArchitectureError naming the problem."""
    if not isinstance(widths, Mapping):
        raise ArchitectureError(f"'widths' must map layer names to unit counts, got {type(widths).__name__}")
    mods = dict(model.named_modules())
    out: dict[str, list[int]] = {}
    for name, sizes in widths.items():
        m = mods.get(name) if isinstance(name, str) and name else None
        if not isinstance(m, RESIZABLE):
            raise ArchitectureError(f"'widths' names {name!r}, which is no Linear, Conv2d or BatchNorm layer of the "
                                    "architecture")
        want = len(widths_of(m))
        if (not isinstance(sizes, list | tuple) or len(sizes) != want
                or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= MAX_WIDTH for s in sizes)):
            raise ArchitectureError(f"'widths' of {name!r} must be {want} unit count(s) in 1..{MAX_WIDTH:,}, "
                                    f"got {sizes!r}")
        out[name] = [int(s) for s in sizes]
    return out


def resize_layers(model: nn.Module, widths: Mapping[str, Any]) -> nn.Module:
    """``model`` (in place) with the layers of ``widths`` (:func:`checked_widths`) replaced by layers of those
    sizes; returns it. Whether the result can run is the caller's concern (a file's tensors are checked against it)."""
    for name, sizes in checked_widths(model, widths).items():
        m = model.get_submodule(name)
        if sizes != widths_of(m):
            set_layer(model, name, resized(m, *sizes))
    return model
