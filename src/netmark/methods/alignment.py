"""Alignment of a suspect's hidden units onto the owner's (issue 21, item 2): the reference a key stores, and the
matching. The decision built on it (which extraction decides, its null) is :mod:`netmark.methods.alignment_null`.

The threat: a thief who holds the weights reorders the hidden units of a layer (and the matching inputs of the next
one), rescales a ReLU unit's incoming weights by c > 0 and its outgoing weights by 1/c, or adds dummy units whose
outgoing weights are zero (or splits a unit in two). The model computes the same function, yet every index a
white-box key holds into a host layer now points at another weight (Yan et al., "Rethinking white-box watermarks on
deep learning models under neural structural obfuscation", USENIX Security 2023; Li et al., neuron alignment, arXiv
2112.14108).

What the key stores (:func:`with_reference`, called by the methods' ``finalize``): the owner's marked tensors of the
model's Conv2d/Linear layers from the first one (in the order the forward pass calls them) up to the host layer
(every layer for Tartaglione, whose payload is spread over all of them; more layers while no unit so far has
:data:`MIN_FAN_IN` inputs: a first conv layer's small filters cannot tell a copy from an independent model), and of
the BatchNorms among them. A chain of Conv2d/Linear layers without BatchNorm (``mlp``, ``lenet5``, ``simple-cnn``,
``all-cnn-c``) stores them flat (:data:`REF_WEIGHTS`, with :data:`REF_LAYOUT`: per layer out, in, kh, kw, has-bias:
the format of the first keys with a reference); any other model (BatchNorm, residual streams: ``vgg16``, ``wrn``,
the ResNets, a user's ``nn.Sequential``) by name (``align.<layer>.<tensor>``). The reference is secret like the rest
of the key and never written into the model.

Alignment (:func:`align`). The suspect's unit spaces (:func:`netmark.models.structure.unit_spaces`: which tensors
index the same units, e.g. every layer reading or writing one residual stream) are matched one by one in the order
the forward pass reaches them. The network's input (pixels) and output (logits) are never permuted, so a sweep from
the input determines every unit: a space is matched through its *anchor*, the first layer writing it whose inputs
are already aligned (a residual stream: the stem convolution; the stream is then one permutation for every layer
and BatchNorm on it). The anchor's input columns are first put in the reference order and scale of the space before
(a Linear after a flatten: whole channel blocks; split units folded back, below), then each reference unit is
matched to one suspect unit by Hungarian assignment (:func:`scipy.optimize.linear_sum_assignment`) on the cosine of
their incoming weights with the bias (scale-invariant; c > 0, so the signed cosine; ties keep the order). Its
positive scale, where the space can carry one (one layer writes it), is estimated by least squares — on the
BatchNorm's weight and bias when one follows (a rescaling then lives there: the convolution's rows are unchanged),
else on the weights the suspect kept (robust to pruning: :func:`_scales`) — and divided out, unless the layer's
scales hardly spread (sd of ln c <= :data:`SCALE_SPREAD`: fine-tuning moves units about alike, weight decay shrinks
them alike, and a common factor changes no extraction's signs). Unmatched suspect units (dummies) are dropped; one
whose incoming weights are a positive multiple of a matched unit's (cosine >= :data:`SPLIT_COSINE`: dummy-neurons'
``split`` mode) is that unit's copy, and its outgoing weights are added to the matched unit's, times the ratio of the
two (:func:`_folds`). Every tensor indexed by an aligned space follows: producers' rows, BatchNorm parameters and
running statistics, consumers' columns (also of layers past the reference). The result is a copy of the suspect with
the owner's shapes, from which each method extracts exactly as before. The sweep needs no initial guess and no
iteration. An unobfuscated suspect aligns to the identity and is verified unchanged (the same numbers); keys without
a reference (written before) verify as before. Spaces :mod:`~netmark.models.structure` cannot follow (concatenation,
grouped convolutions, ...) are left as they are.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, fx, nn

from netmark.errors import ArchitectureError, KeyFileError
from netmark.keys import WatermarkKey
from netmark.models.resize import resized, set_layer
from netmark.models.structure import UnitSpace, unit_spaces

log = logging.getLogger(__name__)

#: a chain's reference: the owner's weights and biases of the reference layers, flattened and concatenated (float32)
REF_WEIGHTS = "align_ref"
#: per reference layer ``[out, in, kh, kw, has_bias]`` (int64; a Linear has kh = kw = 0)
REF_LAYOUT = "align_layout"
ALIGN_TENSORS = (REF_WEIGHTS, REF_LAYOUT)
#: prefix of a named reference's tensors: ``align.<layer>.<weight|bias|running_mean|running_var>``
REF_PREFIX = "align."
#: a layer whose fitted unit scales c have a standard deviation of ln c up to this is taken as not rescaled
SCALE_SPREAD = 0.1
#: an unmatched suspect unit this close (cosine of incoming weights and bias) to a matched one is a split copy of it
SPLIT_COSINE = 0.98
#: a reference reaches at least one layer whose units have this many input weights (:func:`with_reference`)
MIN_FAN_IN = 64
_NORM = nn.BatchNorm1d | nn.BatchNorm2d
_ATTRS = ("weight", "bias", "running_mean", "running_var")


def chain(model: nn.Module) -> list[tuple[str, nn.Conv2d | nn.Linear]] | None:
    """``model``'s Conv2d/Linear layers in order when they form a chain stored flat (module docstring): no
    BatchNorm, groups 1, each layer's inputs the previous one's units (a Linear after a conv: whole channel blocks);
    else ``None``."""
    from netmark.models import conv_and_linear_layers

    if any(isinstance(m, _NORM) for m in model.modules()):
        return None
    layers = list(conv_and_linear_layers(model).items())
    for i, (_, mod) in enumerate(layers):
        if isinstance(mod, nn.Conv2d) and mod.groups != 1:
            return None
        if i:
            prev, n_in = layers[i - 1][1], int(mod.weight.shape[1])
            units = int(prev.weight.shape[0])
            if (n_in % units if isinstance(mod, nn.Linear) and isinstance(prev, nn.Conv2d) else n_in != units):
                return None
    return layers or None


def call_order(model: nn.Module) -> list[str]:
    """The Conv2d, Linear and BatchNorm layers of ``model`` in the order its forward pass calls them (torch.fx);
    ArchitectureError when it cannot be traced."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as e:  # fx raises many types for untraceable code
        raise ArchitectureError(f"{type(model).__name__} cannot be traced with torch.fx ({str(e)[:120]})") from None
    mods = dict(model.named_modules())
    out: list[str] = []
    for node in graph.nodes:
        name = str(node.target)
        if node.op == "call_module" and isinstance(mods.get(name), nn.Conv2d | nn.Linear | _NORM) and name not in out:
            out.append(name)
    return out


