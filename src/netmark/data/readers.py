"""Readers for the on-disk dataset formats (no torchvision needed).

* :class:`IdxReader` — MNIST / Fashion-MNIST IDX files, gzipped or not. The header (magic number,
  element type, number of dimensions, dimension sizes) and the payload length are validated, so a
  truncated or corrupt file raises :class:`~netmark.errors.DataError` instead of a numpy error.
* :class:`CifarReader` — the CIFAR-10/100 "python version" pickle batches, either extracted
  (``cifar-10-batches-py/`` / ``cifar-100-python/``) or read straight from the ``.tar.gz`` (never
  extracted to disk). The pickles are loaded with :class:`RestrictedUnpickler`, which refuses every
  global except the three numpy names needed to rebuild a plain ``ndarray``.
* :class:`DigitsReader` — scikit-learn's bundled 8×8 digits (offline).

Every reader returns ``(x, y)``: ``x`` uint8 ``(N, C, H, W)`` and ``y`` int64 ``(N,)``.
"""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from netmark.errors import DataError

__all__ = ["CifarReader", "DigitsReader", "IdxReader", "Reader", "RestrictedUnpickler", "read_idx", "safe_pickle_loads"]

OfficialSplit = Literal["train", "test"]
Arrays = tuple[np.ndarray, np.ndarray]


class Reader(Protocol):
    """What a dataset spec needs from its format."""

    @property
    def files(self) -> tuple[str, ...]:
        """Canonical file names to place in (or download into) the dataset directory."""
        ...

    @property
    def hint(self) -> str:
        """Human description of what the directory must contain (used in error messages)."""
        ...

    def locate(self, directory: Path) -> tuple[Path, ...] | None:
        """The paths that would be read from ``directory``, or ``None`` when incomplete."""
        ...

    def read(self, paths: tuple[Path, ...], split: OfficialSplit, label_mode: str) -> Arrays:
        """Read the official ``split`` from ``paths`` (as returned by :meth:`locate`)."""
        ...


# ----------------------------------------------------------------------------------------- IDX

_IDX_UBYTE = 0x08


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"Cannot read {path}: {exc.strerror or exc}.") from exc


def _read_maybe_gzip(path: Path) -> bytes:
    raw = _read_bytes(path)
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is a truncated or corrupt gzip file ({exc}).") from exc


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read an unsigned-byte IDX file (gzipped or not) with ``ndim`` dimensions, fully validated."""
    data = _read_maybe_gzip(path)
    header = 4 + 4 * ndim
    if len(data) < 4:
        raise DataError(f"{path} is too short to be an IDX file ({len(data)} bytes).")
    if data[0] != 0 or data[1] != 0 or data[2] != _IDX_UBYTE or data[3] != ndim:
        raise DataError(
            f"{path} has IDX magic number 0x{data[:4].hex()} but 0x0000{_IDX_UBYTE:02x}{ndim:02x} "
            f"(unsigned bytes, {ndim} dimensions) was expected."
        )
    if len(data) < header:
        raise DataError(f"{path} is truncated inside its IDX header.")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(f"{path} is {what}: dimensions {dims} need {expected} bytes but the file has {len(data)}.")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


@dataclass(frozen=True)
class IdxReader:
    """MNIST-style IDX files: images ``(N, H, W)`` and labels ``(N,)`` for train and test."""

    train_images: str = "train-images-idx3-ubyte.gz"
    train_labels: str = "train-labels-idx1-ubyte.gz"
    test_images: str = "t10k-images-idx3-ubyte.gz"
    test_labels: str = "t10k-labels-idx1-ubyte.gz"
    image_size: tuple[int, int] = (28, 28)

    @property
    def files(self) -> tuple[str, ...]:
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)

    @property
    def hint(self) -> str:
        return ", ".join(self.files) + " (gzipped, or the same names without .gz)"

    def locate(self, directory: Path) -> tuple[Path, ...] | None:
        found = []
        for name in self.files:  # gzipped, or the same name without .gz
            path = next((directory / c for c in (name, name.removesuffix(".gz")) if (directory / c).is_file()), None)
            if path is None:
                return None
            found.append(path)
        return tuple(found)

    def read(self, paths: tuple[Path, ...], split: OfficialSplit, label_mode: str) -> Arrays:
        images_path, labels_path = paths[0:2] if split == "train" else paths[2:4]
        images = read_idx(images_path, ndim=3)
        labels = read_idx(labels_path, ndim=1)
        if images.shape[1:] != self.image_size:
            raise DataError(f"{images_path} holds {images.shape[1]}x{images.shape[2]} images, "
                            f"expected {self.image_size[0]}x{self.image_size[1]}.")
        if images.shape[0] != labels.shape[0]:
            raise DataError(f"{images_path} has {images.shape[0]} images but {labels_path} has "
                            f"{labels.shape[0]} labels.")
        return images[:, None, :, :], labels.astype(np.int64)


# ------------------------------------------------------------------------------ safe unpickling


def _ndarray_globals() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


_ALLOWED_GLOBALS = _ndarray_globals()


class _ForbiddenGlobalError(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can only build plain containers, scalars, strings and numpy arrays.

    ``find_class`` refuses every global except ``numpy.ndarray``, ``numpy.dtype`` and
    ``numpy.(_)core.multiarray._reconstruct`` — exactly what a pickled ``ndarray`` needs — so a pickle
    carrying a code payload (``os.system``, ``builtins.eval``, ...) fails before anything runs.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _ForbiddenGlobalError(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


_UNPICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
                    OverflowError, MemoryError, RecursionError)


def safe_pickle_loads(data: bytes, source: str) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (Python-2 byte strings kept as bytes)."""
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _ForbiddenGlobalError as exc:
        raise DataError(f"Refusing to load {source}: the pickle references the forbidden global {exc}.") from None
    except _UNPICKLE_ERRORS as exc:
        raise DataError(f"{source} is not a valid pickle ({type(exc).__name__}: {exc}).") from None
    return obj


