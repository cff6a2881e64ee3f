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
:func:`netmark.methods.false_positive_rate` measures the empirical rate on independently trained models
(its :class:`FalsePositiveReport` is defined here; :func:`netmark.methods.verify` dispatches a key to its method).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

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


def match_result(k: int, n: int, log10_p: float, *, method: str, alpha: float, details: dict[str, Any],
                 ) -> VerificationResult:
    """``k`` of ``n`` bits (or trigger labels) matched, with p-value ``10**log10_p``, decided at ``alpha``."""
    p = 10.0**log10_p  # 0.0 for -inf
    return VerificationResult(detected=p <= alpha, p_value=p, score=k / n if n else 0.0, threshold=alpha,
                              method=method, bit_error_rate=(n - k) / n if n else None, matched_bits=k,
                              total_bits=n, details=details)


def min_reaching(log10_tails: torch.Tensor, alpha: float) -> int | None:
    """The smallest ``k`` whose ``log10 P[X >= k]`` (``log10_tails[k]``) is at most ``log10(alpha)``, else None."""
    reach = (log10_tails <= math.log10(alpha)).nonzero()
    return int(reach[0]) if reach.numel() else None


def bit_match_result(extracted: torch.Tensor, message: torch.Tensor, *, method: str,
                     alpha: float = DEFAULT_ALPHA, details: dict[str, Any] | None = None,
                     exact_null: bool = True) -> VerificationResult:
    """Compare extracted bits with the owner's message and wrap it as a result."""
    if extracted.shape != message.shape:
        raise ValueError(f"extracted {tuple(extracted.shape)} vs message {tuple(message.shape)} bits")
    n = int(message.numel())
    k = int((extracted.to(torch.int64) == message.to(torch.int64)).sum())
    lg = log10_binomial_tail(k, n)
    d = {"log10_p_value": lg, "min_matched_bits": min_matches(n, alpha), "null": "Binomial(T, 1/2)",
         "null_exact": exact_null}
    return match_result(k, n, lg, method=method, alpha=alpha, details={**d, **(details or {})})


def log10_pearson_tail(r: float, n: int) -> float:
    """``log10 P[ρ >= r]`` under "no association" for ``n`` pairs: Student's t with ``n − 2`` degrees of
    freedom for ``t = r √((n−2)/(1−r²))``, the standard approximation of the permutation null."""
    from scipy.stats import t as student_t

    if n < 3:
        raise ValueError(f"a correlation p-value needs at least 3 pairs, got {n}")
    if not math.isfinite(r):
        return 0.0
    r = min(max(r, -1.0), 1.0)
    if r >= 1.0:
        return -math.inf
    t = r * math.sqrt((n - 2) / (1.0 - r * r))
    return float(student_t.logsf(t, n - 2)) / math.log(10)


def pearson_result(r: float, n: int, *, method: str, alpha: float = DEFAULT_ALPHA,
                   details: dict[str, Any] | None = None) -> VerificationResult:
    """A real-valued payload (Tartaglione et al.): Pearson ``r`` over ``n`` values, one-sided p-value
    against a suspect that does not carry the payload (:func:`log10_pearson_tail`). ``score`` is ``r``."""
    lg = log10_pearson_tail(r, n)
    p = 0.0 if lg == -math.inf else 10.0**lg
    d = {"log10_p_value": lg, "null": "permutation null of Pearson's r (Student t, n - 2 df)", "pearson": r}
    d.update(details or {})
    return VerificationResult(detected=p <= alpha, p_value=p, score=r, threshold=alpha, method=method, details=d)


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



# ---------------------------------------------------------------- empirically calibrated nulls
# For methods whose extractor was trained on the owner's message (Wang et al. 2020), the
# extracted bits of an independent model are *not* fair coins: the extractor may lean towards
# the message whatever its input. Such methods measure their extractor on null inputs when the
# key is made and verify with the tails below instead of Binomial(T, 1/2).


def _log10_tail_from_logpmf(logpmf: torch.Tensor) -> torch.Tensor:
    """``log10 P[X >= k]`` for k = 0..n from a natural-log pmf over 0..n."""
    tail = torch.logcumsumexp(logpmf.flip(0), dim=0).flip(0)
    return (tail / math.log(10)).clamp(max=0.0)


