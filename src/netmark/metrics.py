"""White-box metrics shared by every weight-embedding method (detectability of a watermark).

:func:`histogram_correlation` is Wang et al. 2020, "Relationship between MANU and AUTO", Eq. 2
(Tables 7-8): the weights of the *embedded* layer (all of them, biases excluded) of two models
are counted in bins of width 0.1, and the two histograms are compared by Pearson correlation

    C(H1, H2) = Σ_i (h1(i) − μ1)(h2(i) − μ2) / sqrt(Σ_i (h1(i) − μ1)² · Σ_i (h2(i) − μ2)²),
    μ_j = Σ_i h_j(i) / Σ_i 1,

over a common set of bins: edges at integer multiples of the bin width (…, −0.1, 0, 0.1, …;
a bin is ``[e_i, e_i + width)``), spanning the smallest and largest weight of *both* layers, so
the number of bins (the ``Σ_i 1`` of μ) is the same for both histograms. C = 1 for identical
weight distributions; a watermark that reshapes the distribution lowers it (the paper reads a
value near the unmarked model's as "hard to detect"). Counts are used as they are; the
correlation is invariant to scaling a histogram, so layers of different sizes compare too.
With few bins it degenerates (weights all within ±0.1 fill two bins, and two-point correlations
are ±1): compare layers whose weights span several bins, as the paper's trained layers do.

Example::

    from netmark.metrics import histogram_correlation, histogram_correlation_matrix
    histogram_correlation(marked, unmarked, layer="fc2")          # float in [-1, 1]
    histogram_correlation_matrix({"AUTO": a, "MANU": m, "Non-marked": u}, layer="fc2")  # Table 7
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from netmark.errors import ArchitectureError, ConfigError

#: Wang et al.'s histogram bin width.
BIN_WIDTH = 0.1


def layer_weights(model: nn.Module, layer: str) -> Tensor:
    """All weights of the conv/linear ``layer`` of ``model`` (biases excluded), flattened, on the CPU."""
    from netmark.models import get_layer

    w = getattr(get_layer(model, layer), "weight", None)
    if not isinstance(w, Tensor):
        raise ArchitectureError(f"layer {layer!r} has no weight tensor")
    return w.detach().float().cpu().reshape(-1)


def _as_weights(x: nn.Module | Tensor, layer: str | None) -> Tensor:
    if isinstance(x, nn.Module):
        if layer is None:
            raise ConfigError("pass layer=... to compare two models")
        return layer_weights(x, layer)
    if not isinstance(x, Tensor):
        raise ConfigError(f"expected a model or a tensor, got {type(x).__name__}")
    w = x.detach().float().cpu().reshape(-1)
    if w.numel() == 0 or not torch.isfinite(w).all():
        raise ConfigError("weights must be non-empty and finite")
    return w


def weight_histograms(a: Tensor, b: Tensor, *, bin_width: float = BIN_WIDTH) -> tuple[Tensor, Tensor, Tensor]:
    """Counts of ``a`` and ``b`` on common bins ``[e_i, e_i + bin_width)`` with ``e_i = i·bin_width``.

    Returns ``(h_a, h_b, edges)``; ``edges`` has one more entry than each histogram.
    """
    if not (isinstance(bin_width, int | float) and math.isfinite(bin_width) and bin_width > 0):
        raise ConfigError(f"bin_width must be a positive number, got {bin_width!r}")
    lo = math.floor(float(torch.minimum(a.min(), b.min())) / bin_width)
    hi = math.floor(float(torch.maximum(a.max(), b.max())) / bin_width)
    n_bins = hi - lo + 1
    if n_bins > 10_000_000:
        raise ConfigError(f"{n_bins} histogram bins of width {bin_width}: weights out of range?")

    def count(w: Tensor) -> Tensor:
        idx = (torch.floor(w.double() / bin_width).long() - lo).clamp(0, n_bins - 1)
        return torch.bincount(idx, minlength=n_bins).double()

    edges = (torch.arange(lo, hi + 2, dtype=torch.float64)) * bin_width
    return count(a), count(b), edges


def histogram_correlation(a: nn.Module | Tensor, b: nn.Module | Tensor, *, layer: str | None = None,
                          bin_width: float = BIN_WIDTH) -> float:
    """Wang et al. Eq. 2 between the weight histograms of ``layer`` in models ``a`` and ``b``
    (or of two weight tensors); see the module docstring. ``nan`` if a histogram is flat
    (all weights of both in one bin)."""
    h1, h2, _ = weight_histograms(_as_weights(a, layer), _as_weights(b, layer), bin_width=bin_width)
    d1, d2 = h1 - h1.mean(), h2 - h2.mean()
    den = math.sqrt(float((d1 * d1).sum()) * float((d2 * d2).sum()))
    if den == 0.0:
        return math.nan
    return float((d1 * d2).sum()) / den


def histogram_correlation_matrix(models: dict[str, nn.Module | Tensor], *, layer: str | None = None,
                                 bin_width: float = BIN_WIDTH) -> dict[str, dict[str, float]]:
    """Pairwise :func:`histogram_correlation` (Wang et al. Tables 7-8): ``out[row][col]``."""
    weights = {name: _as_weights(m, layer) for name, m in models.items()}
    return {r: {c: histogram_correlation(wr, wc, bin_width=bin_width) for c, wc in weights.items()}
            for r, wr in weights.items()}
