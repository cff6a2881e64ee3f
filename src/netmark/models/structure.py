"""Unit spaces of a network: the hidden units that can be permuted or rescaled without changing what it computes.

Function-preserving obfuscation (Yan et al., "Rethinking white-box watermarks on deep learning models under neural
structural obfuscation", USENIX Security 2023; Li et al., neuron alignment, arXiv 2112.14108) reorders or rescales
hidden units. Doing so exactly needs every tensor that indexes a unit to move with it. A **unit space** is such a set
of units with its tensors: the weight rows and biases of the Conv2d/Linear layers that write it (*producers*), the
parameters and running statistics of the BatchNorms applied to it (*norms*), and the input columns of the layers that
read it (*consumers*; a Linear after a flatten reads a block of ``H·W`` columns per channel).

:func:`unit_spaces` finds them generically by tracing the model with ``torch.fx`` and following the channel axis of
every tensor: ``Conv2d``/``Linear`` open a new space, channel-wise ops (ReLU, pooling, dropout, BatchNorm, spatial
slicing and padding, flatten) keep it, and ``a + b`` merges the spaces of ``a`` and ``b`` (a residual stream is
one space). Option-A shortcuts (He et al. 2016: subsample, then zero-pad the channel axis; ``netmark.models.resnet``)
are handled exactly: the padded stream *embeds* the previous stream at an offset, so its permutation restricted to
those positions is the previous stream's and the zero channels permute among themselves (:func:`draw_permutations`).
A space that reaches the model's output (the classes), the model's input, or an op this analysis does not know
(concatenation, channel slicing, reshapes other than a flatten, grouped convolutions, a module called with two
different spaces...) is *fixed*: never permuted. Rescaling by ``c > 0`` is exact only across positively homogeneous
ops (ReLU, max/avg pooling), so a space is *scalable* only if one layer writes it, every op between it and its readers
is homogeneous, and at most one BatchNorm reads the producer directly (then the BatchNorm's weight and bias carry the
factor: exact in eval mode); a residual stream or a padded stream is never scalable.

Assumption: Linear layers act on ``(N, features)`` inputs and Conv2d/BatchNorm2d on ``(N, C, H, W)``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from netmark._util import first_line
from netmark.errors import ArchitectureError
from netmark.models.resize import widths_of

#: modules that keep the unit axis and commute with per-unit positive scaling (ReLU(c·x) = c·ReLU(x))
HOMOGENEOUS = (nn.ReLU, nn.LeakyReLU, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
#: elementwise modules: they keep the unit axis (permutable) but not positive scaling
ELEMENTWISE = (nn.Sigmoid, nn.Tanh, nn.GELU, nn.ELU, nn.SiLU, nn.ReLU6, nn.Hardtanh, nn.Softplus, nn.Mish,
               nn.Hardswish, nn.Hardsigmoid, nn.SELU, nn.CELU)
POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_HOMOGENEOUS_FN: set[Any] = {F.relu, torch.relu, F.dropout, F.leaky_relu, "relu", "relu_"}
_ELEMENTWISE_FN: set[Any] = {torch.sigmoid, torch.tanh, F.gelu, F.silu, F.elu, "sigmoid", "tanh"}
_POOL_FN: set[Any] = {F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d}
_ADD: set[Any] = {operator.add, operator.iadd, torch.add, "add", "add_"}
_SHAPE_QUERY: set[Any] = {"size", "dim", getattr}


@dataclass(frozen=True)
class UnitSpace:
    """A set of hidden units and every tensor indexed by them (module docstring).

    Attributes:
        name: the first layer writing it, in graph order (``layers=`` of the attacks selects it by any producer).
        size: number of units.
        producers: Conv2d/Linear layers whose weight rows and bias (dim 0) are the units.
        norms: BatchNorm layers whose weight, bias, running mean and variance are the units.
        consumers: ``(layer, block)``: layers whose input columns (dim 1) are the units, ``block`` columns each.
        parent: the space this one embeds (option-A channel padding), at ``offset``; ``None`` if none.
        permutable: whether its units may be reordered; ``scalable``: whether they may be rescaled.
        reason: why it is not permutable / not scalable ("" if it is both).
    """

    name: str
    size: int
    producers: tuple[str, ...]
    norms: tuple[str, ...]
    consumers: tuple[tuple[str, int], ...]
    parent: str | None = None
    offset: int = 0
    permutable: bool = True
    scalable: bool = True
    reason: str = ""


@dataclass(frozen=True)
class _Layout:
    """A traced tensor whose unit axis belongs to raw space ``space``: ``map`` (N, C, H, W), ``vec`` (N, F),
    ``flat`` (a flattened map, N, C·H·W)."""

    space: int
    kind: str


_OPAQUE = "opaque"  # a tensor whose channels cannot be followed (model input, parameters, unknown ops)
_CONST = "const"  # not a tensor (sizes, numbers)


@dataclass
class _Raw:
    """One space before the merges (a producer's output, the input, a padded stream)."""

    producers: list[str] = field(default_factory=list)
    norms: list[tuple[str, bool]] = field(default_factory=list)  # (layer, reads the producer's output directly)
    consumers: list[tuple[str, int | None]] = field(default_factory=list)  # block None: resolved from in_features
    fixed: list[str] = field(default_factory=list)
    no_scale: list[str] = field(default_factory=list)
    output: bool = False
    embeds: tuple[int, int, int] | None = None  # (parent raw space, offset, added channels)


class _Analysis:
    """Walks the traced graph once (node by node) and records the spaces; :meth:`spaces` merges them."""

    def __init__(self, model: nn.Module) -> None:
        self.modules = dict(model.named_modules())
        self.raw: list[_Raw] = []
        self.parent: list[int] = []
        self.values: dict[fx.Node, _Layout | str] = {}

    # ---- union-find
    def new(self) -> int:
        self.raw.append(_Raw())
        self.parent.append(len(self.parent))
        return len(self.raw) - 1

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    # ---- helpers
    def layouts(self, node: fx.Node) -> list[_Layout]:
        found: list[_Layout] = []

        def collect(n: fx.Node) -> fx.Node:
            if isinstance(v := self.values.get(n), _Layout):
                found.append(v)
            return n

        fx.node.map_arg((node.args, node.kwargs), collect)
        return found

    def fix(self, node: fx.Node, why: str) -> str:
        for lay in self.layouts(node):
            self.raw[lay.space].fixed.append(why)
        return _OPAQUE

    def first(self, node: fx.Node) -> _Layout | str:
        arg = node.args[0] if node.args else None
        return self.values.get(arg, _OPAQUE) if isinstance(arg, fx.Node) else _CONST

    # ---- the walk
    def visit(self, node: fx.Node) -> None:
        if node.op == "output":
            for lay in self.layouts(node):
                self.raw[lay.space].output = True
            return
        if node.op in ("placeholder", "get_attr"):
            value: _Layout | str = _OPAQUE
        elif node.op == "call_module":
            value = self.module(node, self.modules[str(node.target)])
        else:
            value = self.function(node, node.target)
        self.values[node] = value

    def module(self, node: fx.Node, m: nn.Module) -> _Layout | str:
        x, name = self.first(node), str(node.target)
        if not isinstance(x, _Layout) or len(node.args) != 1 or node.kwargs:
            return self.produce(node, m) if isinstance(m, nn.Conv2d | nn.Linear) and x == _OPAQUE else self.fix(
                node, f"{name} is called in a way this analysis does not follow")
        if isinstance(m, nn.Conv2d | nn.Linear):
            ok = (x.kind == "map" and m.groups == 1) if isinstance(m, nn.Conv2d) else x.kind in ("vec", "flat")
            if ok:
                self.raw[x.space].consumers.append((name, None if x.kind == "flat" else 1))
            else:
                self.raw[x.space].fixed.append(f"{name} reads it in a way this analysis does not follow")
            return self.produce(node, m, fixed=isinstance(m, nn.Conv2d) and m.groups != 1)
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            if x.kind != ("map" if isinstance(m, nn.BatchNorm2d) else "vec"):
                return self.fix(node, f"{name} normalises another axis")
            arg = node.args[0]
            direct = (isinstance(arg, fx.Node) and arg.op == "call_module" and len(arg.users) == 1
                      and isinstance(self.modules[str(arg.target)], nn.Conv2d | nn.Linear) and m.affine)
            self.raw[x.space].norms.append((name, direct))
            return x
        if isinstance(m, nn.Flatten):
            return self.flatten(node, x, m.start_dim, m.end_dim)
        if isinstance(m, HOMOGENEOUS) or (isinstance(m, POOLS) and x.kind == "map"):
            return x
        if isinstance(m, ELEMENTWISE):
            self.raw[x.space].no_scale.append(f"{name} ({type(m).__name__}) is not positively homogeneous")
            return x
        return self.fix(node, f"{name} ({type(m).__name__}) is not a layer this analysis knows")

    def produce(self, node: fx.Node, m: nn.Module, fixed: bool = False) -> _Layout:
        s = self.new()
        self.raw[s].producers.append(str(node.target))
        if fixed:
            self.raw[s].fixed.append(f"{node.target} is a grouped convolution")
        return _Layout(s, "map" if isinstance(m, nn.Conv2d) else "vec")

    def function(self, node: fx.Node, target: Any) -> _Layout | str:
        x = self.first(node)
        if target in _SHAPE_QUERY:
            return _CONST
        if not isinstance(x, _Layout):
            if x == _CONST and not self.layouts(node):
                return _CONST
            return self.add(node) if x == _CONST and target in _ADD else self.fix(
                node, f"{node.name} mixes it with a tensor this analysis cannot follow")
        if target in _HOMOGENEOUS_FN or (target in _POOL_FN and x.kind == "map"):
            return x
        if target in _ELEMENTWISE_FN:
            self.raw[x.space].no_scale.append(f"{node.name} is not positively homogeneous")
            return x
        if target in _ADD:
            return self.add(node)
        if target in (torch.flatten, "flatten"):
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            return self.flatten(node, x, start, end)
        if target in ("view", "reshape") and self.two_d(node):
            return self.flatten(node, x, 1, -1)
        if target is operator.getitem and x.kind == "map" and self.spatial_index(node.args[1]):
            return x
        if target is F.pad:
            return self.pad(node, x)
        return self.fix(node, f"{node.name} ({getattr(target, '__name__', target)}) is not an op this analysis knows")

    def add(self, node: fx.Node) -> _Layout | str:
        operands = [self.values.get(a, _OPAQUE) if isinstance(a, fx.Node) else _CONST for a in node.args[:2]]
        lays = [v for v in operands if isinstance(v, _Layout)]
        if len(node.args) != 2 or _OPAQUE in operands or len({lay.kind for lay in lays}) > 1:
            return self.fix(node, f"{node.name} adds tensors this analysis cannot align")
        if len(lays) == 1:
            self.raw[lays[0].space].no_scale.append(f"a constant is added to it in {node.name}")
        else:
            self.union(lays[0].space, lays[1].space)
        return lays[0]

    def flatten(self, node: fx.Node, x: _Layout, start: object, end: object) -> _Layout | str:
        if start != 1 or end != -1:
            return self.fix(node, f"{node.name} flattens other axes than the features")
        return _Layout(x.space, "flat") if x.kind == "map" else x

    @staticmethod
    def two_d(node: fx.Node) -> bool:
        shape = node.args[1:]
        if len(shape) == 1 and isinstance(shape[0], tuple | list):
            shape = tuple(shape[0])
        return len(shape) == 2 and isinstance(shape[1], int) and shape[1] == -1

    @staticmethod
    def spatial_index(index: object) -> bool:
        """``x[:, :, ...]`` with slices only and the batch and channel axes untouched."""
        if not isinstance(index, tuple) or len(index) < 2 or not all(isinstance(i, slice) for i in index):
            return False
        return all(i == slice(None) for i in index[:2]) and not any(
            isinstance(v, fx.Node) for i in index for v in (i.start, i.stop, i.step))

    def pad(self, node: fx.Node, x: _Layout) -> _Layout | str:
        pads = node.args[1] if len(node.args) > 1 else node.kwargs.get("pad")
        mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
        value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else None)
        if (x.kind != "map" or not isinstance(pads, tuple | list) or len(pads) not in (2, 4, 6) or mode != "constant"
                or not all(isinstance(p, int) and p >= 0 for p in pads) or value not in (None, 0, 0.0)):
            return self.fix(node, f"{node.name} pads in a way this analysis does not follow")
        if len(pads) < 6 or pads[4] == pads[5] == 0:
            return x
        child = self.new()
        self.raw[child].embeds = (x.space, int(pads[4]), int(pads[4] + pads[5]))
        return _Layout(child, "map")

    # ---- the merge
    def spaces(self) -> list[UnitSpace]:
        groups: dict[int, list[int]] = {}
        for i in range(len(self.raw)):
            groups.setdefault(self.find(i), []).append(i)
        info = {root: self.merged(root, members) for root, members in groups.items()}
        self.check_roles(info)
        # a space embedding another must follow it: a fixed (or output) child pins its parent
        changed = True
        while changed:
            changed = False
            for g in info.values():
                if g["parent"] is None:
                    continue
                if info[g["parent"]]["size"] is None and g["permutable"]:
                    g.update(permutable=False, reason="the stream it pads has no known width")
                    changed = True
                if not g["permutable"] and info[g["parent"]]["permutable"]:
                    info[g["parent"]].update(permutable=False, reason="a padded copy of it cannot be permuted")
                    changed = True
        names: dict[int, str] = {}
        for root in sorted(info):
            base = info[root]["name"]
            names[root] = base if base not in names.values() else f"{base}#{root}"
            info[root]["name"] = names[root]
        out = []
        for root in sorted(info):
            g = info[root]
            if g["size"] is None:
                continue
            reason = g["reason"] or g["scale_reason"]
            out.append(UnitSpace(g["name"], g["size"], tuple(g["producers"]), tuple(g["norms"]),
                                 tuple(g["consumers"]), None if g["parent"] is None else names[g["parent"]],
                                 g["offset"], g["permutable"], g["permutable"] and not g["scale_reason"], reason))
        return out

    def merged(self, root: int, members: list[int]) -> dict[str, Any]:
        raws = [self.raw[i] for i in members]
        producers = [p for r in raws for p in r.producers]
        norms = [n for r in raws for n in r.norms]
        sizes = {_width(self.modules[p], 0) for p in producers} | {_width(self.modules[n], 0) for n, _ in norms}
        embeds = [r.embeds for r in raws if r.embeds is not None]
        why = [w for r in raws for w in r.fixed] + (["it holds the model's outputs"] if any(r.output for r in raws)
                                                     else [])
        parent, offset = None, 0
        if len(embeds) > 1:
            why.append("it pads several streams")
        elif embeds:
            parent, offset, extra = self.find(embeds[0][0]), embeds[0][1], embeds[0][2]
            psize = {_width(self.modules[p], 0) for i in range(len(self.raw)) if self.find(i) == parent
                     for p in self.raw[i].producers}
            sizes |= {s + extra for s in psize}
            if len(psize) != 1:
                why.append("the padded stream has no known width")
        size = sizes.pop() if len(sizes) == 1 else None
        if size is None and (producers or norms or embeds):
            why.append("its width is inconsistent")
        consumers = []
        for layer, block in (c for r in raws for c in r.consumers):
            fan_in = _width(self.modules[layer], 1)
            if size is None or fan_in % size:
                why.append(f"{layer} does not read it whole")
                continue
            consumers.append((layer, fan_in // size if block is None else block))
            if consumers[-1][1] * size != fan_in:
                why.append(f"{layer} does not read it whole")
        scale = [w for r in raws for w in r.no_scale]
        if len(producers) != 1 or embeds or any(r.embeds for r in self.raw if r.embeds and
                                                self.find(r.embeds[0]) == root):
            scale.append("it is a residual or padded stream")
        if len(norms) > 1 or (norms and not norms[0][1]):
            scale.append("its BatchNorm does not directly follow the layer writing it")
        first = producers[0] if producers else f"space{root}"
        return {"name": first, "size": size, "producers": producers, "norms": [n for n, _ in norms],
                "consumers": consumers, "parent": parent, "offset": offset, "permutable": not why,
                "reason": "; ".join(dict.fromkeys(why)), "scale_reason": "; ".join(dict.fromkeys(scale))}

    def check_roles(self, info: dict[int, dict[str, Any]]) -> None:
        """A layer called twice on different spaces (a shared module) ties them: fix both."""
        seen: dict[tuple[str, str], set[int]] = {}
        for root, g in info.items():
            for role, layers in (("out", g["producers"] + g["norms"]), ("in", [c for c, _ in g["consumers"]])):
                for layer in set(layers):
                    seen.setdefault((layer, role), set()).add(root)
                if len(layers) != len(set(layers)):
                    g.update(permutable=False, reason=g["reason"] or "a layer is called on it twice")
        for (layer, _), roots in seen.items():
            if len(roots) > 1:
                for root in roots:
                    info[root].update(permutable=False, reason=f"{layer} is called on several spaces")


def _width(m: nn.Module, axis: int) -> int:
    """Output (axis 0) or input (axis 1) units of a Conv2d, Linear or BatchNorm, read off its tensors (a caller may
    have replaced them without updating the module's size attributes)."""
    try:
        sizes = widths_of(m)
    except ArchitectureError:
        return -1
    return sizes[axis] if axis < len(sizes) else -1


def unit_spaces(model: nn.Module) -> list[UnitSpace]:
    """The unit spaces of ``model`` in graph order (module docstring), found by tracing it with ``torch.fx``;
    raises :class:`~netmark.errors.ArchitectureError` if the model cannot be traced (data-dependent control flow)."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as e:  # fx raises many types for untraceable code
        raise ArchitectureError(f"{type(model).__name__} cannot be traced with torch.fx ({first_line(e, 120)}), so its "
                                "hidden units cannot be followed.") from None
    analysis = _Analysis(model)
    for node in graph.nodes:
        analysis.visit(node)
    return analysis.spaces()


def draw_permutations(spaces: Iterable[UnitSpace], chosen: set[str], gen: torch.Generator) -> dict[str, torch.Tensor]:
    """A permutation per space to apply (``new[j] = old[perm[j]]``): a random one for each ``chosen`` space; a space
    embedding a permuted parent takes the parent's permutation at its offset (its free positions are shuffled among
    themselves only if it is chosen itself), as option-A padding needs."""
    by_name = {s.name: s for s in spaces}
    perms: dict[str, torch.Tensor] = {}

    def perm_of(s: UnitSpace) -> torch.Tensor:
        if s.name in perms:
            return perms[s.name]
        p = torch.arange(s.size)
        if s.parent is not None:
            parent = perm_of(by_name[s.parent])
            p[s.offset: s.offset + parent.numel()] = parent + s.offset
        if s.name in chosen:
            inside = torch.zeros(s.size, dtype=torch.bool)
            if s.parent is not None:
                inside[s.offset: s.offset + by_name[s.parent].size] = True
            free = torch.nonzero(~inside).flatten()
            p[free] = free[torch.randperm(free.numel(), generator=gen)]
        perms[s.name] = p
        return p

    for s in by_name.values():
        perm_of(s)
    return {k: v for k, v in perms.items() if not torch.equal(v, torch.arange(v.numel()))}


def _rewrite(model: nn.Module, space: UnitSpace, layers: Iterable[str], attrs: tuple[str, ...],
             rows: Callable[[torch.Tensor], torch.Tensor], columns: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """In place: ``rows(t)`` for the attributes ``attrs`` of ``layers`` (unit-major tensors), ``columns(v)`` for the
    consumers' weights seen as ``(out, units, block, rest)``."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name in layers:
            for attr in attrs:
                t = getattr(modules[name], attr, None)
                if isinstance(t, torch.Tensor):
                    t.copy_(rows(t))
        for name, block in space.consumers:
            w = modules[name].weight
            if isinstance(w, torch.Tensor):
                w.copy_(columns(w.reshape(w.shape[0], space.size, block, -1)).reshape(w.shape))


def apply_permutation(model: nn.Module, space: UnitSpace, perm: torch.Tensor) -> None:
    """Reorder the units of ``space`` in ``model`` in place: unit ``j`` becomes the old unit ``perm[j]`` (weight rows,
    biases, BatchNorm parameters and running statistics, and the consumers' input columns or column blocks)."""
    if perm.shape != (space.size,) or not torch.equal(torch.sort(perm).values, torch.arange(space.size)):
        raise ArchitectureError(f"not a permutation of the {space.size} units of {space.name}")
    _rewrite(model, space, (*space.producers, *space.norms), ("weight", "bias", "running_mean", "running_var"),
             lambda t: t[perm.to(t.device)], lambda v: v[:, perm.to(v.device)])


def apply_scaling(model: nn.Module, space: UnitSpace, scale: torch.Tensor) -> None:
    """Multiply unit ``i`` of ``space`` by ``scale[i] > 0`` (its BatchNorm's weight and bias if it has one, which is
    exact in eval mode, else its producer's weight rows and bias) and divide the columns reading it by the same
    factor, in place: exact across ReLU and pooling, ``ReLU(c·z)/c = ReLU(z)``."""
    if not space.scalable:
        raise ArchitectureError(f"the units of {space.name} cannot be rescaled exactly: {space.reason}")
    if scale.shape != (space.size,) or not bool((scale > 0).all()):
        raise ArchitectureError(f"{space.name} needs {space.size} positive scale factors")
    _rewrite(model, space, space.norms or space.producers, ("weight", "bias"),
             lambda t: t * scale.to(t.device, t.dtype).reshape(-1, *[1] * (t.dim() - 1)),
             lambda v: v / scale.to(v.device, v.dtype).reshape(1, -1, 1, 1))