def poisson_binomial_log10_tails(probs: torch.Tensor) -> torch.Tensor:
    """``log10 P[X >= k]`` for every k = 0..n, X a sum of independent Bernoulli(``probs[i]``).

    Exact log-space dynamic programme (O(n²), ~0.1 s for n = 4096); probabilities must lie in (0, 1).
    """
    p = torch.as_tensor(probs, dtype=torch.float64).reshape(-1)
    if p.numel() and (not torch.isfinite(p).all() or (p <= 0).any() or (p >= 1).any()):
        raise ValueError("Poisson-binomial probabilities must lie strictly between 0 and 1")
    lp, lq = p.log(), (-p).log1p()
    ninf = torch.tensor([-math.inf], dtype=torch.float64)
    dp = torch.zeros(1, dtype=torch.float64)
    for i in range(p.numel()):
        dp = torch.logaddexp(torch.cat([dp + lq[i], ninf]), torch.cat([ninf, dp + lp[i]]))
    return _log10_tail_from_logpmf(dp)


def beta_binomial_log10_tails(n: int, a: float | None, b: float | None, rate: float = 0.5) -> torch.Tensor:
    """``log10 P[X >= k]`` for k = 0..n, X ~ BetaBinomial(n, a, b); Binomial(n, ``rate``) if a or b is None."""
    j = torch.arange(n + 1, dtype=torch.float64)
    lchoose = math.lgamma(n + 1) - torch.lgamma(j + 1) - torch.lgamma(n - j + 1)
    if a is None or b is None:
        if not 0.0 < rate < 1.0:
            raise ValueError(f"binomial rate must lie in (0, 1), got {rate}")
        logpmf = lchoose + j * math.log(rate) + (n - j) * math.log1p(-rate)
    else:
        if a <= 0 or b <= 0:
            raise ValueError(f"beta-binomial parameters must be positive, got a={a}, b={b}")

        def lbeta(x: torch.Tensor | float, y: torch.Tensor | float) -> torch.Tensor:
            x_, y_ = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
            return torch.lgamma(x_) + torch.lgamma(y_) - torch.lgamma(x_ + y_)

        logpmf = lchoose + lbeta(j + a, n - j + b) - lbeta(a, b)
    return _log10_tail_from_logpmf(logpmf)


def fit_overdispersed_null(counts: torch.Tensor, n: int, *, min_rate: float = 0.5,
                           ) -> tuple[float | None, float | None, float]:
    """Method-of-moments beta-binomial fit ``(a, b, rate)`` to null match counts out of ``n`` bits.

    The mean rate is smoothed (``(Σc + 1) / (N·n + 2)``) and raised to at least ``min_rate``
    (never more optimistic than fair coins). Positive correlation between bits shows as a
    variance above the binomial's; with none, ``a = b = None`` (plain Binomial(n, rate)).
    """
    c = torch.as_tensor(counts, dtype=torch.float64).reshape(-1)
    if c.numel() < 2 or n < 1:
        raise ValueError("need at least 2 null counts and n >= 1")
    rate = max(min_rate, float((c.sum() + 1) / (c.numel() * n + 2)))
    rate = min(rate, 1.0 - 1.0 / (c.numel() * n + 2))
    binom_var = n * rate * (1 - rate)
    rho = (float(c.var(unbiased=True)) / binom_var - 1.0) / (n - 1) if n > 1 else 0.0
    if rho <= 0:
        return None, None, rate
    rho = min(rho, 1.0 - 1e-9)
    return rate * (1 / rho - 1), (1 - rate) * (1 / rho - 1), rate


def empirical_p_value(stat: float, null_stats: torch.Tensor) -> float:
    """``(1 + #{null >= stat}) / (N + 1)``: valid for exchangeable null draws, but never below ``1/(N+1)``."""
    s = torch.as_tensor(null_stats).reshape(-1)
    return (1 + int((s >= stat).sum())) / (s.numel() + 1)


