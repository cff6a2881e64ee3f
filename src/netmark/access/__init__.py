"""Anti-piracy access control (Chen & Wu 2018): a model that works only through the owner's secret
input transform. Protection, not a watermark: the transforms (:mod:`netmark.access.transforms`), joint
training (:mod:`netmark.access.protect`), the transform as a secret key file (:mod:`netmark.access.keyfile`)
and the paper's piracy attacks (:mod:`netmark.access.piracy`).

**Patent notice.** The scheme is covered by US patent 11,687,623 B2 (University of Maryland);
commercial use may need a licence from the patent holder.
"""

from __future__ import annotations

from netmark.access.keyfile import KEY_METHOD, transform_from_key, transform_key
from netmark.access.piracy import (
    InputOnlyConfig,
    PairAttackConfig,
    PiracyResult,
    direct_piracy,
    input_only_attack,
    one_pair_attack,
    pair_attack,
)
from netmark.access.protect import (
    PAPER_ITERATIONS,
    AntiPiracyHook,
    ProtectConfig,
    Protected,
    ProtectResult,
    access_accuracy,
    paper_train,
    protect,
)
from netmark.access.transforms import (
    KINDS,
    AntiPiracyTransform,
    TransformConfig,
    bipolar,
    build_transform,
    recover_universal,
)

__all__ = [
    "KEY_METHOD", "KINDS", "PAPER_ITERATIONS", "AntiPiracyHook", "AntiPiracyTransform", "InputOnlyConfig",
    "PairAttackConfig", "PiracyResult", "ProtectConfig", "ProtectResult", "Protected", "TransformConfig",
    "access_accuracy", "bipolar", "build_transform", "direct_piracy", "input_only_attack", "one_pair_attack",
    "pair_attack", "paper_train", "protect", "recover_universal", "transform_from_key", "transform_key",
]
