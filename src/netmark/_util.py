"""Small shared helpers: local seeding, atomic writes, canonical JSON."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch

from netmark.errors import ConfigError, NetmarkError, OutputExistsError


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's global RNG seeded, then restore the caller's RNG state.

    Layer initialisation and dropout draw from torch's global generator; forking it keeps
    netmark from leaking or consuming the caller's random state.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def generator(seed: int) -> torch.Generator:
    """A fresh CPU generator seeded with ``seed`` (never the global one)."""
    g = torch.Generator()
    g.manual_seed(int(seed))
    return g


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: stable input for fingerprints."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def sha256_hex(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return h.hexdigest()


def read_bounded(path: str | os.PathLike[str], limit: int, what: str, error: type[NetmarkError]) -> bytes:
    """The bytes of file ``path``, reading at most ``limit`` + 1 of them (bounded memory): a larger, missing or
    unreadable file raises ``error`` with one line naming ``what`` it should have been."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise error(f"cannot read {what} {p}: {e.strerror or e}") from None
    if len(data) > limit:
        raise error(f"{p}: larger than {limit} bytes: not a {what}")
    return data


def tensor_digest(*tensors: torch.Tensor) -> str:
    """sha256 of tensors' dtype, shape and bytes (cache fingerprints; the digests a claim commits to)."""
    parts: list[bytes] = []
    for t in tensors:
        t = t.detach().cpu().contiguous()
        parts += [f"{t.dtype}{tuple(t.shape)}".encode(), t.reshape(-1).view(torch.uint8).numpy().tobytes()]
    return sha256_hex(*parts)


def safetensors_metadata(raw: bytes) -> dict[str, object] | None:
    """The ``__metadata__`` of a safetensors file's bytes (None if it has none).

    Parses the header by hand so callers can turn problems into their own one-line errors:
    raises ``ValueError("truncated")`` or ``ValueError("corrupt")``.
    """
    if len(raw) < 8:
        raise ValueError("truncated")
    n = int.from_bytes(raw[:8], "little")
    if n <= 0 or 8 + n > len(raw):
        raise ValueError("truncated")
    try:
        header = json.loads(raw[8 : 8 + n])
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError("corrupt") from None
    if not isinstance(header, dict):
        raise ValueError("corrupt")
    meta = header.get("__metadata__")
    return meta if isinstance(meta, dict) else None


def check_writable(path: str | os.PathLike[str], force: bool) -> Path:
    """Refuse to overwrite ``path`` unless ``force``; return it as a Path."""
    p = Path(path)
    if p.exists() and not force:
        raise OutputExistsError(f"{p} already exists; pass --force (force=True) to overwrite it")
    if p.exists() and p.is_dir():
        raise OutputExistsError(f"{p} is a directory, expected a file path")
    return p


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object], *, force: bool = False,
                 private: bool = False) -> Path:
    """Write a file atomically: ``write(tmp)`` into the same directory, then ``os.replace``.

    A crash or an exception leaves neither a partial file nor a changed original behind.
    ``private=True`` (secret keys) keeps the file readable by its owner only (0600); other
    files get the usual ``0666 & ~umask``.
    """
    target = check_writable(path, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        if not private:  # mkstemp creates 0600; give ordinary files the usual permissions
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str, *, force: bool = False) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"), force=force)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt meanwhile (a scheduler's stop is handled like Ctrl-C); a no-op outside the
    main thread, where signal handlers cannot be set."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


_Item = TypeVar("_Item")


def add_to_registry(registry: dict[str, Any], kind: str, name: str, item: _Item) -> _Item:
    """Add ``item`` to ``registry`` under ``name`` and return it (``ValueError``: ``"<kind> '<name>' registered
    twice"``): the one registration step of the method and attack registries."""
    if name in registry:
        raise ValueError(f"{kind} {name!r} registered twice")
    registry[name] = item
    return item


def import_submodules(package: str, path: Iterable[str]) -> list[str]:
    """Import every module of ``package`` (its ``__path__``), in name order, and return their names: how the method
    and attack packages register every scheme in them, so that a new module needs no import list edited."""
    import importlib
    import pkgutil

    names = sorted(m.name for m in pkgutil.iter_modules(list(path)) if not m.name.startswith("_"))
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return names


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of ``e``'s message (at most ``limit`` characters), or its type's name when it has none: how an
    exception is quoted in a one-line error."""
    s = str(e).strip()
    return s.splitlines()[0][:limit] if s else type(e).__name__


def check_int(name: str, v: object, low: int = 1) -> None:
    """ConfigError unless ``v`` is an integer (not a bool) ``>= low`` (config validation)."""
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {v!r}")


def check_finite(name: str, v: object, *, positive: bool) -> None:
    """ConfigError unless ``v`` is a finite number (not a bool), ``> 0`` if ``positive`` else ``>= 0``."""
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise ConfigError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {v!r}")


def check_choice(name: str, v: object, choices: Iterable[object]) -> None:
    """ConfigError unless ``v`` is one of ``choices`` (config validation)."""
    options = tuple(choices)
    if v not in options:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, options))}, got {v!r}")


def check_bool(name: str, v: object) -> None:
    """ConfigError unless ``v`` is True or False (config validation)."""
    if not isinstance(v, bool):
        raise ConfigError(f"{name} must be true or false, got {v!r}")


def check_unit(name: str, v: object, *, optional: bool = False) -> None:
    """ConfigError unless ``v`` is a number (not a bool) in (0, 1] (or None, when ``optional``)."""
    if optional and v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 1:
        raise ConfigError(f"{name} must be a number in (0, 1]{' or None' if optional else ''}, got {v!r}")


def check_layer_name(layer: object, example: str) -> None:
    """ConfigError unless ``layer`` is None (the method picks the host layer) or a non-empty module name."""
    if layer is not None and (not isinstance(layer, str) or not layer):
        raise ConfigError(f"layer must be a module name such as {example!r}")
