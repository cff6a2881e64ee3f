"""Attacks a thief would use: model in → new model out (the input is never modified).

``prune`` (magnitude/random pruning), ``quantize`` (uniform k-bit weights), ``fixed-point`` (Tartaglione et al.
2021's fixed-point conversion with LSB masking), ``roundtrip`` (an fp16/bf16/int8 checkpoint and back),
``finetune`` (same or different domain), ``overwrite`` (a second watermark with an attacker key), and the
function-preserving obfuscations ``permute``, ``rescale`` and ``dummy-neurons`` (hidden units reordered / rescaled
across ReLU / added with zero or split outgoing weights, found by :mod:`netmark.models.structure`; Yan et al., USENIX
Security 2023) and ``obfuscate`` (the three, then fine-tuning); the query-time ``preprocess`` (JPEG, blur, noise,
input quantization) and ``capsulation`` (an out-of-distribution filter answering random labels) wrap the model
without changing a weight (:mod:`netmark.models.wrapped`); the SoK's ``neural-cleanse`` (Wang et al. 2019),
``weight-shift`` and ``feature-shuffle`` (Lukas et al. 2022). Importing this
package registers them all in :data:`ATTACKS`: it imports every module of the package (name order), so a new attack is
one new module (plus its golden entry in ``tests/data/method_outputs.json``), with no list to edit here; the names
below are only re-exported.
"""

from __future__ import annotations

from netmark._util import import_submodules
from netmark.attacks.base import ATTACKS, Attack, AttackConfig, register_attack
from netmark.attacks.distill import Distill, DistillConfig, distill  # noqa: F401 (re-exported)
from netmark.attacks.finetune import Finetune, FinetuneConfig, finetune, replace_head
from netmark.attacks.fixed_point import FixedPoint, FixedPointConfig, fixed_point, fixed_point_model
from netmark.attacks.outlier import OutlierReset, OutlierResetConfig, outlier_reset_model  # noqa: F401 (re-exported)
from netmark.attacks.overwrite import Overwrite, OverwriteConfig, overwrite
from netmark.attacks.prune import Prune, PruneConfig, prune
from netmark.attacks.quantize import Quantize, QuantizeConfig, quantize
from netmark.attacks.roundtrip import RoundTrip, RoundTripConfig, roundtrip

#: every module of this package, imported (each attack registers itself in ATTACKS)
MODULES: list[str] = import_submodules(__name__, __path__)

__all__ = [
    "ATTACKS", "MODULES", "Attack", "AttackConfig", "Finetune", "FinetuneConfig", "FixedPoint", "FixedPointConfig",
    "Overwrite", "OverwriteConfig", "Prune", "PruneConfig", "Quantize", "QuantizeConfig", "RoundTrip",
    "RoundTripConfig", "finetune", "fixed_point", "fixed_point_model", "overwrite", "prune", "quantize",
    "register_attack", "replace_head", "roundtrip",
]
