"""On-disk cache of a reproduction's trained runs (``netmark reproduce PAPER --cache-dir DIR``).

A reproduction at CPU scale trains dozens of models for an hour or more; the cache lets an
interrupted run resume, lets ``--jobs N`` train runs in worker processes, and lets a report be
re-measured without retraining. The evaluation (:mod:`netmark.evaluation.cells`) keeps its trained runs
here too. A run is stored under its *fingerprint*, the sha256 of everything that determines the trained
weights, named by explicit versions and configs, never by source text:

* the run spec (seeds, method, bits, data role, parent), its schedule (without ``progress``/``device``);
* the watermark method's name, config and class ``VERSION`` (:func:`method_part`), or for a derived
  (attacked) run the ``VERSION`` of its attack (:func:`attack_versions`) and the parent's fingerprint;
* the architecture's name, arguments and registry version (:func:`netmark.models.registry.model_version`);
* the training data's bytes (sha256 of the tensors of the run's data role);
* the torch version and the training loop's :data:`netmark.training.TRAINING_VERSION`
  (:func:`fingerprint` adds both); plus the study's ``CACHE_VERSION`` (bump it when a study changes how it
  trains or derives a run). Data code is not versioned: the data's bytes are.

Each version is a class or module constant documented "bump when the numerical output changes"; moving or
renaming code changes none of them, so a clean-up keeps every cached run (``tests/test_cache_keys.py``), and
``tests/test_versions.py`` fails when a method's output changes without a ``VERSION`` bump.
Any change in a part gives a new fingerprint, so a stale model is never reused: it is retrained.
Files per run: ``<name>-<fp12>.safetensors`` (the model), ``.key`` (its owner key, 0600: the cache
holds secrets, keep it private), ``.<field>.key`` for other keys a run carries (an attacker's key:
``Runs.extra_keys``) and ``.json`` (history, training seconds, threads). All are
written atomically and read back through :mod:`netmark.io` / :mod:`netmark.keys` (no pickle).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from netmark import training
from netmark._util import atomic_write_text, canonical_json, sha256_hex, tensor_digest  # noqa: F401 (re-exported)
from netmark.attacks import ATTACKS
from netmark.errors import NetmarkError
from netmark.io import load_model, save_model
from netmark.keys import WatermarkKey

if TYPE_CHECKING:
    from netmark.methods import WatermarkMethod


def method_part(method: WatermarkMethod) -> dict[str, Any]:
    """What a watermark method contributes to a run's fingerprint: its name, config and class ``VERSION``."""
    return {"name": method.name, "version": type(method).VERSION, "config": method.config.to_dict()}


def attack_versions(name: str) -> dict[str, int]:
    """``{name: VERSION}`` of the registered attack ``name`` (a ``-new-head`` suffix dropped); for a name the
    registry lacks, the versions of every registered attack (a change in any of them gives a new fingerprint)."""
    base = name.removesuffix("-new-head")
    chosen = [base] if base in ATTACKS else sorted(ATTACKS)
    return {n: ATTACKS[n].VERSION for n in chosen}


def fingerprint(parts: dict[str, Any]) -> str:
    """The cache fingerprint of a run or cell from its JSON-able ``parts`` (configs, seeds, data digests and the
    versions of what it runs), the torch version and :data:`~netmark.training.TRAINING_VERSION`."""
    versions = {"torch": torch.__version__, "training": training.TRAINING_VERSION}
    return sha256_hex(canonical_json({**parts, **versions}).encode())


class RunCache:
    """Trained runs in a directory, by name and fingerprint."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)

    def _paths(self, name: str, fp: str) -> tuple[Path, Path, Path]:
        # appended, not Path.with_suffix: a run name may contain dots ("R4-g0.001")
        stem = f"{name}-{fp[:12]}"
        return self.dir / f"{stem}.safetensors", self.dir / f"{stem}.key", self.dir / f"{stem}.json"

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
        return key_p.with_name(f"{key_p.name.removesuffix('.key')}.{extra}.key")

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
