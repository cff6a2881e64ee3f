"""The two variants of Tartaglione et al.'s embedding: the paper's (default) and the authors' public code's.

``paper`` (§III-B, Eqs. 3, 4, 7): for each payload element a layer is drawn *uniformly* among the model's
Conv2d/Linear layers, then an unused parameter in it; the element ``x ∈ [0, 1]`` is written as
``w = 2σ(x − 0.5) + μ`` (within ±σ of μ, inside the N(μ, σ) initialisation) and read back by the inverse.

``official-code`` (NOT the paper; EIDOSLAB's ``src/watermarklib.py``, ``bury_watermark`` / ``get_watermark``,
``--SF 0.1``): the element is written as ``w = (2x − 1) / SF`` with ``SF = 0.1``, i.e. values in [−10, 10], a
thousand times the paper's amplitude, and read back by ``x = (w · SF + 1) / 2``; the layer is drawn with
probability proportional to its number of still unused parameters (``np.random.choice(..., p=p/N)`` with ``p``
decremented per draw), i.e. every parameter of the model is equally likely, so big layers carry most of the
payload. Everything else (locking, replicas, Eq. 10, the initialisation) is the same in both; the authors' code
differs further (default init, γ = 1e-6, a different replica update), which this variant does not copy.

Pearson's ρ and its null are invariant under the affine read-out, so verification is the same for both.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from netmark.draws import Draw

Variant = Literal["paper", "official-code"]
VARIANTS: tuple[str, ...] = ("paper", "official-code")
#: the official code's scale factor ``--SF``: payload written as (2x − 1) / SF.
OFFICIAL_SF = 0.1


def encode(x: Tensor, variant: str, mu: float, sigma: float) -> Tensor:
    """The weight values that carry payload values ``x`` in [0, 1]."""
    if variant == "official-code":
        return (2 * x - 1) / OFFICIAL_SF
    return 2 * sigma * (x - 0.5) + mu


def decode(w: Tensor, variant: str, mu: float, sigma: float) -> Tensor:
    """The inverse of :func:`encode`: payload values read from weights ``w``."""
    if variant == "official-code":
        return (w * OFFICIAL_SF + 1) / 2
    return (w - mu) / (2 * sigma) + 0.5


def proportional_layers(caps: list[int], n: int, g: Draw) -> Tensor:
    """``n`` layer indices drawn one after another with probability proportional to each layer's unused capacity
    (``caps[j]`` minus what earlier draws took): the layer counts of a uniform draw without replacement over all
    ``sum(caps)`` slots, which is how it is drawn (one permutation, bucketed by layer)."""
    bounds = torch.tensor(caps, dtype=torch.int64).cumsum(0)
    slots = g.randperm(int(bounds[-1]))[:n]
    return torch.bucketize(slots, bounds, right=True)
