"""In-memory image classification dataset used throughout netmark.

:class:`ArrayDataset` holds the whole split as two tensors (``x`` float32 ``(N, C, H, W)`` in
``[0, 1]``, ``y`` int64 ``(N,)``). Indexing with an ``int`` returns one sample; indexing with a
sequence / tensor of indices returns a whole batch at once, which is what :meth:`ArrayDataset.loader`
uses so that batches are sliced from memory instead of collated sample by sample.

:class:`TensorPairs` is the same idea for any two tensors (an attack's transfer set, forged pairs), and
:func:`inputs_of` reads a dataset's inputs as one tensor (an in-memory dataset's ``x`` directly).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from netmark.errors import DataError

__all__ = ["ArrayDataset", "TensorPairs", "inputs_of"]

Indices = Sequence[int] | np.ndarray | torch.Tensor


class ArrayDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """A labelled image dataset held in memory.

    Attributes:
        x: float32 tensor ``(N, C, H, W)`` with values in ``[0, 1]``.
        y: int64 tensor ``(N,)`` with labels in ``[0, num_classes)``.
        name: dataset name (e.g. ``"mnist"``); unchanged by :meth:`subset` / :meth:`select_classes`.
        num_classes: number of classes of the label space.
        classes: human-readable class names, ``len(classes) == num_classes``.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        name: str,
        num_classes: int,
        classes: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(x, torch.Tensor) or x.dtype != torch.float32 or x.dim() != 4:
            raise DataError(f"Dataset {name!r} needs x as a float32 tensor of shape (N, C, H, W).")
        if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.dim() != 1:
            raise DataError(f"Dataset {name!r} needs y as an int64 tensor of shape (N,).")
        if x.shape[0] != y.shape[0]:
            raise DataError(f"Dataset {name!r} has {x.shape[0]} images but {y.shape[0]} labels.")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise DataError(f"Dataset {name!r} needs a positive integer num_classes, got {num_classes!r}.")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise DataError(f"Dataset {name!r} has labels outside [0, {num_classes}).")
        names = tuple(str(i) for i in range(num_classes)) if classes is None else tuple(classes)
        if len(names) != num_classes:
            raise DataError(f"Dataset {name!r} has {len(names)} class names for {num_classes} classes.")
        self.x = x
        self.y = y
        self.name = name
        self.num_classes = num_classes
        self.classes: tuple[str, ...] = names

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, index: int | slice | Indices) -> tuple[torch.Tensor, torch.Tensor]:
        """``ds[i]`` → ``(x_i, y_i)``; ``ds[[i, j, ...]]`` → the batch ``(x[idx], y[idx])``."""
        if isinstance(index, int | np.integer) or (isinstance(index, torch.Tensor) and index.dim() == 0):
            i = int(index)
            return self.x[i], self.y[i]
        if isinstance(index, slice):
            return self.x[index], self.y[index]
        idx = self._as_index(index)
        return self.x[idx], self.y[idx]

    def __repr__(self) -> str:
        return f"ArrayDataset(name={self.name!r}, n={len(self)}, shape={self.shape}, num_classes={self.num_classes})"

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape ``(C, H, W)`` of one image."""
        c, h, w = self.x.shape[1:]
        return int(c), int(h), int(w)

    def _as_index(self, indices: Indices) -> torch.Tensor:
        idx = torch.as_tensor(np.asarray(indices) if not isinstance(indices, torch.Tensor) else indices)
        if idx.dtype == torch.bool:
            if idx.shape != (len(self),):
                raise DataError(f"A boolean mask for {self.name!r} must have length {len(self)}.")
            return idx.nonzero().flatten()
        if idx.numel() == 0:
            return torch.zeros(0, dtype=torch.long)
        if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dim() != 1:
            raise DataError(f"Indices into {self.name!r} must be a 1-D sequence of integers.")
        idx = idx.long()
        if int(idx.min()) < -len(self) or int(idx.max()) >= len(self):
            raise DataError(f"Indices into {self.name!r} must lie in [0, {len(self)}).")
        return idx

    def subset(self, indices: Indices) -> ArrayDataset:
        """A new dataset with the samples at ``indices`` (in that order; copies the data)."""
        idx = self._as_index(indices)
        return ArrayDataset(self.x[idx].clone(), self.y[idx].clone(), name=self.name, num_classes=self.num_classes,
                            classes=self.classes)

    def select_classes(self, classes: Sequence[int], relabel: bool = True) -> ArrayDataset:
        """Keep only the samples whose label is in ``classes``.

        With ``relabel=True`` (default) label ``classes[i]`` becomes ``i``, so the result has
        ``num_classes == len(classes)`` and ``classes`` names in that order (used to fine-tune on a
        disjoint split of classes). With ``relabel=False`` labels and the label space are unchanged.
        """
        wanted = [int(c) for c in classes]
        if not wanted:
            raise DataError(f"select_classes on {self.name!r} needs at least one class.")
        if len(set(wanted)) != len(wanted):
            raise DataError(f"select_classes on {self.name!r} got repeated classes {wanted}.")
        bad = [c for c in wanted if not 0 <= c < self.num_classes]
        if bad:
            raise DataError(f"Classes {bad} are outside [0, {self.num_classes}) for {self.name!r}.")
        keep = torch.isin(self.y, torch.tensor(wanted, dtype=torch.long))
        if not relabel:
            return self.subset(keep)
        mapping = torch.full((self.num_classes,), -1, dtype=torch.long)
        mapping[torch.tensor(wanted)] = torch.arange(len(wanted))
        return ArrayDataset(self.x[keep].clone(), mapping[self.y[keep]], name=self.name, num_classes=len(wanted),
                            classes=tuple(self.classes[c] for c in wanted))

    def loader(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        *,
        drop_last: bool = False,
    ) -> DataLoader[Any]:
        """A :class:`~torch.utils.data.DataLoader` yielding ``(x_batch, y_batch)``.

        Batches are sliced straight from memory. With ``shuffle=True`` the order comes from
        ``generator``; without one, a fresh ``torch.Generator`` seeded with 0 is used (never the global
        RNG), so the epoch orders are reproducible.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DataError(f"batch_size must be a positive integer, got {batch_size!r}.")
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        sampler = RandomSampler(self, generator=gen) if shuffle else SequentialSampler(self)
        batches = BatchSampler(sampler, batch_size=batch_size, drop_last=drop_last)
        # batch_size=None: each element of `batches` (a list of indices) is passed to __getitem__.
        # The generator is also given to the DataLoader, which draws its worker base seed from it
        # (from the global RNG otherwise).
        return DataLoader(self, sampler=batches, batch_size=None, generator=gen)


class TensorPairs(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Pairs ``(x[i], y[i])`` of two tensors of equal length, any shape or dtype, held as the attributes ``x`` and
    ``y`` that :func:`netmark.training.iter_batches` slices directly (no per-sample collation)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if len(x) != len(y):
            raise DataError(f"TensorPairs needs tensors of equal length, got {len(x)} and {len(y)}.")
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


def inputs_of(data: Dataset, index: torch.Tensor | None = None) -> torch.Tensor:
    """The inputs of ``data`` (those at ``index``, in its order; all of them, in order, for None) as one tensor,
    never its labels: an in-memory dataset's ``x`` is indexed directly, any other is read sample by sample."""
    n = len(data)  # type: ignore[arg-type]
    x_all = getattr(data, "x", None)
    if isinstance(x_all, torch.Tensor) and len(x_all) == n:
        return x_all if index is None else x_all[index]
    order = range(n) if index is None else (int(i) for i in index)
    return torch.stack([data[i][0] for i in order])