def with_reference(key: WatermarkKey, model: nn.Module, *, upto: str | None) -> WatermarkKey:
    """``key`` with the alignment reference of ``model`` (the owner's marked model): its Conv2d/Linear layers in call
    order from the first up to ``upto`` (``None``: all), further hidden layers while no unit so far has
    :data:`MIN_FAN_IN` inputs, and the BatchNorms among them (module docstring). ``key`` itself when ``model``'s
    units cannot be followed (it cannot be traced, or ``upto`` is none of its layers)."""
    try:
        order = call_order(model)
        unit_spaces(model)
    except ArchitectureError as e:
        log.info("no alignment reference: %s", e)
        return key
    mods = dict(model.named_modules())
    layers = [n for n in order if isinstance(mods[n], nn.Conv2d | nn.Linear)]
    if not layers or (upto is not None and upto not in layers):
        return key
    stop = layers.index(upto) + 1 if upto is not None else len(layers)
    while stop < len(layers) - 1 and max(mods[n].weight[0].numel() for n in layers[:stop]) < MIN_FAN_IN:
        stop += 1  # the model's output layer never helps: its units are not matched
    flat_chain = chain(model)
    if flat_chain is not None and [n for n, _ in flat_chain][:stop] == layers[:stop]:
        return replace(key, tensors={**key.tensors, **_flat(mods, layers[:stop])})
    last = order.index(layers[stop - 1])
    following = [n for n in order[last + 1:] if isinstance(mods[n], nn.Conv2d | nn.Linear)]
    end = order.index(following[0]) if following else len(order)
    named = {f"{REF_PREFIX}{n}.{a}": t.detach().float().cpu().clone() for n in order[:end] for a in _ATTRS
             if isinstance(t := getattr(mods[n], a, None), torch.Tensor)}
    return replace(key, tensors={**key.tensors, **named})


