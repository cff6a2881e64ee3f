"""Data roles and fresh models, shared by every study.

A study names its datasets by role (``main``, ``small``, ``attacker``, ...); :class:`Roles` loads each once and
digests its training tensors for the cache keys (:mod:`netmark.experiments.cache`); :func:`fresh_model` builds
an untrained model of an architecture for a dataset from a seed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from torch import nn

from netmark._util import seeded
from netmark.bench.cache import tensor_digest
from netmark.data import ArrayDataset
from netmark.models import build

T = TypeVar("T", ArrayDataset, tuple[ArrayDataset, ArrayDataset])


class Roles(Generic[T]):
    """``load(role)`` once per role: a dataset, or a ``(train, test)`` pair whose train part is digested."""

    def __init__(self, load: Callable[[str], T]) -> None:
        self._load: Callable[[str], T] = load
        self._data: dict[str, T] = {}
        self._digests: dict[str, str] = {}

    def __call__(self, role: str) -> T:
        if role not in self._data:
            self._data[role] = self._load(role)
        return self._data[role]

    def digest(self, role: str) -> str:
        """``name:sha256`` of the role's (training) tensors, part of a run's cache fingerprint."""
        if role not in self._digests:
            d = self(role)
            tr = d[0] if isinstance(d, tuple) else d
            self._digests[role] = f"{tr.name}:{tensor_digest(tr.x, tr.y)}"
        return self._digests[role]


def fresh_model(arch: str, data: ArrayDataset, seed: int, model_args: Mapping[str, Any] | None = None) -> nn.Module:
    """An untrained ``arch`` for ``data``'s image shape and classes, initialised from ``seed``."""
    c, h, _ = data.shape
    with seeded(seed):
        return build(arch, in_channels=c, image_size=h, num_classes=data.num_classes, **(model_args or {}))
