"""On-disk cache of a reproduction's trained runs (``netmark reproduce PAPER --cache-dir DIR``).

A reproduction at CPU scale trains dozens of models for an hour or more; the cache lets an
interrupted run resume, lets ``--jobs N`` train runs in worker processes, and lets a report be
re-measured without retraining. A run is stored under its *fingerprint*, the sha256 of everything
that determines the trained weights:

* the run spec (seeds, method, bits, data role, parent), its schedule (without ``progress``/``device``)
  and the watermark method's config;
* the architecture name and arguments;
* the training data's bytes (sha256 of the tensors of the run's data role);
* the parent's fingerprint for a derived (attacked) run;
* the torch version and a digest of the netmark source that trains models (``training``,
  ``models``, ``methods``, ``attacks``, ``data``, ``io``, ``keys``, ``_util``) plus the paper
  runner's ``CACHE_VERSION`` (bump it when a runner changes how it derives a run).

Any change there gives a new fingerprint, so a stale model is never reused: it is retrained.
Files per run: ``<name>-<fp12>.safetensors`` (the model), ``.key`` (its owner key, 0600: the cache
holds secrets, keep it private), ``.<field>.key`` for other keys a run carries (an attacker's key:
``RunnerBase._extra_keys``) and ``.json`` (history, training seconds, threads). All are
written atomically and read back through :mod:`netmark.io` / :mod:`netmark.keys` (no pickle).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import torch

from netmark._util import atomic_write_text, canonical_json, sha256_hex
from netmark.errors import NetmarkError
from netmark.io import load_model, save_model
from netmark.keys import WatermarkKey

#: netmark modules whose code determines a trained model (relative to the package root).
TRAINING_CODE = ("training.py", "models", "methods", "attacks", "data", "io.py", "keys.py", "_util.py")


@cache
def code_digest() -> str:
    """sha256 over the source files in :data:`TRAINING_CODE` (path and bytes, sorted)."""
    root = Path(__file__).resolve().parents[1]
    parts: list[bytes] = []
    for entry in TRAINING_CODE:
        p = root / entry
        files = sorted(p.rglob("*.py")) if p.is_dir() else [p]
        for f in files:
            parts += [str(f.relative_to(root)).encode(), f.read_bytes()]
    return sha256_hex(*parts)


def tensor_digest(*tensors: torch.Tensor) -> str:
    """sha256 of tensors' dtype, shape and bytes."""
    parts: list[bytes] = []
    for t in tensors:
        t = t.detach().cpu().contiguous()
        parts += [f"{t.dtype}{tuple(t.shape)}".encode(), t.reshape(-1).view(torch.uint8).numpy().tobytes()]
    return sha256_hex(*parts)


def fingerprint(parts: dict[str, Any]) -> str:
    """The cache fingerprint of a run from its JSON-able ``parts`` (plus torch and code versions)."""
    return sha256_hex(canonical_json({**parts, "torch": torch.__version__, "code": code_digest()}).encode())


class RunCache:
    """Trained runs in a directory, by name and fingerprint."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)

    def _paths(self, name: str, fp: str) -> tuple[Path, Path, Path]:
        stem = self.dir / f"{name}-{fp[:12]}"
        return stem.with_suffix(".safetensors"), stem.with_suffix(".key"), stem.with_suffix(".json")

    def has(self, name: str, fp: str, extras: tuple[str, ...] = ()) -> bool:
        """Whether a complete entry (with the ``extras`` keys) is stored (its files are checked on load)."""
        rec_p = self._paths(name, fp)[2]
        try:
            record = json.loads(rec_p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return record.get("fingerprint") == fp and set(extras) <= set(record.get("extra_keys", {}))

    def load(self, name: str, fp: str, extras: tuple[str, ...] = (),
             ) -> tuple[torch.nn.Module, WatermarkKey | None, dict[str, Any], dict[str, WatermarkKey | None]] | None:
        """``(model, key, record, extra keys)`` of a cached run, or ``None`` when absent, unreadable or
        stored without one of the ``extras`` (named extra keys of the run, e.g. an attacker's key)."""
        model_p, key_p, rec_p = self._paths(name, fp)
        if not rec_p.is_file():
            return None
        try:
            record = json.loads(rec_p.read_text(encoding="utf-8"))
            if record.get("fingerprint") != fp or not set(extras) <= set(record.get("extra_keys", {})):
                return None
            model = load_model(model_p)
            key = WatermarkKey.load(key_p) if record.get("has_key") else None
            more = {n: WatermarkKey.load(self._extra_path(key_p, n)) if record["extra_keys"][n] else None
                    for n in extras}
        except (OSError, ValueError, NetmarkError):
            return None  # a damaged entry is retrained (and overwritten), never trusted
        return model, key, record, more

    @staticmethod
    def _extra_path(key_p: Path, extra: str) -> Path:
        return key_p.with_suffix(f".{extra}.key")

    def save(self, name: str, fp: str, model: torch.nn.Module, key: WatermarkKey | None,
             record: dict[str, Any], extras: dict[str, WatermarkKey | None] | None = None) -> None:
        """Store a run (model and keys first, the record last: a record means a complete entry)."""
        model_p, key_p, rec_p = self._paths(name, fp)
        self.dir.mkdir(parents=True, exist_ok=True)
        save_model(model, model_p, force=True)
        if key is not None:
            key.save(key_p, force=True)
        for n, k in (extras or {}).items():
            if k is not None:
                k.save(self._extra_path(key_p, n), force=True)
        atomic_write_text(rec_p, json.dumps({**record, "fingerprint": fp, "has_key": key is not None,
                                             "extra_keys": {n: k is not None for n, k in (extras or {}).items()}},
                                            indent=1), force=True)