# ---------------------------------------------------------------------------------------- CIFAR


def _field(batch: Any, key: str, source: str) -> Any:
    if not isinstance(batch, dict):
        raise DataError(f"{source} does not hold a dict (found {type(batch).__name__}).")
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise DataError(f"{source} has no {key!r} entry.")


@dataclass(frozen=True)
class CifarReader:
    """CIFAR "python version" batches, extracted or inside the original ``.tar.gz``."""

    archive: str
    folder: str
    train_batches: tuple[str, ...]
    test_batches: tuple[str, ...]
    label_key: str
    coarse_label_key: str | None = None

    @property
    def files(self) -> tuple[str, ...]:
        return (self.archive,)

    @property
    def hint(self) -> str:
        return f"{self.archive} (or its extracted folder {self.folder}/)"

    def locate(self, directory: Path) -> tuple[Path, ...] | None:
        # Prefer extracted batches (fast) over the archive; accept the batch folder itself too.
        for folder in (directory / self.folder, directory):
            if all((folder / m).is_file() for m in (*self.train_batches, *self.test_batches)):
                return (folder,)
        if (directory / self.archive).is_file():
            return (directory / self.archive,)
        return None

    def _load_members(self, source: Path, names: Sequence[str]) -> list[tuple[str, Any]]:
        """``(where, unpickled batch)`` of each of ``names``, from the batch folder or the archive ``source``."""
        if source.is_dir():
            return [(str(source / n), safe_pickle_loads(_read_bytes(source / n), str(source / n))) for n in names]
        wanted = {f"{self.folder}/{n}": n for n in names}
        blobs: dict[str, bytes] = {}
        try:
            with tarfile.open(source, mode="r:*") as tar:
                for member in tar:
                    key = member.name.removeprefix("./")
                    if key in wanted and member.isfile() and (fh := tar.extractfile(member)) is not None:
                        blobs[wanted[key]] = fh.read()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{source} is a truncated or corrupt archive ({exc}).") from exc
        missing = [f"{self.folder}/{n}" for n in names if n not in blobs]
        if missing:
            raise DataError(f"{source} lacks the members {', '.join(missing)}.")
        return [(f"{source}:{self.folder}/{n}", safe_pickle_loads(blobs[n], f"{source}:{self.folder}/{n}"))
                for n in names]

    def read(self, paths: tuple[Path, ...], split: OfficialSplit, label_mode: str) -> Arrays:
        label_key = self.coarse_label_key if label_mode == "coarse" else self.label_key
        if label_key is None:
            raise DataError(f"{self.folder} has no coarse labels; use label_mode='fine'.")
        batches = self.train_batches if split == "train" else self.test_batches
        xs, ys = [], []
        for source, batch in self._load_members(paths[0], batches):
            data = _field(batch, "data", source)
            labels = _field(batch, label_key, source)
            shape_ok = isinstance(data, np.ndarray) and data.ndim == 2 and data.shape[1] == 3 * 32 * 32
            if not shape_ok or data.dtype != np.uint8:
                raise DataError(f"{source} 'data' is not a uint8 array of shape (N, 3072).")
            try:
                y = np.asarray(labels, dtype=np.int64)
            except (TypeError, ValueError, OverflowError):
                raise DataError(f"{source} {label_key!r} is not a list of integers.") from None
            if y.shape != (data.shape[0],):
                raise DataError(f"{source} has {data.shape[0]} images but {y.size} labels.")
            xs.append(data.reshape(-1, 3, 32, 32))
            ys.append(y)
        return np.concatenate(xs), np.concatenate(ys)


# --------------------------------------------------------------------------------------- digits

DIGITS_TEST_SIZE = 360
DIGITS_SPLIT_SEED = 0


@dataclass(frozen=True)
class DigitsReader:
    """scikit-learn's bundled 8×8 digits (1797 images, values 0..16).

    There is no official split; a stratified split with the fixed seed ``DIGITS_SPLIT_SEED`` (0)
    puts ``DIGITS_TEST_SIZE`` (360) images in "test" and the other 1437 in "train".
    """

    files: tuple[str, ...] = ()
    hint: str = "nothing (bundled with scikit-learn)"

    def locate(self, directory: Path) -> tuple[Path, ...] | None:
        return ()

    def read(self, paths: tuple[Path, ...], split: OfficialSplit, label_mode: str) -> Arrays:
        from sklearn.datasets import load_digits

        from netmark.data.splits import stratified_split

        bunch = load_digits()
        x = np.asarray(bunch.images).round().astype(np.uint8)[:, None, :, :]
        y = np.asarray(bunch.target, dtype=np.int64)
        test_idx, train_idx = stratified_split(y, DIGITS_TEST_SIZE, np.random.default_rng(DIGITS_SPLIT_SEED))
        idx = train_idx if split == "train" else test_idx
        return x[idx], y[idx]
