"""Which extraction decides once a suspect is aligned (:mod:`netmark.methods.alignment`), and its null (issue 21,
items 2 and 3).

Why the plain null fails after alignment. Alignment searches over permutations, and an independently trained model
aligned to the owner's *marked* reference becomes partly like it (Git Re-Basin), so the binomial / Pearson null does
not hold for the aligned extraction. ``benchmarks/alignment.py`` (Fashion-MNIST, 6,000 images, 3 epochs, key seed 0,
20 independent models): aligned, the independent models read DeepSigns white (MLP ``fc1``) at 25.4 of 32 bits on
average (at most 29; unaligned at most 25), 75.2 of 128 (at most 84), Uchida in the MLP's ``fc2`` at 31.6 of 64 (at
most 39), Tartaglione (LeNet5) at ρ up to 0.054; Uchida in LeNet5 ``conv2`` (256 bits) and Wang stay at chance.

Decision (:func:`verify_aligned`). The aligned extraction decides only when the alignment quality reaches
:data:`MIN_QUALITY` (0.8), i.e. when the suspect's weights are the reference's up to the obfuscation: obfuscated
copies score 1.000, 0.86-0.98 after one more epoch of fine-tuning; independent models at most 0.27 (40 of them per
architecture). Below it the raw extraction decides, under its exact null. An unobfuscated suspect aligns to the
identity and is read as before (also a fine-tuned or pruned one: its scales are fitted on the weights it kept, and
hardly spread); an obfuscated model pruned heavily enough to fall below the gate is not aligned (an open limit).

Calibrated null (:func:`calibrate_null`, item 3). The gate is a measured margin, not a p-value. A key embedded with
``null_models`` (independently trained models of the architecture: ``embed(..., null_models=[...])``, 20 or more
advised) stores the aligned statistic of each (:data:`ALIGN_NULL`), and the aligned p-value is then the larger of the
exact one and a tail fitted to them and measured on them (:func:`netmark.verify.calibrated_log10_tail`: beta-binomial
or normal, and the empirical rate of null models within three standard deviations), as Wang's extractor null is.
Measured (same benchmark, 20 calibration and 20 other independent models; ``--bits`` for the longer messages):
obfuscated copies of Uchida LeNet5 (256 bits) p = 2.1e-46, Uchida MLP 64 bits 3.8e-9, Wang 8.6e-78, Tartaglione
p = 0, DeepSigns 128 bits 4.9e-8; but 48-bit Uchida in the MLP (one null model within three sd of the copy's 42
bits: p = 0.095) and 32-bit DeepSigns (the null sits at 25 of 32: p = 0.9) cannot be proven against an aligned null:
short messages need the gate's word. 0 false positives among the other 20 models, with the decision and with the
calibrated aligned extraction always used. Without ``null_models`` the aligned p-value is the exact one, marked
``null_exact: False`` in the details.

Claims (:mod:`netmark.methods.ownership`) decide with the re-derived key, which holds no reference (it is not among
``TRAINED_TENSORS``): a forger would choose it freely, and with it the permutation his key is read through; a claim
therefore decides on the unaligned suspect.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from netmark.errors import ArchitectureError, ConfigError, KeyFileError
from netmark.keys import WatermarkKey
from netmark.methods.alignment import align, has_reference, without_reference
from netmark.verify import VerificationResult

#: the alignment quality (:class:`~netmark.methods.alignment.Alignment`) from which the aligned extraction decides
MIN_QUALITY = 0.8
#: the aligned extraction's statistic (matched bits, or Pearson's ρ) on independent models (:func:`calibrate_null`)
ALIGN_NULL = "align_null"


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
        raise ConfigError("null_models: calibrating the aligned null needs at least 2 independent models (20 or more "
                          "advised)")
    base = replace(key, tensors={k: v for k, v in key.tensors.items() if k != ALIGN_NULL})
    plain = without_reference(base)
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
    used and the alignment's quality are in ``details["alignment"]``. The aligned p-value is calibrated on the key's
    aligned null when it has one, else marked ``null_exact: False`` (module docstring). An unobfuscated suspect aligns
    to the identity: both agree. ArchitectureError when neither can be read (another architecture)."""
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
    elif not al.identity:  # the exact null of the extraction, which alignment towards the mark inflates
        aligned = replace(aligned, details={**aligned.details, "null_exact": False, "null": (
            f"{aligned.details.get('null', 'the method null')}, after alignment (not calibrated: the key holds no "
            f"aligned null; decided only at quality >= {MIN_QUALITY})")})
    copy_of_reference = al.quality >= MIN_QUALITY
    if not copy_of_reference and raw is None:
        raise ArchitectureError(f"the suspect's layers have other shapes than the key's and do not align to its "
                                f"reference (quality {al.quality:.3f} < {MIN_QUALITY}): not a copy of the marked model")
    res = aligned if copy_of_reference or raw is None else raw
    # "raw" also for an identity alignment: the aligned outcome is then the raw one itself
    info = {"used": "raw" if res is raw else "aligned", "raw": raw_info, "aligned": _outcome(aligned),
            "min_quality": MIN_QUALITY, **al.summary()}
    return replace(res, details={**res.details, "alignment": info})