def _param(mod: nn.Module, attr: str) -> Tensor:
    t = getattr(mod, attr)
    if not isinstance(t, Tensor):
        raise ArchitectureError(f"a {type(mod).__name__} without {attr}")
    return t.detach()


def _flat(mods: dict[str, nn.Module], names: list[str]) -> dict[str, Tensor]:
    flat, layout = [], []
    for name in names:
        mod = mods[name]
        w = _param(mod, "weight").float().cpu()
        kh, kw = (int(w.shape[2]), int(w.shape[3])) if w.ndim == 4 else (0, 0)
        bias = mod.bias
        layout.append([int(w.shape[0]), int(w.shape[1]), kh, kw, int(bias is not None)])
        flat += [w.reshape(-1)] + ([bias.detach().float().cpu()] if isinstance(bias, Tensor) else [])
    return {REF_WEIGHTS: torch.cat(flat), REF_LAYOUT: torch.tensor(layout, dtype=torch.int64)}


def has_reference(key: WatermarkKey) -> bool:
    """Whether ``key`` holds an alignment reference (keys written before issue 21 do not)."""
    return all(t in key.tensors for t in ALIGN_TENSORS) or any(k.startswith(REF_PREFIX) for k in key.tensors)


def without_reference(key: WatermarkKey) -> WatermarkKey:
    """``key`` without its alignment reference (verified on the suspect as it is)."""
    return replace(key, tensors={k: v for k, v in key.tensors.items()
                                 if k not in ALIGN_TENSORS and not k.startswith(REF_PREFIX)})


def _reference(key: WatermarkKey, model: nn.Module) -> dict[str, Tensor]:
    """The key's reference as ``{"<layer>.<tensor>": float64}`` for ``model``'s layer names (a flat chain reference
    names the suspect's first chain layers)."""
    if not all(t in key.tensors for t in ALIGN_TENSORS):
        return {k.removeprefix(REF_PREFIX): v.double() for k, v in key.tensors.items() if k.startswith(REF_PREFIX)}
    flat, lay = key.tensors[REF_WEIGHTS].double().reshape(-1), key.tensors[REF_LAYOUT]
    if lay.ndim != 2 or lay.shape[1] != 5 or lay.is_floating_point() or bool((lay < 0).any()):
        raise KeyFileError(f"the key's alignment layout must be a non-negative integer (layers, 5) tensor, got "
                           f"{lay.dtype} {tuple(lay.shape)}")
    layout = lay.tolist()
    total = sum(o * i * max(kh, 1) * max(kw, 1) + o * bool(has_bias) for o, i, kh, kw, has_bias in layout)
    if total != flat.numel():
        raise KeyFileError(f"the key's alignment reference holds {flat.numel()} values, its layout {total}")
    layers = chain(model)
    if layers is None or len(layers) < len(layout):
        raise ArchitectureError("the suspect's Conv2d/Linear layers do not form the chain of the key's reference")
    out, at = {}, 0
    for (name, _), (o, i, kh, kw, has_bias) in zip(layers, layout, strict=False):
        n = o * i * max(kh, 1) * max(kw, 1)
        out[f"{name}.weight"] = flat[at: at + n].reshape(o, i, kh, kw) if kh else flat[at: at + n].reshape(o, i)
        at += n
        if has_bias:
            out[f"{name}.bias"] = flat[at: at + o]
            at += o
    return out


