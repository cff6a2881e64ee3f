"""The method registry and everything that dispatches through it: :func:`get_method`, :func:`method_from_key`,
:func:`verify` (a key checked with its own method) and :func:`false_positive_rate`.

A leaf of :mod:`netmark.methods`: it imports no scheme module at run time, so :mod:`netmark.methods.base` and
:mod:`netmark.methods.check` can use it without an import cycle, and :mod:`netmark.verify` keeps only the
statistics. The registry is filled by importing :mod:`netmark.methods` (each scheme registers itself).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from torch import nn

from netmark.errors import ConfigError, KeyFileError
from netmark.keys import WatermarkKey
from netmark.models.wrapped import unwrap
from netmark.verify import DEFAULT_ALPHA, FalsePositiveReport, VerificationResult

if TYPE_CHECKING:
    from netmark.methods.base import WatermarkMethod

METHODS: dict[str, type[WatermarkMethod]] = {}


def get_method(name: str) -> type[WatermarkMethod]:
    """The registered method class called ``name``."""
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown watermark method {name!r}; known: {', '.join(sorted(METHODS))}") from None


def method_from_key(key: WatermarkKey) -> WatermarkMethod:
    """Instantiate the key's method with the key's own config."""
    try:
        cls = get_method(key.method)
    except ConfigError as e:
        raise KeyFileError(f"key names {e}") from None
    return cls.from_key(key)


def verify(model: nn.Module, key: WatermarkKey, *, alpha: float = DEFAULT_ALPHA) -> VerificationResult:
    """Check ``model`` against ``key`` with the key's own method. ``details["seeded"]``: the key was drawn from a
    research seed, so anyone who guesses the seed can rebuild it (:mod:`netmark.draws`). A white-box key reads the
    network inside any query-time filter (:mod:`netmark.models.wrapped`: it hides nothing from whoever holds the
    weights); a black-box key's triggers go through the filter, as queries to the served model would."""
    method = method_from_key(key)
    res = method.verify(unwrap(model) if method.white_box else model, key, alpha=alpha)
    res.details["seeded"] = key.seeded
    return res


def false_positive_rate(models: Iterable[nn.Module], key: WatermarkKey, *,
                        alpha: float = DEFAULT_ALPHA) -> FalsePositiveReport:
    """Verify ``key`` against models trained *without* it; every detection is a false positive."""
    results = [verify(m, key, alpha=alpha) for m in models]
    if not results:
        raise ValueError("false_positive_rate needs at least one independent model")
    matched = [r.matched_bits for r in results if r.matched_bits is not None]
    n_det = sum(r.detected for r in results)
    return FalsePositiveReport(
        n_models=len(results), n_detected=n_det, rate=n_det / len(results), alpha=alpha,
        max_matched_bits=max(matched) if matched else None, total_bits=results[0].total_bits,
        min_p_value=min(r.p_value for r in results), scores=[r.score for r in results],
    )
