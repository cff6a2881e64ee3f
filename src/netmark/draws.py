"""Where a key's random material comes from (issue 20, item 1): a secret root from the OS CSPRNG, or a research seed.

A key's *root* is either

* 32 bytes from the OS CSPRNG (:func:`new_root`; the default: no two owners share key material, and nobody guesses
  it: 256 bits), or derived from a claim's opening (:func:`netmark.claims.root_of`); or
* an ``int`` seed (``seed=`` in the API, ``--key-seed`` in the CLI), for reproducible research only: anyone who can
  guess the seed can rebuild the key, so :func:`netmark.methods.verify` marks such a key (``details["seeded"]``).

:func:`draw` ``(root, k)`` is the root's ``k``-th independent stream. For an ``int`` root it is exactly the stream
netmark always drew (``torch.Generator`` seeded with ``root + k``), so seeded keys, the reproductions and the golden
outputs are unchanged; for a secret root it is numpy's PCG64 (128-bit state) seeded with HKDF-SHA256 of the root
(the ``cryptography`` library), the stream index as HKDF's info.
"""

from __future__ import annotations

import secrets

import numpy as np
import torch
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from netmark.errors import ConfigError

ROOT_BYTES = 32
KeyRoot = int | bytes


def new_root() -> bytes:
    """A fresh secret root: :data:`ROOT_BYTES` from the OS CSPRNG. In a data-parallel run (``torch.distributed``
    initialised) every rank makes the same key: rank 0's root, broadcast."""
    root = secrets.token_bytes(ROOT_BYTES)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        t = torch.tensor(list(root), dtype=torch.uint8,
                         device="cuda" if dist.get_backend() == "nccl" else "cpu")
        dist.broadcast(t, src=0)
        root = bytes(t.cpu().tolist())
    return root


def check_root(root: object) -> KeyRoot:
    if isinstance(root, bool) or not isinstance(root, int | bytes):
        raise ConfigError(f"a key root is an int seed or {ROOT_BYTES} secret bytes, got {type(root).__name__}")
    if isinstance(root, bytes) and len(root) != ROOT_BYTES:
        raise ConfigError(f"a secret key root is {ROOT_BYTES} bytes, got {len(root)}")
    return root


def _derived(root: bytes, k: int | str, n: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=n, salt=b"netmark-draws/1", info=str(k).encode()).derive(root)


def derived_root(root: bytes, k: int) -> bytes:
    """Another root, the ``k``-th derived from ``root`` (HKDF; a domain of its own, apart from the streams)."""
    return _derived(root, f"root/{k}", ROOT_BYTES)


def derived_seed(root: KeyRoot, k: int) -> int:
    """An ``int`` seed for stream ``k`` where an int is needed (reference models trained inside a method: their
    shuffling, their initialisation): ``root + k`` for a seed (as before), else 62 bits of HKDF(root, k)."""
    check_root(root)
    if isinstance(root, int):
        return root + k
    return int.from_bytes(_derived(root, k, 8), "big") >> 2


class Draw:
    """Random tensors of one stream (the torch functions' signatures, without ``generator=``). CPU tensors."""

    def __init__(self, root: KeyRoot, k: int = 0) -> None:
        check_root(root)
        self._torch: torch.Generator | None = None
        self._np: np.random.Generator | None = None
        if isinstance(root, int):
            self._torch = torch.Generator()
            self._torch.manual_seed(int(root + k))
        else:
            seed = int.from_bytes(_derived(root, k, 32), "big")
            self._np = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))

    def rand(self, *size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Uniform on [0, 1)."""
        if self._torch is not None:
            return torch.rand(*size, generator=self._torch, dtype=dtype)
        assert self._np is not None
        return torch.from_numpy(self._np.random(size, dtype=np.float64)).to(dtype)

    def randn(self, *size: int) -> torch.Tensor:
        """Standard normal (float32)."""
        if self._torch is not None:
            return torch.randn(*size, generator=self._torch)
        assert self._np is not None
        return torch.from_numpy(self._np.standard_normal(size, dtype=np.float32))

    def randint(self, low: int, high: int, size: tuple[int, ...]) -> torch.Tensor:
        """Integers in [low, high) (int64)."""
        if self._torch is not None:
            return torch.randint(low, high, size, generator=self._torch)
        assert self._np is not None
        return torch.from_numpy(self._np.integers(low, high, size, dtype=np.int64))

    def randperm(self, n: int) -> torch.Tensor:
        """A uniformly random permutation of ``range(n)`` (int64)."""
        if self._torch is not None:
            return torch.randperm(n, generator=self._torch)
        assert self._np is not None
        return torch.from_numpy(self._np.permutation(n).astype(np.int64))


def draw(root: KeyRoot, k: int = 0) -> Draw:
    """Stream ``k`` of ``root`` (see the module docstring)."""
    return Draw(root, k)
