"""Attacks a thief would use: model in → new model out (the input is never modified).

``prune`` (magnitude/random pruning), ``quantize`` (uniform k-bit weights), ``finetune`` (same or
different domain) and ``overwrite`` (a second watermark with an attacker key). Importing this package registers
them all in :data:`ATTACKS`.
"""

from __future__ import annotations

from netmark.attacks.base import ATTACKS, Attack, AttackConfig, register_attack
from netmark.attacks.finetune import Finetune, FinetuneConfig, finetune, replace_head
from netmark.attacks.overwrite import Overwrite, OverwriteConfig, overwrite
from netmark.attacks.prune import Prune, PruneConfig, prune
from netmark.attacks.quantize import Quantize, QuantizeConfig, quantize

__all__ = [
    "ATTACKS", "Attack", "AttackConfig", "Finetune", "FinetuneConfig", "Overwrite", "OverwriteConfig", "Prune",
    "PruneConfig", "Quantize", "QuantizeConfig", "finetune", "overwrite", "prune", "quantize", "register_attack",
    "replace_head",
]