@dataclass
class Alignment:
    """What :func:`align` found: ``model`` (the aligned copy, or the suspect itself when ``identity``); ``quality``:
    the mean cosine of the matched units per space (``per_layer``, by anchor layer; a reference unit left unmatched
    counts 0), averaged over the spaces weighted by their anchors' number of weights (a layer of 10-weight filters
    tells little: the filters of two independently trained first layers match well); the smallest cosine of a unit
    (``min_similarity``); the suspect's units left unmatched per space (``dropped``) and the layers rewritten."""

    model: nn.Module
    identity: bool
    quality: float
    min_similarity: float
    dropped: dict[str, int] = field(default_factory=dict)
    layers: list[str] = field(default_factory=list)
    per_layer: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"identity": self.identity, "quality": self.quality, "min_similarity": self.min_similarity,
                "dropped_units": self.dropped, "layers": self.layers, "layer_quality": self.per_layer}


@dataclass
class _Match:
    """One space's match: ``perm`` (the suspect unit of each reference unit, −1 for none), ``scale`` (where it
    lives: ``"norm"`` or ``"rows"``), the split units to fold (``into``, ``ratio``) and the cosines."""

    perm: Tensor
    scale: Tensor
    scale_in: str
    into: Tensor
    ratio: Tensor
    cos: Tensor

    def identity(self, size: int) -> bool:
        return (len(self.perm) == size and bool((self.perm == torch.arange(size)).all())
                and bool((self.scale == 1).all()) and not bool((self.into >= 0).any()))


def _fold(w: Tensor, m: _Match, blocks: int) -> Tensor:
    """Consumer weight ``w`` (out, suspect units × blocks) in the reference's units: split units folded into their
    unit (times the ratio), reordered by ``m.perm`` (zero for a reference unit without one), times the scale (undoes
    the 1/c of a rescaled unit). ``blocks``: input columns per unit (a Linear after a flatten), else 1."""
    v = w.reshape(w.shape[0], -1, blocks, *w.shape[2:]).clone()
    for u in torch.nonzero(m.into >= 0).reshape(-1).tolist():
        v[:, int(m.into[u])] += float(m.ratio[u]) * v[:, u]
    out = v[:, m.perm.clamp(min=0)] * m.scale.reshape(1, -1, *([1] * (v.ndim - 2)))
    out[:, m.perm < 0] = 0
    return out.reshape(out.shape[0], -1, *w.shape[2:])


def _rows(t: Tensor, m: _Match, divide: bool) -> Tensor:
    """A unit-major tensor in the reference's units (zero for a reference unit without one), divided by the scale
    when it carries it."""
    out = t[m.perm.clamp(min=0)].clone()
    if divide:
        out = out / m.scale.reshape(-1, *([1] * (t.ndim - 1)))
    out[m.perm < 0] = 0
    return out


def _scales(s: Tensor, r: Tensor) -> Tensor:
    """Per row, the least-squares factor c of ``s ≈ c·r`` over the entries that ``s`` kept (non-zero): exact for a
    rescaled row, 1 for a pruned one (over all entries it would be ``|s|²/|r|²`` and inflate the row); 1 for a row
    without any."""
    kept = r * (s != 0)
    den = (kept * kept).sum(1)
    return torch.where(den > 0, (s * kept).sum(1) / den.clamp_min(1e-300), torch.ones_like(den))


