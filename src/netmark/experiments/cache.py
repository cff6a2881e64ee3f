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
* the torch version and a digest of the netmark source the run executes: the static import
  closure of ``training``, ``models``, ``io`` and the run's watermark method (or attack) module,
  so adding another method or attack does not retrain cached runs; plus the paper runner's
  ``CACHE_VERSION`` (bump it when a runner changes how it trains or derives a run: the
  ``experiments`` package itself is not hashed). Data code is not hashed either: the data's bytes are.

Any change there gives a new fingerprint, so a stale model is never reused: it is retrained.
Files per run: ``<name>-<fp12>.safetensors`` (the model), ``.key`` (its owner key, 0600: the cache
holds secrets, keep it private), ``.<field>.key`` for other keys a run carries (an attacker's key:
``RunnerBase._extra_keys``) and ``.json`` (history, training seconds, threads). All are
written atomically and read back through :mod:`netmark.io` / :mod:`netmark.keys` (no pickle).
"""

from __future__ import annotations

import ast
import json
from functools import cache
from pathlib import Path
from typing import Any

import torch

from netmark._util import atomic_write_text, canonical_json, sha256_hex
from netmark.errors import NetmarkError
from netmark.io import load_model, save_model
from netmark.keys import WatermarkKey

#: netmark modules every run depends on: the training loop, the architectures and model files.
#: A run adds its watermark method's module (or, for a derived run, its attack's); each digest
#: covers the static import closure of its roots (:func:`module_closure`).
TRAINING_ROOTS = ("netmark.training", "netmark.models", "netmark.io")
#: Facade and registry packages left out of every closure: ``netmark`` (lazy re-exports and the
#: version string), ``netmark.methods`` / ``netmark.attacks`` (name -> class lookup, and the
#: dispatching ``embed``). Without this every method would depend on every other one.
NOT_HASHED = frozenset({"netmark", "netmark.methods", "netmark.attacks"})
_PACKAGE = Path(__file__).resolve().parents[1]


def _module_file(module: str) -> Path | None:
    """The source file of netmark module ``module`` (a package's ``__init__.py``), or None."""
    rel = Path(*module.split(".")[1:]) if module != "netmark" else Path()
    for cand in (_PACKAGE / rel / "__init__.py", (_PACKAGE / rel).with_suffix(".py")):
        if cand.is_file():
            return cand
    return None


def _imports(path: Path) -> set[str]:
    """netmark modules that ``path`` imports anywhere (module level or inside functions)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "netmark"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] == "netmark":
            out.add(node.module)
            # ``from netmark.methods import uchida`` imports the submodule netmark.methods.uchida
            out |= {f"{node.module}.{a.name}" for a in node.names if _module_file(f"{node.module}.{a.name}")}
    return out


@cache
def module_closure(roots: tuple[str, ...]) -> tuple[Path, ...]:
    """Source files of ``roots`` and of every netmark module they import, transitively (static:
    the import statements of the files, at any depth). A submodule import does not pull in its parent
    package's ``__init__`` (registries: they only collect modules); a package named as a root or
    imported by name (``from netmark.models import build``) does, with everything it imports,
    except the facades in :data:`NOT_HASHED`."""
    seen: dict[str, Path] = {}
    todo = list(roots)
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        f = None if mod in NOT_HASHED else _module_file(mod)
        if f is None:
            continue
        seen[mod] = f
        todo += sorted(_imports(f) - seen.keys())
    return tuple(sorted(set(seen.values())))


@cache
def code_digest(extra_roots: tuple[str, ...] = ()) -> str:
    """sha256 (path and bytes) over :func:`module_closure` of :data:`TRAINING_ROOTS` + ``extra_roots``:
    the netmark source that determines a run's weights. Code a run does not import (another method,
    the CLI, the reports) leaves its fingerprint unchanged."""
    parts: list[bytes] = []
    for f in module_closure(tuple(sorted({*TRAINING_ROOTS, *extra_roots}))):
        parts += [str(f.relative_to(_PACKAGE)).encode(), f.read_bytes()]
    return sha256_hex(*parts)


def tensor_digest(*tensors: torch.Tensor) -> str:
    """sha256 of tensors' dtype, shape and bytes."""
    parts: list[bytes] = []
    for t in tensors:
        t = t.detach().cpu().contiguous()
        parts += [f"{t.dtype}{tuple(t.shape)}".encode(), t.reshape(-1).view(torch.uint8).numpy().tobytes()]
    return sha256_hex(*parts)


def fingerprint(parts: dict[str, Any], code_roots: tuple[str, ...] = ()) -> str:
    """The cache fingerprint of a run from its JSON-able ``parts``, the torch version and the
    :func:`code_digest` of the modules the run uses (``code_roots``: its method's or attack's)."""
    return sha256_hex(canonical_json({**parts, "torch": torch.__version__,
                                      "code": code_digest(tuple(sorted(code_roots)))}).encode())


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
