"""Dummy units: widen a hidden layer without changing what the network computes (the primitive of a
``dummy-neurons`` attack; not registered as an attack yet, see :func:`widen_space`).

Yan et al., "Rethinking white-box watermarks on deep learning models under neural structural obfuscation" (USENIX
Security 2023) inject dummy neurons: units whose outgoing weights are zero (``mode="zero"``; their incoming weights are
random, so they look like real units), or copies of existing units whose outgoing weights are split between the copy
and the original (``mode="split"``: ``a·h + (1 − a)·h = h``, exact through any activation since the copy computes the
same value). Both are exact whatever follows the layer (ReLU or not), because the readers' new columns cancel.

The layer widths change, so a registry model must record its new architecture arguments: only architectures whose
per-layer widths are builder arguments can be widened (``mlp``'s ``hidden``); a model not built by the registry
(a user's own ``nn.Sequential``) is widened in memory.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from netmark.attacks.structure import UnitSpace
from netmark.errors import ArchitectureError
from netmark.models import ARCH_ATTR, skeleton

WidenMode = Literal["zero", "split"]
#: registry architectures whose widths :func:`widen_space` can record (name -> how to read the new arguments)
WIDTH_ARGS = ("mlp",)


def _resized(m: nn.Module, n_out: int | None = None, n_in: int | None = None) -> nn.Module:
    """A new, uninitialised module like ``m`` with ``n_out`` output / ``n_in`` input units."""
    ref = next(m.parameters())
    dev, dt = ref.device, ref.dtype
    if isinstance(m, nn.Linear):
        return nn.Linear(n_in or m.in_features, n_out or m.out_features, bias=m.bias is not None, device=dev, dtype=dt)
    if isinstance(m, nn.Conv2d):
        return nn.Conv2d(n_in or m.in_channels, n_out or m.out_channels, m.kernel_size,  # type: ignore[arg-type]
                         m.stride, m.padding, m.dilation, m.groups,  # type: ignore[arg-type]
                         m.bias is not None, m.padding_mode, device=dev, dtype=dt)
    if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
        return type(m)(n_out or m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats, device=dev,
                       dtype=dt)
    raise ArchitectureError(f"cannot widen a {type(m).__name__}")


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
    new.train(old.training)
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def widen_space(model: nn.Module, spaces: list[UnitSpace], name: str, k: int, mode: WidenMode,
                gen: torch.Generator) -> None:
    """Add ``k`` dummy units to unit space ``name`` of ``model`` (one of ``spaces``, from
    :func:`~netmark.attacks.structure.unit_spaces` of this model), in place: the producers get ``k`` new rows (random
    for ``zero``, copies of random units for ``split``), BatchNorms ``k`` entries copied from random units, and every
    reader ``k`` new input columns (zero, or the split share ``1 − a`` of the copied unit's, ``a`` ~ U(0.2, 0.8)).
    A registry model's recorded architecture arguments are updated. Raises ArchitectureError for a space that is
    not permutable, is linked to a padded stream, or whose width the model's architecture cannot record."""
    by_name = {s.name: s for s in spaces}
    space = by_name.get(name)
    if space is None or not space.permutable or space.parent is not None or any(s.parent == name for s in spaces):
        raise ArchitectureError(f"the units of {name!r} cannot be widened exactly"
                                + (f": {space.reason}" if space is not None and space.reason else ""))
    arch = getattr(model, ARCH_ATTR, None)
    if isinstance(arch, dict) and arch.get("name") not in WIDTH_ARGS:
        raise ArchitectureError(f"widening changes layer widths, and the widths of {arch.get('name')!r} are not "
                                f"builder arguments (only {', '.join(WIDTH_ARGS)})")
    if k < 1:
        raise ArchitectureError(f"k must be a positive number of units, got {k}")
    n = space.size
    src = torch.randint(n, (k,), generator=gen) if k > n else torch.randperm(n, generator=gen)[:k]
    src = src.to(next(model.parameters()).device)
    share = 0.2 + 0.6 * torch.rand(k, generator=gen, dtype=torch.float64)
    for layer in space.producers:
        m = model.get_submodule(layer)
        w, b = _weight(m), _tensor(m, "bias")
        rows = w[src] if mode == "split" else torch.randn(k, *w.shape[1:], generator=gen).to(w) * w.std()
        tensors = {"weight": torch.cat([w, rows])}
        if b is not None:
            tensors["bias"] = torch.cat([b, b[src]])
        _replace(model, layer, _resized(m, n_out=n + k), tensors)
    for layer in space.norms:
        m = model.get_submodule(layer)
        tensors = {a: torch.cat([t, t[src]]) for a in ("weight", "bias", "running_mean", "running_var")
                   if (t := _tensor(m, a)) is not None}
        _replace(model, layer, _resized(m, n_out=n + k), tensors)
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
        _replace(model, layer, _resized(m, n_in=(n + k) * w.shape[1] // n), tensors)
    if isinstance(arch, dict):
        _record_widths(model, arch)


def _record_widths(model: nn.Module, arch: dict) -> None:
    """Write the widened model's architecture arguments (``mlp``: ``hidden``) and check that they rebuild it."""
    layers = [m for _, m in model.named_children() if isinstance(m, nn.Linear)]
    args = {**arch["args"], "hidden": [m.out_features for m in layers[:-1]]}
    setattr(model, ARCH_ATTR, {"name": arch["name"], "args": args})
    want = {k: tuple(v.shape) for k, v in skeleton(arch["name"], args).state_dict().items()}
    if want != {k: tuple(v.shape) for k, v in model.state_dict().items()}:
        raise ArchitectureError(f"the widened {arch['name']!r} cannot be described by its builder arguments")
