"""Validation of the anti-piracy fields of an evaluation config: :func:`protect_config` (one transform kind with its
options) and :func:`check_access_config` (called by ``EvaluationConfig.__post_init__``).

A leaf below :mod:`netmark.evaluation.spec` and :mod:`netmark.evaluation.access`, so that the config can validate
itself without importing the cells that run it (an import cycle otherwise).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from netmark.access import KINDS, PairAttackConfig, ProtectConfig, TransformConfig
from netmark.errors import ConfigError

if TYPE_CHECKING:
    from netmark.evaluation.spec import EvaluationConfig

PROTECT_FIELDS = ("alpha", "beta", "gamma", "raw_pass")
TRANSFORM_FIELDS = ("sigma", "p", "hidden")


def protect_config(kind: str, options: dict[str, Any], seed: int) -> ProtectConfig:
    """The :class:`ProtectConfig` of transform ``kind`` with ``options`` (ProtectConfig's ``alpha``, ``beta``,
    ``gamma``, ``raw_pass`` and TransformConfig's ``sigma``, ``p``, ``hidden``); ConfigError on anything else."""
    if kind not in KINDS:
        raise ConfigError(f"unknown anti-piracy transform {kind!r}; choose from {', '.join(KINDS)}")
    unknown = sorted(set(options) - {*PROTECT_FIELDS, *TRANSFORM_FIELDS})
    if unknown:
        raise ConfigError(f"access_options has unknown option(s) {', '.join(unknown)}; known: "
                          f"{', '.join((*PROTECT_FIELDS, *TRANSFORM_FIELDS))}")
    t = TransformConfig(kind, seed=seed, **{k: v for k, v in options.items() if k in TRANSFORM_FIELDS})  # type: ignore[arg-type]
    return ProtectConfig(transform=t, **{k: v for k, v in options.items() if k in PROTECT_FIELDS})


def check_access_config(config: EvaluationConfig) -> None:
    """Validate the access fields of ``config`` (called by ``EvaluationConfig.__post_init__``)."""
    kinds = tuple(config.access)
    if len(set(kinds)) != len(kinds):
        raise ConfigError(f"access lists a transform twice: {list(kinds)}")
    if not isinstance(config.access_options, dict):
        raise ConfigError("access_options must be a mapping of option -> value")
    for kind in kinds:
        protect_config(kind, config.access_options, config.key_seed)
    if isinstance(config.piracy_trials, bool) or not isinstance(config.piracy_trials, int) \
            or config.piracy_trials < 1:
        raise ConfigError(f"piracy_trials must be an integer >= 1, got {config.piracy_trials!r}")
    for f in config.pair_fractions:
        PairAttackConfig(fraction=f)
    if len(set(config.pair_fractions)) != len(config.pair_fractions):
        raise ConfigError(f"pair_fractions must be distinct, got {list(config.pair_fractions)}")


