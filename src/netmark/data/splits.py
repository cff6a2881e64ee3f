"""Deterministic, stratified index splits (numpy ``Generator`` passed in; no global RNG state)."""

from __future__ import annotations

import numpy as np

__all__ = ["stratified_split"]


def stratified_split(y: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(len(y))`` into ``(picked, rest)`` with ``len(picked) == n``, stratified by label.

    Each class gets ``floor(n * count / N)`` picks; the few remaining picks go to the classes with
    the largest remainders (ties broken by ``rng``). Members of each class are drawn with ``rng``.
    Both index arrays are returned sorted (so a split keeps the original file order).
    """
    y = np.asarray(y)
    total = int(y.shape[0])
    if not 0 <= n <= total:
        raise ValueError(f"cannot pick {n} of {total} samples")
    if n == 0 or n == total:
        everything = np.arange(total, dtype=np.int64)
        empty = np.zeros(0, dtype=np.int64)
        return (empty, everything) if n == 0 else (everything, empty)
    classes, counts = np.unique(y, return_counts=True)
    scaled = n * counts.astype(np.int64)
    quota = scaled // total
    remainder = scaled % total
    short = n - int(quota.sum())
    # Largest remainder first; a random key breaks ties without favouring low class ids.
    order = np.lexsort((rng.random(len(classes)), -remainder))
    quota[order[:short]] += 1
    picked = [rng.permutation(np.flatnonzero(y == c))[:q] for c, q in zip(classes, quota, strict=True) if q > 0]
    chosen = np.sort(np.concatenate(picked)).astype(np.int64)
    mask = np.ones(total, dtype=bool)
    mask[chosen] = False
    return chosen, np.flatnonzero(mask).astype(np.int64)