def _match(s: Tensor, r: Tensor, s_affine: Tensor | None, r_affine: Tensor | None, scalable: bool) -> _Match:
    """Hungarian matching of reference rows ``r`` to suspect rows ``s`` (incoming weights and bias) on their
    cosine; scales from the BatchNorm's (weight, bias) rows ``*_affine`` when given, else from the rows; split
    units among the unmatched (:data:`SPLIT_COSINE`)."""
    from scipy.optimize import linear_sum_assignment

    if s.shape[1] != r.shape[1]:
        raise ArchitectureError(f"a suspect unit has {s.shape[1]} inputs, the reference's {r.shape[1]}")
    ns, nr = s / s.norm(dim=1, keepdim=True).clamp_min(1e-30), r / r.norm(dim=1, keepdim=True).clamp_min(1e-30)
    sim = nr @ ns.T
    ties = torch.eye(*sim.shape, dtype=sim.dtype) * 1e-9  # equal similarities (e.g. dead units): keep the order
    rows, cols = linear_sum_assignment((sim + ties).numpy(), maximize=True)
    perm = torch.full((len(r),), -1, dtype=torch.int64)
    perm[torch.as_tensor(rows)] = torch.as_tensor(cols, dtype=torch.int64)
    ok = perm >= 0
    scale, cos = torch.ones(len(r), dtype=torch.float64), torch.zeros(len(r), dtype=torch.float64)
    cos[ok] = sim[torch.as_tensor(rows), torch.as_tensor(cols)]
    by_norm = s_affine is not None and r_affine is not None
    carrier, target = (s_affine, r_affine) if s_affine is not None and r_affine is not None else (s, r)
    if scalable:
        c = _scales(carrier[perm[ok]], target[ok])
        # a non-positive fit cannot be a ReLU rescaling; a layer whose units' log-scales hardly spread was not rescaled
        if float(c[c > 0].log().std()) > SCALE_SPREAD:
            scale[ok] = torch.where(c > 0, c, torch.ones_like(c))
    into = torch.full((len(s),), -1, dtype=torch.int64)
    ratio = torch.zeros(len(s), dtype=torch.float64)
    spare = torch.ones(len(s), dtype=torch.bool)
    spare[perm[ok]] = False
    if bool(spare.any()) and bool(ok.any()):
        matched = perm[ok]
        best, at = (ns[spare] @ ns[matched].T).max(dim=1)
        idx = torch.nonzero(spare).reshape(-1)[best >= SPLIT_COSINE]
        into[idx] = matched[at[best >= SPLIT_COSINE]]
        size = carrier.norm(dim=1)
        ratio[idx] = size[idx] / size[into[idx]].clamp_min(1e-30)
    return _Match(perm, scale, "norm" if by_norm else "rows", into, ratio, cos)


@torch.no_grad()
def align(model: nn.Module, key: WatermarkKey) -> Alignment:
    """``model`` aligned to ``key``'s reference (module docstring); ArchitectureError when its layers cannot be."""
    ref = _reference(key, model)
    spaces = unit_spaces(model)
    order = call_order(model)
    mods = dict(model.named_modules())
    pos = {n: i for i, n in enumerate(order)}
    reads: dict[str, tuple[UnitSpace, int]] = {c: (s, b) for s in spaces for c, b in s.consumers}
    writes: dict[str, UnitSpace] = {p: s for s in spaces for p in (*s.producers, *s.norms)}
    if not any(f"{n}.weight" in ref for n in order):
        raise ArchitectureError("the suspect has none of the layers of the key's alignment reference")
    matches: dict[str, _Match] = {}
    weights: dict[str, int] = {}

    def tensor(name: str, attr: str) -> Tensor | None:
        t = getattr(mods[name], attr, None)
        return t.detach().double().cpu() if isinstance(t, torch.Tensor) else None

    def aligned_in(name: str) -> Tensor:
        w = tensor(name, "weight")
        assert w is not None
        src = reads.get(name)
        return w if src is None or src[0].name not in matches else _fold(w, matches[src[0].name], src[1])

    for space in sorted(spaces, key=lambda s: pos.get(s.name, len(pos))):
        if not space.permutable:
            continue
        anchor = next((p for p in space.producers if f"{p}.weight" in ref
                       and (p not in reads or reads[p][0].name in matches or not reads[p][0].permutable)), None)
        if anchor is None:
            continue
        w, b = aligned_in(anchor), tensor(anchor, "bias")
        r_w, r_b = ref[f"{anchor}.weight"], ref.get(f"{anchor}.bias")
        if (b is None) != (r_b is None):
            raise ArchitectureError(f"the suspect's {anchor} and the reference's differ in having a bias")
        s = torch.cat([w.reshape(len(w), -1)] + ([b[:, None]] if b is not None else []), 1)
        r = torch.cat([r_w.reshape(len(r_w), -1)] + ([r_b[:, None]] if r_b is not None else []), 1)
        norm = space.norms[0] if len(space.norms) == 1 and f"{space.norms[0]}.weight" in ref else None
        s_aff = r_aff = None
        if norm is not None and tensor(norm, "weight") is not None:
            s_aff = torch.stack([tensor(norm, "weight"), tensor(norm, "bias")], 1)  # type: ignore[list-item]
            r_aff = torch.stack([ref[f"{norm}.weight"], ref[f"{norm}.bias"]], 1)
        matches[space.name] = _match(s, r, s_aff, r_aff, space.scalable)
        weights[space.name] = r_w.numel()
    return _assemble(model, spaces, matches, weights, reads, writes, mods)