def calibrated_bit_match_result(extracted: torch.Tensor, message: torch.Tensor, *, null_rates: torch.Tensor,
                                null_counts: torch.Tensor, method: str, alpha: float = DEFAULT_ALPHA,
                                details: dict[str, Any] | None = None, chance: float = 0.5) -> VerificationResult:
    """Like :func:`bit_match_result`, with a null measured on the method's own extractor.

    ``null_rates[i]``: smoothed probability that bit ``i`` matches the message on a null input;
    ``null_counts``: matching-bit counts of the null inputs. ``chance``: the match rate of a blind guess
    (1/2 for bits; 1/classes for a trigger set's labels, :mod:`netmark.methods.triggerset`). The p-value
    is the largest (most conservative) of three, so never below the binomial tail at ``chance``:

    * Poisson-binomial with per-bit rates ``max(chance, null_rates)`` (a biased extractor's
      favourite bits), assuming independent bits;
    * beta-binomial fitted to ``null_counts`` (:func:`fit_overdispersed_null`), which covers
      bits that match *together* (an extractor that outputs the message wholesale on some inputs);
    * the empirical ``(1 + #{null >= k - d}) / (N + 1)`` whenever a null input came within
      ``d = ⌈1.5·√n⌉`` (three standard deviations of Binomial(n, 1/2)) of k matches: the
      parametric tails extrapolate beyond the measured null, never into it (a null input that
      matched 247 of 256 bits says the extractor may well match all 256 on another one).
    """
    if extracted.shape != message.shape or null_rates.reshape(-1).numel() != message.numel():
        raise ValueError(f"extracted {tuple(extracted.shape)}, message {tuple(message.shape)} and "
                         f"null rates {tuple(null_rates.shape)} disagree")
    n = int(message.numel())
    k = int((extracted.to(torch.int64) == message.to(torch.int64)).sum())
    if not 0.0 < chance < 1.0:
        raise ValueError(f"chance must lie in (0, 1), got {chance}")
    rates = null_rates.to(torch.float64).reshape(-1).clamp(min=chance, max=1.0 - 1e-12)
    pb = poisson_binomial_log10_tails(rates)
    a, b, rate = fit_overdispersed_null(null_counts, n, min_rate=chance)
    bb = beta_binomial_log10_tails(n, a, b, rate)
    c = null_counts.to(torch.int64).reshape(-1)
    hits = torch.bincount(c.clamp(0, n), minlength=n + 1).flip(0).cumsum(0).flip(0)  # #{null >= k}
    hits = hits[(torch.arange(n + 1) - math.ceil(1.5 * math.sqrt(n))).clamp(min=0)]  # #{null >= k - d}
    emp = torch.where(hits > 0, ((hits + 1) / (c.numel() + 1)).log10().to(torch.float64), -math.inf)
    tails = torch.maximum(torch.maximum(pb, bb), emp)
    lg = float(tails[k])
    d: dict[str, Any] = {
        "log10_p_value": lg, "min_matched_bits": min_reaching(tails, alpha),
        "null": "measured: max(Poisson-binomial over per-bit null rates, beta-binomial fit to the null match "
                "counts, empirical rate of null inputs within 3 sd of k)",
        "null_exact": False, "log10_p_poisson_binomial": float(pb[k]), "log10_p_beta_binomial": float(bb[k]),
        "log10_p_binomial_fair": float(beta_binomial_log10_tails(n, None, None, chance)[k]),
        "null_samples": int(null_counts.numel()),
        "null_mean_matched_bits": float(null_counts.to(torch.float64).mean()),
        "null_max_matched_bits": int(null_counts.max()), "empirical_p_value": empirical_p_value(k, null_counts),
        "null_dispersion": None if a is None or b is None else 1.0 / (a + b + 1.0),
    }
    return match_result(k, n, lg, method=method, alpha=alpha, details={**d, **(details or {})})


def calibrated_log10_tail(stat: float, null: torch.Tensor, *, total: int | None) -> tuple[float, dict[str, Any]]:
    """``log10 P[X >= stat]`` under a null known only from samples ``null`` (e.g. independent models read after an
    alignment that pulls them towards the key: :mod:`netmark.methods.alignment`), the larger of a fitted and an
    empirical tail, so the fit extrapolates beyond the measured null but never into it:

    * ``total`` bits (``stat`` and ``null`` are matched-bit counts): beta-binomial fitted to ``null``
      (:func:`fit_overdispersed_null`, its rate never below 1/2); a real-valued statistic (``total`` None): a normal
      fitted to ``null`` (its standard deviation floored at 1e-3, so that a degenerate null cannot claim certainty);
    * the empirical ``(1 + #{null >= stat − d}) / (N + 1)`` whenever a null sample came within ``d`` of ``stat``
      (three standard deviations: of Binomial(total, 1/2), or of the fitted normal)."""
    from scipy.stats import norm

    c = torch.as_tensor(null, dtype=torch.float64).reshape(-1)
    if total is not None:
        k = round(stat)
        a, b, rate = fit_overdispersed_null(c, total, min_rate=0.5)
        fitted = float(beta_binomial_log10_tails(total, a, b, rate)[min(max(k, 0), total)])
        margin: float = math.ceil(1.5 * math.sqrt(total))
        model: dict[str, Any] = {"null_rate": rate,
                                 "null_dispersion": None if a is None or b is None else 1.0 / (a + b + 1.0)}
    else:
        mu, sd = float(c.mean()), max(float(c.std(unbiased=True)), 1e-3)
        fitted = float(norm.logsf(stat, loc=mu, scale=sd)) / math.log(10)
        margin = 3.0 * sd
        model = {"null_mean": mu, "null_sd": sd}
    near = int((c >= stat - margin).sum())
    emp = math.log10((near + 1) / (c.numel() + 1)) if near else -math.inf
    info = {**model, "null_samples": int(c.numel()), "null_max": float(c.max()),
            "log10_p_fitted": fitted, "empirical_p_value": empirical_p_value(stat, c)}
    return max(fitted, emp), info
