"""``load(name, split, ...)``: official files → train / val / test :class:`ArrayDataset`.

Partition of the official training set (the official test set is never touched by it):

* ``val_size`` samples (an int count, or a float fraction in ``(0, 1)`` of the official training
  set) form the "val" split; everything else forms "train". The choice is a stratified draw from
  ``numpy.random.default_rng(split_seed)``, so it depends on ``split_seed`` only — never on a
  training seed — and "train" and "val" are disjoint.
* ``train_size`` then keeps a stratified subset of that many samples of the "train" portion, drawn
  from a generator seeded by ``(split_seed, 1)``. It only affects ``split="train"``; for "val" and
  "test" it is validated but ignored, so the same keyword arguments can be passed for all three
  splits and describe one consistent partition.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from netmark.data.dataset import ArrayDataset
from netmark.data.files import find_dataset
from netmark.data.readers import OfficialSplit
from netmark.data.registry import DATASETS, DatasetSpec
from netmark.data.splits import stratified_split
from netmark.errors import DataError

__all__ = ["available", "get_spec", "load"]

Split = Literal["train", "val", "test"]
LabelMode = Literal["fine", "coarse"]


def available() -> list[str]:
    """Sorted names of the datasets :func:`load` accepts."""
    return sorted(DATASETS)


def get_spec(name: str) -> DatasetSpec:
    """The registry entry for ``name`` (case-insensitive; ``_`` is accepted for ``-``)."""
    key = str(name).strip().lower().replace("_", "-")
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(available())}")
    return DATASETS[key]


def _stamp(paths: tuple[Path, ...]) -> tuple[object, ...]:
    """Identity of the files behind ``paths`` (so the read cache notices replaced files)."""
    out: list[object] = []
    for path in paths:
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        for f in files:
            st = f.stat()
            out.append((str(f), st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(out)


@functools.lru_cache(maxsize=4)
def _read_cached(spec: DatasetSpec, paths: tuple[Path, ...], stamp: tuple[object, ...], split: OfficialSplit,
                 label_mode: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = spec.reader.read(paths, split, label_mode)
    num_classes = len(spec.coarse_classes) if label_mode == "coarse" else spec.num_classes
    where = f"{spec.name} ({', '.join(str(p) for p in paths) or 'bundled'})"
    if x.dtype != np.uint8 or tuple(x.shape[1:]) != spec.shape:
        raise DataError(f"{where} holds images of shape {tuple(x.shape[1:])}, expected {spec.shape}.")
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise DataError(f"{where} holds {x.shape[0]} images and {y.shape[0]} labels.")
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise DataError(f"{where} has labels outside [0, {num_classes}).")
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _check_int(value: object, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or int(value) < low:
        raise DataError(f"{what} must be an integer >= {low}, got {value!r}.")
    return int(value)


def _val_count(val_size: int | float, total: int | None) -> int:
    """The size of the "val" split of ``total`` samples (``None``: ``val_size`` is only checked)."""
    if isinstance(val_size, float):
        if not 0.0 < val_size < 1.0:
            raise DataError(f"A fractional val_size must lie in (0, 1), got {val_size!r}.")
        n_val = round(val_size * (total or 0))
    else:
        n_val = _check_int(val_size, "val_size", 0)
    if total is not None and n_val >= total:
        raise DataError(f"val_size={val_size!r} leaves no training samples out of {total}.")
    return n_val


def load(
    name: str,
    split: Split = "train",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    train_size: int | None = None,
    val_size: int | float = 0,
    split_seed: int = 0,
    download: bool = True,
    label_mode: LabelMode = "fine",
) -> ArrayDataset:
    """Load one split of dataset ``name`` as an in-memory :class:`ArrayDataset`.

    Args:
        name: one of :func:`available` (``"digits"`` needs no files).
        split: ``"train"`` / ``"val"`` (both carved from the official training set, disjoint) or
            ``"test"`` (the official test set).
        data_dir: directory holding the files (or ``<data_dir>/<name>/``); see :mod:`netmark.data.files`.
        train_size: keep only this many (stratified, seeded) samples of the "train" portion; ignored
            for "val" and "test".
        val_size: held-out count (int) or fraction (float in (0, 1)) of the official training set.
        split_seed: seed of the train/val partition and of the ``train_size`` subset.
        download: allow downloading missing files (also disabled by ``NETMARK_OFFLINE=1``).
        label_mode: ``"coarse"`` selects CIFAR-100's 20 super-classes; ``"fine"`` otherwise.

    Raises:
        DataError: unknown name or split, bad sizes, or missing / corrupt files.
    """
    spec = get_spec(name)
    if split not in ("train", "val", "test"):
        raise DataError(f"unknown split {split!r}; known: train, val, test")
    if label_mode not in ("fine", "coarse"):
        raise DataError(f"Unknown label_mode {label_mode!r}; use 'fine' or 'coarse'.")
    if label_mode == "coarse" and not spec.coarse_classes:
        raise DataError(f"Dataset {spec.name!r} has no coarse labels; use label_mode='fine'.")
    seed = _check_int(split_seed, "split_seed", 0)
    keep = None if train_size is None else _check_int(train_size, "train_size", 1)
    _val_count(val_size, None)  # bad sizes are refused before any file is looked for

    paths = find_dataset(spec, data_dir, download)
    official: OfficialSplit = "test" if split == "test" else "train"
    x, y = _read_cached(spec, paths, _stamp(paths), official, label_mode)

    if split == "test":
        idx = np.arange(len(y))
    else:
        n_val = _val_count(val_size, len(y))
        val_idx, train_idx = stratified_split(y, n_val, np.random.default_rng(seed))
        if split == "val":
            if n_val == 0:
                raise DataError("The 'val' split is empty; pass val_size > 0.")
            idx = val_idx
        else:
            idx = train_idx
            if keep is not None:
                if keep > len(train_idx):
                    raise DataError(f"train_size={keep} exceeds the {len(train_idx)} available training samples.")
                picked, _ = stratified_split(y[train_idx], keep, np.random.default_rng((seed, 1)))
                idx = train_idx[picked]

    classes = spec.coarse_classes if label_mode == "coarse" else spec.classes
    images = torch.from_numpy(x[idx]).to(torch.float32).div_(spec.max_value)
    labels = torch.from_numpy(y[idx].astype(np.int64))
    return ArrayDataset(images, labels, name=spec.name, num_classes=len(classes), classes=classes)