def _assemble(model: nn.Module, spaces: list[UnitSpace], matches: dict[str, _Match], weights: dict[str, int],
              reads: dict[str, tuple[UnitSpace, int]], writes: dict[str, UnitSpace],
              mods: dict[str, nn.Module]) -> Alignment:
    """The aligned copy of ``model``: every tensor indexed by a matched space rewritten (module docstring)."""
    sizes = {s.name: s.size for s in spaces}
    identity = all(m.identity(sizes[n]) for n, m in matches.items())
    per_layer = {n: float(m.cos.mean()) for n, m in matches.items()}
    n = torch.tensor([weights[k] for k in per_layer], dtype=torch.float64)
    quality = float((torch.tensor(list(per_layer.values()), dtype=torch.float64) * n).sum() / n.sum()) if per_layer \
        else 1.0
    worst = float(torch.cat([m.cos for m in matches.values()]).min()) if matches else 1.0
    dropped = {k: sizes[k] - int((m.perm >= 0).sum()) for k, m in matches.items()}
    touched = [name for name in mods if (name in writes and writes[name].name in matches)
               or (name in reads and reads[name][0].name in matches)]
    if identity:
        return Alignment(model, True, quality, worst, dropped, touched, per_layer)
    out = copy.deepcopy(model)
    for name in touched:
        mod, new = mods[name], {}
        own, src = writes.get(name), reads.get(name)
        m_out = matches.get(own.name) if own is not None else None
        for attr in _ATTRS:
            t = getattr(mod, attr, None)
            if not isinstance(t, torch.Tensor):
                continue
            v = t.detach().double()
            if attr == "weight" and not isinstance(mod, _NORM) and src is not None and src[0].name in matches:
                v = _fold(v, matches[src[0].name], src[1])
            if m_out is not None:
                carries = (attr in ("weight", "bias")) and (
                    isinstance(mod, _NORM) if m_out.scale_in == "norm" else not isinstance(mod, _NORM))
                v = _rows(v, m_out, divide=carries and len(own.producers) == 1 if own else False)
            new[attr] = v.to(t.dtype)
        layer = resized(mod, *([new["weight"].shape[0], new["weight"].shape[1]] if not isinstance(mod, _NORM)
                               else [next(iter(new.values())).shape[0]]))
        count = getattr(mod, "num_batches_tracked", None)
        if isinstance(count, torch.Tensor):
            new["num_batches_tracked"] = count.detach().clone()
        layer.load_state_dict({**layer.state_dict(), **new}, strict=True)
        set_layer(out, name, layer.train(mod.training))
    return Alignment(out, False, quality, worst, dropped, touched, per_layer)
