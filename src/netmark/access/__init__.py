"""Anti-piracy access control (Chen & Wu 2018): a model that works only through the owner's secret
input transform. Protection, not a watermark: see :mod:`netmark.access.transforms` and
:mod:`netmark.access.protect`.

**Patent notice.** The scheme is covered by US patent 11,687,623 B2 (University of Maryland);
commercial use may need a licence from the patent holder.
"""

from __future__ import annotations

from netmark.access.keyfile import KEY_METHOD, transform_from_key, transform_key
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
    "KEY_METHOD", "KINDS", "PAPER_ITERATIONS", "AntiPiracyHook", "AntiPiracyTransform", "ProtectConfig",
    "ProtectResult", "Protected", "TransformConfig", "access_accuracy", "bipolar", "build_transform",
    "paper_train", "protect", "recover_universal", "transform_from_key", "transform_key",
]
