"""Secret key files: one per embedding, versioned, validated and fingerprinted.

A key holds everything needed to extract and verify one watermark, and nothing of the
released model: the method name, the host layer, the message bits, the secret tensors
(e.g. Uchida's projection matrix X), the method config, the host architecture, the seed
that generated it, the format version and a sha256 fingerprint over all of it.

On disk a key is a safetensors file (no pickle anywhere): the tensors are the secret
tensors and the header metadata holds ``netmark_key`` = canonical JSON of the fields.
Loading validates every field and recomputes the fingerprint; any mismatch, truncation or
malformed field raises :class:`~netmark.errors.KeyFileError` with one clear sentence.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load_bytes
from safetensors.torch import save_file

from netmark._util import atomic_write, canonical_json, first_line, safetensors_metadata, sha256_hex
from netmark._version import __version__
from netmark.errors import KeyFileError

#: 1: a key drawn from a seed (no ``root``); 2: a key drawn from a secret root (issue 20). Both are read.
KEY_FORMAT_VERSION = 2
_READABLE_FORMATS = (1, 2)
_META = "netmark_key"
_MAX_KEY_BYTES = 1 << 30
#: the key's fields stored in the metadata (with ``tensor_names`` and the fingerprint), and their JSON types
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "method": (str,), "layer": (str, type(None)), "message": (str,), "config": (dict,), "arch": (dict, type(None)),
    "seed": (int, type(None)), "created": (str,), "netmark_version": (str,), "format_version": (int,),
    "message_random": (bool,),
}


def str_to_bits(s: str) -> torch.Tensor:
    if not s or any(c not in "01" for c in s):
        raise KeyFileError("message must be a non-empty string of 0/1 characters")
    return torch.tensor([int(c) for c in s], dtype=torch.int64)


@dataclass
class WatermarkKey:
    """The owner's secret for one embedded watermark (never stored in the model file).

    Attributes:
        method: registered method name (``"uchida"``, ...).
        layer: host layer's qualified module name, or ``None`` for black-box methods.
        message: the embedded bits as a ``0``/``1`` string ('' for zero-bit schemes).
        tensors: secret tensors by name (e.g. ``{"X": T×M matrix}``).
        config: the method config as a JSON-serialisable dict.
        arch: the host architecture ``{"name", "args"}`` (lets ``verify`` load a plain state_dict).
        seed: the research seed the key material was drawn from (``None``: drawn from :attr:`root`). A seeded key
            proves nothing against an adversary who can guess seeds (:mod:`netmark.draws`).
        root: hex of the 32-byte secret the key material was drawn from (OS CSPRNG or a claim's opening;
            ``None`` for a seeded key). Never printed (not in ``repr``).
        opening: a claimed key's opening (:mod:`netmark.claims`): ``{"nonce": hex, "config": the committed config,
            "commitment": hex}``; the root is derived from it. ``None``: no claim. Never printed.
        hosts: the weight tensors the extraction reads, ``{name: {"shape": [...], "dtype": "float32"}}``, for methods
            that read named weights only (``MethodTraits.reads_weights``): any file holding them verifies
            (:mod:`netmark.weights`). ``None`` for other methods and for keys written before it existed.
        created: ISO timestamp.
        netmark_version: version that wrote the key.
        format_version: key file format version.
        message_random: True when the message was drawn uniformly at random by netmark; the
            binomial p-value is exact only then.
    """

    method: str
    layer: str | None
    message: str
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    arch: dict[str, Any] | None = None
    seed: int | None = None
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    netmark_version: str = __version__
    format_version: int = KEY_FORMAT_VERSION
    message_random: bool = True
    root: str | None = field(default=None, repr=False)
    opening: dict[str, Any] | None = field(default=None, repr=False)
    hosts: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.opening is not None and (self.root is None or not isinstance(self.opening, dict)
                                         or set(self.opening) != {"nonce", "config", "commitment"}
                                         or not isinstance(self.opening["config"], dict)):
            raise KeyFileError("a key's opening is {nonce, config, commitment} beside a root")
        if self.hosts is not None and (not isinstance(self.hosts, dict) or not all(
                isinstance(n, str) and n and isinstance(h, dict) and isinstance(h.get("shape"), list)
                and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in h["shape"])
                and isinstance(h.get("dtype"), str) for n, h in self.hosts.items())):
            raise KeyFileError("a key's hosts are {tensor name: {shape: [int, ...], dtype: str}}")
        if self.root is not None:
            try:
                ok = len(bytes.fromhex(self.root)) == 32
            except ValueError:
                ok = False
            if not ok:
                raise KeyFileError("a key's root is 32 bytes of hex")
        self.format_version = 1 if self.root is None else 2

    @property
    def key_root(self) -> int | bytes:
        """What the key material was drawn from (:func:`netmark.draws.draw`): the secret root, else the seed (an old
        key without either: 0)."""
        if self.root is not None:
            return bytes.fromhex(self.root)
        return self.seed if self.seed is not None else 0

    @property
    def seeded(self) -> bool:
        """Drawn from a research seed (guessable), not from a secret root."""
        return self.root is None

    @property
    def bits(self) -> torch.Tensor:
        return str_to_bits(self.message) if self.message else torch.zeros(0, dtype=torch.int64)

    def _fields(self) -> dict[str, Any]:
        # a seeded key's fields (and fingerprint) as format 1; an unclaimed key's as before claims existed
        extra = {n: getattr(self, n) for n in ("root", "opening", "hosts") if getattr(self, n) is not None}
        return {**{name: getattr(self, name) for name in _FIELD_TYPES}, **extra, "tensor_names": sorted(self.tensors)}

    @property
    def fingerprint(self) -> str:
        """sha256 over the canonical fields and the raw bytes of every secret tensor."""
        parts = [canonical_json(self._fields()).encode()]
        for name in sorted(self.tensors):
            t = self.tensors[name].detach().cpu().contiguous()
            parts += [name.encode(), str(t.dtype).encode(), str(tuple(t.shape)).encode(),
                      t.view(torch.uint8).numpy().tobytes() if t.numel() else b""]
        return sha256_hex(*parts)

    def save(self, path: str | os.PathLike[str], *, force: bool = False) -> Path:
        """Write the key atomically, readable by its owner only (0600); refuses to overwrite unless ``force``."""
        meta = {_META: canonical_json({**self._fields(), "fingerprint": self.fingerprint})}
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.tensors.items()}
        return atomic_write(path, lambda p: save_file(tensors, str(p), metadata=meta), force=force, private=True)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> WatermarkKey:
        """Read and validate a key file (see module docstring)."""
        p = Path(path)
        if not p.is_file():
            raise KeyFileError(f"key file {p} " + ("is a directory" if p.is_dir() else "does not exist"))
        size = p.stat().st_size
        if size > _MAX_KEY_BYTES:
            raise KeyFileError(f"key file {p} is implausibly large ({size} bytes)")
        raw = p.read_bytes()
        meta_json = _read_metadata(raw, p)
        try:
            tensors = st_load_bytes(raw)
        except (SafetensorError, ValueError, RuntimeError) as e:
            raise KeyFileError(f"key file {p} is corrupt or truncated ({first_line(e, 160)})") from None
        return cls._from_fields(meta_json, tensors, p)

    @classmethod
    def _from_fields(cls, meta_json: str, tensors: dict[str, torch.Tensor], p: Path) -> WatermarkKey:
        try:
            d = json.loads(meta_json)
        except json.JSONDecodeError:
            raise KeyFileError(f"key file {p} has malformed metadata (not JSON)") from None
        if not isinstance(d, dict):
            raise KeyFileError(f"key file {p} has malformed metadata (not an object)")
        fv = d.get("format_version")
        if fv not in _READABLE_FORMATS or isinstance(fv, bool):
            raise KeyFileError(f"key file {p} has format version {fv!r}; this netmark reads "
                               f"{', '.join(map(str, _READABLE_FORMATS))}")
        if (fv == 2) != isinstance(d.get("root"), str):
            raise KeyFileError(f"key file {p} has a malformed field 'root'")
        if "opening" in d and not isinstance(d["opening"], dict):
            raise KeyFileError(f"key file {p} has a malformed field 'opening'")
        for name, types in {**_FIELD_TYPES, "fingerprint": (str,), "tensor_names": (list,)}.items():
            if name not in d:
                raise KeyFileError(f"key file {p} is missing the field {name!r}")
            if not isinstance(d[name], types) or (name == "seed" and isinstance(d[name], bool)):
                raise KeyFileError(f"key file {p} has a malformed field {name!r}")
        if d["message"] and any(c not in "01" for c in d["message"]):
            raise KeyFileError(f"key file {p} has a malformed message (expected 0/1 characters)")
        if sorted(tensors) != sorted(d["tensor_names"]):
            raise KeyFileError(f"key file {p} lists tensors {d['tensor_names']} but holds {sorted(tensors)}")
        for name, t in tensors.items():
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise KeyFileError(f"key file {p} has non-finite values in tensor {name!r}")
        if "hosts" in d and not isinstance(d["hosts"], dict):
            raise KeyFileError(f"key file {p} has a malformed field 'hosts'")
        key = cls(tensors=dict(tensors), root=d.get("root"), opening=d.get("opening"), hosts=d.get("hosts"),
                  **{name: d[name] for name in _FIELD_TYPES})
        if key.fingerprint != d["fingerprint"]:
            raise KeyFileError(f"key file {p} fails its sha256 fingerprint check (modified or corrupt)")
        return key


def _read_metadata(raw: bytes, p: Path) -> str:
    try:
        meta = safetensors_metadata(raw)
    except ValueError as e:
        what = "truncated or not a netmark key" if str(e) == "truncated" else "corrupt (unreadable header)"
        raise KeyFileError(f"key file {p} is {what}") from None
    if meta is None or not isinstance(meta.get(_META), str):
        raise KeyFileError(f"{p} is not a netmark key file (no {_META!r} metadata)")
    return str(meta[_META])
