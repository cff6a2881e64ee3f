"""One typed verification result, the p-value behind it, and false-positive measurement.

Ownership verification is a statistical claim. For a multi-bit watermark the null
hypothesis is "the suspect model was trained independently of the owner's key": then each
extracted bit matches the owner's *uniformly random* secret message with probability 1/2,
independently of the others (whatever the suspect's weights are, because the message was
drawn independently of them), so the number of matching bits is Binomial(T, 1/2) and the
p-value of observing ``k`` or more matches is the binomial tail ``P[X >= k]``.

Decision rule: ``detected = p_value <= alpha``. The default ``alpha = 1e-6`` bounds the
false-positive rate by one in a million suspect models per key — negligible even for an
owner who screens thousands of models — while a 256-bit watermark is still detected with
up to 34% bit errors (167 of 256 bits must match), far beyond what pruning or fine-tuning cause.
Messages of fewer than 20 bits can never reach ``alpha`` (``2**-20 < 1e-6 < 2**-19``).
:func:`false_positive_rate` measures the empirical rate on independently trained models.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from netmark.keys import WatermarkKey

DEFAULT_ALPHA = 1e-6


@dataclass(frozen=True)
class VerificationResult:
    """Outcome of checking one suspect model against one key.

    Attributes:
        detected: ``p_value <= threshold``.
        p_value: chance that an independent model scores at least this well.
        score: the method's match score in [0, 1] (fraction of matching bits).
        threshold: the significance level ``alpha`` the decision used.
        method: method name.
        bit_error_rate: fraction of wrong bits (multi-bit methods), else ``None``.
        matched_bits: number of matching bits, else ``None``.
        total_bits: message length, else ``None``.
        details: method-specific extras (embedding loss, minimum bits needed, ...).
    """

    detected: bool
    p_value: float
    score: float
    threshold: float
    method: str
    bit_error_rate: float | None = None
    matched_bits: int | None = None
    total_bits: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def log10_binomial_tail(k: int, n: int) -> float:
    """``log10 P[X >= k]`` for ``X ~ Binomial(n, 1/2)``, exact (integer arithmetic)."""
    if n < 0 or k > n + 1:
        raise ValueError(f"invalid binomial tail k={k}, n={n}")
    if k <= 0:
        return 0.0
    if k > n:
        return -math.inf
    total = sum(math.comb(n, i) for i in range(k, n + 1))
    return math.log10(total) - n * math.log10(2)


def binomial_tail(k: int, n: int) -> float:
    """``P[X >= k]`` for ``X ~ Binomial(n, 1/2)`` (0.0 only on float underflow)."""
    lg = log10_binomial_tail(k, n)
    return 0.0 if lg == -math.inf else 10.0**lg


def min_matches(n: int, alpha: float = DEFAULT_ALPHA) -> int | None:
    """Smallest match count ``k`` with ``P[X >= k] <= alpha``, or None if even ``n`` fails."""
    target = math.log10(alpha)
    lo, hi = 0, n
    if log10_binomial_tail(n, n) > target:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if log10_binomial_tail(mid, n) <= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def bit_match_result(extracted: torch.Tensor, message: torch.Tensor, *, method: str,
                     alpha: float = DEFAULT_ALPHA, details: dict[str, Any] | None = None,
                     exact_null: bool = True) -> VerificationResult:
    """Compare extracted bits with the owner's message and wrap it as a result."""
    if extracted.shape != message.shape:
        raise ValueError(f"extracted {tuple(extracted.shape)} vs message {tuple(message.shape)} bits")
    n = int(message.numel())
    k = int((extracted.to(torch.int64) == message.to(torch.int64)).sum())
    lg = log10_binomial_tail(k, n)
    p = 0.0 if lg == -math.inf else 10.0**lg
    d = {"log10_p_value": lg, "min_matched_bits": min_matches(n, alpha), "null": "Binomial(T, 1/2)",
         "null_exact": exact_null}
    d.update(details or {})
    return VerificationResult(detected=p <= alpha, p_value=p, score=k / n if n else 0.0, threshold=alpha,
                              method=method, bit_error_rate=(n - k) / n if n else None, matched_bits=k,
                              total_bits=n, details=d)


def verify(model: nn.Module, key: WatermarkKey, *, alpha: float = DEFAULT_ALPHA) -> VerificationResult:
    """Check ``model`` against ``key`` with the key's own method."""
    from netmark.methods import method_from_key

    return method_from_key(key).verify(model, key, alpha=alpha)


@dataclass(frozen=True)
class FalsePositiveReport:
    """Empirical false-positive rate of one key over independently trained models."""

    n_models: int
    n_detected: int
    rate: float
    alpha: float
    max_matched_bits: int | None
    total_bits: int | None
    min_p_value: float
    scores: list[float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
