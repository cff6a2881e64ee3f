"""Alignment-aware verification of white-box watermarks (issue 21, item 2).

The threat: a thief who holds the weights reorders the hidden units of a layer (and the matching inputs of the next
one), rescales a ReLU unit's incoming weights by c > 0 and its outgoing weights by 1/c, or adds dummy units whose
outgoing weights are zero. The model computes the same function, yet every index a white-box key holds into a host
layer now points at another weight (Yan et al., "Rethinking white-box watermarks on deep learning models under
neural structural obfuscation", USENIX Security 2023; Li et al., neuron alignment, arXiv 2112.14108).

What the key stores (:func:`with_reference`, called by the methods' ``finalize``): the owner's marked weights and
biases of the model's Conv2d/Linear layers from the first one up to the host layer (every layer for Tartaglione,
whose payload is spread over all of them; one layer more when the host's units have fewer than :data:`MIN_FAN_IN`
inputs, e.g. a first conv layer: see :class:`Alignment`): :data:`REF_WEIGHTS` (flat) and :data:`REF_LAYOUT` (per
layer: out, in, kh, kw, has-bias). It is secret like the rest of the key and never written into the model.

Alignment (:func:`align`). The network's input (pixels) and output (logits) are never permuted, so one sweep from
the input determines every unit: for layer ``l`` the suspect's input columns are first put in the reference order
and scale found for layer ``l − 1`` (a Linear after a flatten: whole channel blocks), then each reference unit is
matched to one suspect unit by Hungarian assignment (:func:`scipy.optimize.linear_sum_assignment`) on the cosine
of their incoming weights with the bias (scale-invariant; c > 0, so the signed cosine; ties keep the order), its
positive scale is estimated (least squares over the weights the suspect kept, robust to pruning: :func:`_scales`)
and divided out, unless the layer's scales hardly spread (sd of ln c <= :data:`SCALE_SPREAD`: fine-tuning moves the
units about alike, weight decay shrinks them alike, and a common factor changes no extraction's signs), and unmatched
suspect units (dummies) are dropped. The model's last layer keeps its rows (the logits); the layer after the last
reference layer only gets its columns aligned. The result is a copy of the suspect with the owner's shapes, from
which each method extracts exactly as before. Unlike alternating row/column matching on the host alone, the sweep
needs no initial guess and no iteration; its cost is a reference of the layers below the host. An unobfuscated
suspect aligns to the identity and is verified unchanged (the same numbers). Keys without a reference (written
before) verify as before.

Supported: chains of Conv2d/Linear (groups 1) with element-wise positively homogeneous operations between them
(ReLU, max-pooling, flatten, dropout): netmark's ``mlp``, ``lenet5``, ``simple-cnn``, ``all-cnn-c``. Models with
BatchNorm or residual connections get no reference (verified as before): matching them needs the BatchNorm
statistics and the shared permutation of a residual stream, not implemented. A unit split in two whose outgoing
weights sum to the original (dummy-neurons' ``split`` mode) is recognised by its incoming weights (a positive multiple
of a matched unit's, cosine >= :data:`SPLIT_COSINE`) and its outgoing weights are folded back (:func:`_folds`).

Decision (:func:`verify_aligned`) and its null (issue 21, item 3). Alignment searches over permutations, and an
independently trained model aligned to the owner's *marked* reference becomes partly like it (Git Re-Basin), so the
binomial / Pearson null does not hold for the aligned extraction. ``benchmarks/alignment.py`` (Fashion-MNIST, 6,000
images, 3 epochs, key seeds 0 and 1, 50 independent models each): DeepSigns white (MLP ``fc1``, 32 bits) read the
independent models at 25.4 and 23.9 of 32 bits on average once aligned (z = +23.6 and +19.9 against fair coins; the
most 30 and 31 of 32: 1 and 3 of 50 would be false positives at 1e-6), unaligned at most 25 and 21; Tartaglione
(LeNet5) at ρ up to 0.086 and 0.091 aligned (p = 1.3e-4, 5.6e-5), 0.048 and 0.050 unaligned. The aligned extraction
therefore decides only when the alignment quality reaches :data:`MIN_QUALITY` (0.8), i.e. when the suspect's weights
are the reference's up to the obfuscation: obfuscated copies scored 1.000, and 0.86-0.98 after one more epoch of
fine-tuning; the independent models at most 0.27. Below it the raw extraction decides, under its exact null (0 false
positives in the benchmark). A false positive would need an independent model that aligns to the owner's weights at
quality >= 0.8; both outcomes are reported. A fine-tuned or pruned model that is not obfuscated aligns to the
identity (its scales are fitted on the weights it kept, and hardly spread) and is read as before; an obfuscated model
pruned heavily enough to fall below the gate is not aligned (an open limit).

Claims (:mod:`netmark.methods.ownership`) decide with the re-derived key, which holds no reference (it is not among
``TRAINED_TENSORS``): a forger would choose it freely, and with it the permutation his key is read through; a claim
therefore decides on the unaligned suspect.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from netmark.errors import ArchitectureError, KeyFileError
from netmark.keys import WatermarkKey
from netmark.verify import VerificationResult

log = logging.getLogger(__name__)

#: the owner's weights and biases of the reference layers, flattened and concatenated (float32)
REF_WEIGHTS = "align_ref"
#: per reference layer ``[out, in, kh, kw, has_bias]`` (int64; a Linear has kh = kw = 0)
REF_LAYOUT = "align_layout"
ALIGN_TENSORS = (REF_WEIGHTS, REF_LAYOUT)
#: the aligned extraction's statistic (matched bits, or Pearson's ρ) on independent models (:func:`calibrate_null`)
ALIGN_NULL = "align_null"
#: the alignment quality (:class:`Alignment`) from which the aligned extraction decides (module docstring)
MIN_QUALITY = 0.8
#: a layer whose fitted unit scales c have a standard deviation of ln c up to this is taken as not rescaled
SCALE_SPREAD = 0.1
#: an unmatched suspect unit this close (cosine of incoming weights and bias) to a matched one is a split copy of it
SPLIT_COSINE = 0.98
#: a reference reaches at least one layer whose units have this many input weights (:func:`with_reference`)
MIN_FAN_IN = 64


def chain(model: nn.Module) -> list[tuple[str, nn.Conv2d | nn.Linear]] | None:
    """``model``'s Conv2d/Linear layers in order when they form a chain that alignment handles (module docstring):
    no BatchNorm, groups 1, each layer's inputs the previous one's units (a Linear after a conv: whole channel
    blocks); else ``None``."""
    from netmark.models import conv_and_linear_layers

    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return None
    layers = list(conv_and_linear_layers(model).items())
    for i, (_, mod) in enumerate(layers):
        if isinstance(mod, nn.Conv2d) and mod.groups != 1:
            return None
        if i and not _fits(layers[i - 1][1], mod):
            return None
    return layers or None


def _units(mod: nn.Conv2d | nn.Linear) -> int:
    return int(mod.weight.shape[0])


def _fits(prev: nn.Conv2d | nn.Linear, mod: nn.Conv2d | nn.Linear) -> bool:
    n_in = int(mod.weight.shape[1])
    if isinstance(mod, nn.Linear) and isinstance(prev, nn.Conv2d):
        return n_in % _units(prev) == 0
    return n_in == _units(prev)


def with_reference(key: WatermarkKey, model: nn.Module, *, upto: str | None) -> WatermarkKey:
    """``key`` with the alignment reference of ``model`` (the owner's marked model): its chain's layers from the
    first up to ``upto`` (``None``: all), and further hidden layers while every unit so far has fewer than
    :data:`MIN_FAN_IN` inputs (the quality of a layer of small filters cannot tell a copy from an independent model).
    ``key`` itself when ``model`` is no chain :func:`align` handles."""
    layers = chain(model)
    names = [n for n, _ in layers] if layers else []
    if layers is None or (upto is not None and upto not in names):
        log.info("no alignment reference: %s is not a Conv2d/Linear chain without BatchNorm", type(model).__name__)
        return key
    stop = names.index(upto) + 1 if upto is not None else len(layers)
    while stop < len(layers) - 1 and max(m.weight[0].numel() for _, m in layers[:stop]) < MIN_FAN_IN:
        stop += 1  # the model's output layer never helps: its units are not matched
    ref = layers[:stop]
    flat, layout = [], []
    for _, mod in ref:
        w = mod.weight.detach().float().cpu()
        kh, kw = (int(w.shape[2]), int(w.shape[3])) if w.ndim == 4 else (0, 0)
        layout.append([int(w.shape[0]), int(w.shape[1]), kh, kw, int(mod.bias is not None)])
        flat += [w.reshape(-1)] + ([mod.bias.detach().float().cpu()] if mod.bias is not None else [])
    tensors = {REF_WEIGHTS: torch.cat(flat), REF_LAYOUT: torch.tensor(layout, dtype=torch.int64)}
    return replace(key, tensors={**key.tensors, **tensors})


def has_reference(key: WatermarkKey) -> bool:
    """Whether ``key`` holds an alignment reference (keys written before issue 21 do not)."""
    return all(t in key.tensors for t in ALIGN_TENSORS)


def _reference(key: WatermarkKey) -> list[tuple[Tensor, Tensor | None]]:
    flat, lay = key.tensors[REF_WEIGHTS].double().reshape(-1), key.tensors[REF_LAYOUT]
    if lay.ndim != 2 or lay.shape[1] != 5 or lay.is_floating_point() or bool((lay < 0).any()):
        raise KeyFileError(f"the key's alignment layout must be a non-negative integer (layers, 5) tensor, got "
                           f"{lay.dtype} {tuple(lay.shape)}")
    layout = lay.tolist()
    total = sum(o * i * max(kh, 1) * max(kw, 1) + o * bool(has_bias) for o, i, kh, kw, has_bias in layout)
    if total != flat.numel():
        raise KeyFileError(f"the key's alignment reference holds {flat.numel()} values, its layout {total}")
    out, at = [], 0
    for o, i, kh, kw, has_bias in layout:
        n = o * i * max(kh, 1) * max(kw, 1)
        w = flat[at: at + n].reshape(o, i, kh, kw) if kh else flat[at: at + n].reshape(o, i)
        at += n
        b = flat[at: at + o] if has_bias else None
        at += o if has_bias else 0
        out.append((w, b))
    return out


@dataclass
class Alignment:
    """What :func:`align` found: ``model`` (the aligned copy, or the suspect itself when ``identity``); ``quality``:
    the mean cosine of the matched units per layer (``per_layer``; a reference unit left unmatched counts 0),
    averaged over the layers weighted by their number of weights (a layer of 10-weight filters tells little: the
    filters of two independently trained first layers match well); the smallest cosine of a unit
    (``min_similarity``); the suspect's units left unmatched per layer (``dropped``) and the layers aligned."""

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


def _columns(w: Tensor, perm: Tensor, scale: Tensor, blocks: int) -> Tensor:
    """``w``'s inputs in the reference order of the previous layer's units (``perm``: suspect unit of each
    reference unit, −1 for none), times their scale (undoes the 1/c of a rescaled unit). ``blocks``: the suspect's
    previous units when ``w`` is a Linear after a flatten (each unit a block of inputs), else 0."""
    if blocks:
        w = w.reshape(w.shape[0], blocks, -1)
    out = w[:, perm.clamp(min=0)] * scale.reshape(1, -1, *([1] * (w.ndim - 2)))
    out[:, perm < 0] = 0
    return out.reshape(out.shape[0], -1) if blocks else out


def _folds(s: Tensor, perm: Tensor) -> tuple[Tensor, Tensor]:
    """Split units (dummy-neurons' ``split`` mode): for each suspect unit left unmatched whose incoming weights and
    bias (rows of ``s``) are a positive multiple ``r`` of a matched unit's (cosine >= :data:`SPLIT_COSINE`), that
    unit and ``r``; −1 / 0 for the others. Such a unit computes ``r`` times the matched unit's value (positive
    homogeneity), so its outgoing weights belong to the matched unit: :func:`_fold` adds them."""
    into = torch.full((len(s),), -1, dtype=torch.int64)
    ratio = torch.zeros(len(s), dtype=torch.float64)
    matched = perm[perm >= 0]
    spare = torch.ones(len(s), dtype=torch.bool)
    spare[matched] = False
    if not bool(spare.any()) or not len(matched):
        return into, ratio
    norm = s.norm(dim=1).clamp_min(1e-30)
    cos = (s[spare] / norm[spare, None]) @ (s[matched] / norm[matched, None]).T
    best, at = cos.max(dim=1)
    ok = best >= SPLIT_COSINE
    idx = torch.nonzero(spare).reshape(-1)[ok]
    into[idx] = matched[at[ok]]
    ratio[idx] = norm[idx] / norm[into[idx]]
    return into, ratio


def _fold(w: Tensor, into: Tensor, ratio: Tensor, blocks: int) -> Tensor:
    """``w``'s input columns with each folded unit's (:func:`_folds`) added, times its ratio, to its unit's;
    ``blocks`` as :func:`_columns`."""
    if not bool((into >= 0).any()):
        return w
    v = (w.reshape(w.shape[0], blocks, -1) if blocks else w).clone()
    for u in torch.nonzero(into >= 0).reshape(-1).tolist():
        v[:, int(into[u])] += float(ratio[u]) * v[:, u]
    return v.reshape(w.shape)


def _match(w: Tensor, b: Tensor | None, ref_w: Tensor, ref_b: Tensor | None
           ) -> tuple[Tensor, Tensor, Tensor, tuple[Tensor, Tensor]]:
    """Each reference unit's suspect unit (Hungarian on the cosine of incoming weights and bias), its least-squares
    positive scale and the cosine (−1 / 1 / 0 for a reference unit left without one), and the split units to fold
    into the matched ones (:func:`_folds`)."""
    from scipy.optimize import linear_sum_assignment

    s = torch.cat([w.reshape(len(w), -1)] + ([b[:, None]] if b is not None else []), 1)
    r = torch.cat([ref_w.reshape(len(ref_w), -1)] + ([ref_b[:, None]] if ref_b is not None else []), 1)
    if s.shape[1] != r.shape[1]:
        raise ArchitectureError(f"a suspect unit has {s.shape[1]} inputs, the reference's {r.shape[1]}")
    sim = (r / r.norm(dim=1, keepdim=True).clamp_min(1e-30)) @ (s / s.norm(dim=1, keepdim=True).clamp_min(1e-30)).T
    ties = torch.eye(*sim.shape, dtype=sim.dtype) * 1e-9  # equal similarities (e.g. dead units): keep the order
    rows, cols = linear_sum_assignment((sim + ties).numpy(), maximize=True)
    perm = torch.full((len(r),), -1, dtype=torch.int64)
    perm[torch.as_tensor(rows)] = torch.as_tensor(cols, dtype=torch.int64)
    scale, cos = torch.ones(len(r), dtype=torch.float64), torch.zeros(len(r), dtype=torch.float64)
    ok = perm >= 0
    matched = s[perm[ok]]
    c = _scales(matched, r[ok])
    # a non-positive fit cannot be a ReLU rescaling; a layer whose units' log-scales hardly spread was not rescaled
    if float(c[c > 0].log().std()) > SCALE_SPREAD:
        scale[ok] = torch.where(c > 0, c, torch.ones_like(c))
    cos[ok] = sim[torch.as_tensor(rows), torch.as_tensor(cols)]
    return perm, scale, cos, _folds(s, perm)


def _scales(s: Tensor, r: Tensor) -> Tensor:
    """Per row, the least-squares factor c of ``s ≈ c·r`` over the entries that ``s`` kept (non-zero): exact for a
    rescaled row, 1 for a pruned one (over all entries it would be ``|s|²/|r|²`` and inflate the row); 1 for a row
    without any."""
    kept = r * (s != 0)
    den = (kept * kept).sum(1)
    return torch.where(den > 0, (s * kept).sum(1) / den.clamp_min(1e-300), torch.ones_like(den))


@torch.no_grad()
def align(model: nn.Module, key: WatermarkKey) -> Alignment:
    """``model`` aligned to ``key``'s reference (module docstring); ArchitectureError when its layers cannot be."""
    ref = _reference(key)
    layers = chain(model)
    if layers is None or len(layers) < len(ref):
        raise ArchitectureError("the suspect's Conv2d/Linear layers do not form the chain of the key's reference")
    new: dict[str, tuple[Tensor, Tensor | None]] = {}
    perm = scale = None
    folds: tuple[Tensor, Tensor] | None = None
    sims: list[Tensor] = []
    sizes: list[int] = []
    dropped: dict[str, int] = {}
    per_layer: dict[str, float] = {}
    identity = True
    for i, (name, mod) in enumerate(layers[: len(ref) + 1]):
        w = mod.weight.detach().double().cpu()
        b = mod.bias.detach().double().cpu() if mod.bias is not None else None
        if perm is not None and scale is not None and folds is not None:
            prev = layers[i - 1][1]
            blocks = _units(prev) if isinstance(mod, nn.Linear) and isinstance(prev, nn.Conv2d) else 0
            w = _columns(_fold(w, *folds, blocks), perm, scale, blocks)
        if i == len(ref):  # the layer after the reference: its inputs only
            new[name] = (w, b)
            break
        ref_w, ref_b = ref[i]
        if i == len(layers) - 1:  # the model's output: its units are the logits, never permuted
            if w.shape != ref_w.shape:
                raise ArchitectureError(f"the suspect's output layer {name!r} has shape {tuple(w.shape)}, the "
                                        f"reference's {tuple(ref_w.shape)}")
            new[name] = (w, b)
            break
        perm, scale, cos, folds = _match(w, b, ref_w, ref_b)
        sims.append(cos)  # 0 for a reference unit the suspect lacks
        per_layer[name] = float(cos.mean())
        sizes.append(ref_w.numel())
        dropped[name] = len(w) - int((perm >= 0).sum())
        identity &= len(w) == len(ref_w) and bool((perm == torch.arange(len(perm))).all() and (scale == 1).all())
        keep = perm.clamp(min=0)
        shape = (-1, *([1] * (w.ndim - 1)))
        w = torch.where((perm >= 0).reshape(shape), w[keep] / scale.reshape(shape), torch.zeros(()))
        b = None if b is None else torch.where(perm >= 0, b[keep] / scale, torch.zeros(()))
        new[name] = (w, b)
    n = torch.tensor(sizes, dtype=torch.float64)
    quality = float((torch.tensor(list(per_layer.values()), dtype=torch.float64) * n).sum() / n.sum()) if sizes else 1.0
    worst = float(torch.cat(sims).min()) if sims else 1.0
    identity &= all(tuple(w.shape) == tuple(dict(layers)[n].weight.shape) for n, (w, _) in new.items())
    if identity:
        return Alignment(model, True, quality, worst, dropped, list(new), per_layer)
    return Alignment(_copy_with(model, new), False, quality, worst, dropped, list(new), per_layer)


def _copy_with(model: nn.Module, new: dict[str, tuple[Tensor, Tensor | None]]) -> nn.Module:
    """A copy of ``model`` whose layers in ``new`` hold the given weights and biases (their shapes too)."""
    out = copy.deepcopy(model)
    mods = dict(out.named_modules())
    for name, (w, b) in new.items():
        mod = mods[name]
        dtype, device = mod.weight.dtype, mod.weight.device
        mod.weight = nn.Parameter(w.to(device, dtype).contiguous())
        if b is not None:
            mod.bias = nn.Parameter(b.to(device, dtype).contiguous())
        if isinstance(mod, nn.Linear):
            mod.out_features, mod.in_features = int(w.shape[0]), int(w.shape[1])
        elif isinstance(mod, nn.Conv2d):
            mod.out_channels, mod.in_channels = int(w.shape[0]), int(w.shape[1])
    return out


def _outcome(res: VerificationResult) -> dict[str, Any]:
    return {"p_value": res.p_value, "score": res.score, "matched_bits": res.matched_bits,
            "detected": res.detected}


def _statistic(res: VerificationResult) -> float:
    """What the aligned null records: the matched bits, or the score (Pearson's ρ) of a method without bits."""
    return float(res.matched_bits) if res.matched_bits is not None else float(res.score)


def calibrate_null(verify: Callable[[nn.Module, WatermarkKey], VerificationResult], key: WatermarkKey,
                   null_models: Sequence[Any] | None) -> WatermarkKey:
    """``key`` with the aligned extraction's null measured on ``null_models`` (issue 21, item 3): each model,
    trained without the key, is aligned to the key's reference (:func:`align`, whatever its quality) and read with
    the method's ``verify`` (given the key without its reference: the extraction as it is); their matched bits (or
    ρ) are stored as :data:`ALIGN_NULL`, and :func:`verify_aligned`
    then calibrates the aligned p-value on them (:func:`netmark.verify.calibrated_log10_tail`). ``key`` itself
    without a reference, or when ``null_models`` holds no ``nn.Module`` (e.g. a trigger set's count of reference
    models); at least 2 are needed, 20 or more make the fit meaningful (the issue's ≥ 20)."""
    models = [m for m in null_models or () if isinstance(m, nn.Module)]
    if not has_reference(key) or not models:
        return key
    if len(models) < 2:
        raise ValueError("calibrating the aligned null needs at least 2 independent models (20 or more advised)")
    base = replace(key, tensors={k: v for k, v in key.tensors.items() if k != ALIGN_NULL})
    plain = replace(key, tensors={k: v for k, v in base.tensors.items() if k not in ALIGN_TENSORS})
    stats = [_statistic(verify(align(m.eval(), base).model, plain)) for m in models]
    return replace(base, tensors={**base.tensors, ALIGN_NULL: torch.tensor(stats, dtype=torch.float64)})


def _calibrated(res: VerificationResult, key: WatermarkKey) -> VerificationResult:
    """The aligned outcome ``res`` with its p-value calibrated on the key's :data:`ALIGN_NULL` (never below the
    uncalibrated one): the null's tail fitted and measured (:func:`netmark.verify.calibrated_log10_tail`)."""
    from netmark.verify import calibrated_log10_tail

    null = key.tensors[ALIGN_NULL].double().reshape(-1)
    if null.numel() < 2 or not bool(torch.isfinite(null).all()):
        raise KeyFileError(f"the key's {ALIGN_NULL} must hold at least 2 finite values")
    own = float(res.details.get("log10_p_value", math.log10(res.p_value) if res.p_value > 0 else -math.inf))
    lg, info = calibrated_log10_tail(_statistic(res), null, total=res.total_bits)
    lg = max(lg, own)
    p = 0.0 if lg == -math.inf else 10.0**lg
    details = {**res.details, **info, "log10_p_value": lg, "log10_p_uncalibrated": own,
               "null": f"calibrated on {null.numel()} independent models aligned to the reference", "null_exact": False}
    return replace(res, p_value=p, detected=p <= res.threshold, details=details)


def verify_aligned(decide: Callable[[nn.Module], VerificationResult], model: nn.Module,
                   key: WatermarkKey) -> VerificationResult:
    """``decide(model)`` for a key without a reference (as before); else also ``decide`` on ``model`` aligned to the
    key's reference (:func:`align`). The aligned outcome decides when the alignment's quality reaches
    :data:`MIN_QUALITY` (the suspect's weights are the reference's, obfuscated), else the raw one; both, the one
    used and the alignment's quality are in ``details["alignment"]``. An unobfuscated suspect aligns to the
    identity: both agree. ArchitectureError when neither can be read (another architecture)."""
    if not has_reference(key):
        return decide(model)
    try:
        raw: VerificationResult | None = decide(model)
        raw_info: dict[str, Any] = _outcome(raw) if raw is not None else {}
    except ArchitectureError as e:  # dummy units change the host's shape: the raw extraction cannot read it
        raw, raw_info = None, {"error": str(e)}
    try:
        al = align(model, key)
    except ArchitectureError as e:
        if raw is None:
            raise
        return replace(raw, details={**raw.details, "alignment": {"used": "raw", "error": str(e)}})
    aligned = raw if al.identity and raw is not None else decide(al.model)
    if ALIGN_NULL in key.tensors and not al.identity:
        aligned = _calibrated(aligned, key)
    copy_of_reference = al.quality >= MIN_QUALITY
    if not copy_of_reference and raw is None:
        raise ArchitectureError(f"the suspect's layers have other shapes than the key's and do not align to its "
                                f"reference (quality {al.quality:.3f} < {MIN_QUALITY}): not a copy of the marked model")
    res = aligned if copy_of_reference or raw is None else raw
    # "raw" also for an identity alignment: the aligned outcome is then the raw one itself
    info = {"used": "raw" if res is raw else "aligned", "raw": raw_info, "aligned": _outcome(aligned),
            "min_quality": MIN_QUALITY, **al.summary()}
    return replace(res, details={**res.details, "alignment": info})
