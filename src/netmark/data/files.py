"""Finding dataset files on disk, and downloading them when allowed.

Look-up order for dataset ``<name>`` (the first directory that holds a complete copy wins):

1. the explicit ``data_dir`` argument — ``<data_dir>/<name>/``, then the directory itself;
2. ``$NETMARK_DATA`` — ``$NETMARK_DATA/<name>/``, then the directory itself;
3. :data:`SYSTEM_DATA_DIR` ``/<name>/`` (Debian's ``dataset-fashion-mnist`` package installs
   ``/usr/share/datasets/fashion-mnist/``);
4. the download cache ``$XDG_CACHE_HOME/netmark/<name>/`` (default ``~/.cache/netmark/<name>/``).

If none is complete and downloading is allowed (``download=True`` and ``$NETMARK_OFFLINE`` is not
``1``), the missing files are fetched into the *download directory*: ``<data_dir>/<name>/`` when
``data_dir`` was given, else ``$NETMARK_DATA/<name>/`` when set, else the cache directory. Each file
is written to a temporary file in that directory and moved into place with :func:`os.replace`, so an
interrupted download never leaves a partial file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from netmark.data.registry import DatasetSpec
from netmark.errors import DataError

__all__ = ["DOWNLOAD_TIMEOUT_S", "SYSTEM_DATA_DIR", "cache_dir", "candidate_dirs", "download_dir", "find_dataset",
           "offline"]

SYSTEM_DATA_DIR = Path("/usr/share/datasets")
"""System-wide dataset root (Debian ``dataset-*`` packages); looked up as ``SYSTEM_DATA_DIR/<name>``."""

DOWNLOAD_TIMEOUT_S = 15.0
"""Socket timeout of each download request, seconds."""


def _env_dir(var: str) -> Path | None:
    value = os.environ.get(var, "").strip()
    return Path(value).expanduser() if value else None


def cache_dir(name: str) -> Path:
    """``$XDG_CACHE_HOME/netmark/<name>`` (default ``~/.cache/netmark/<name>``)."""
    root = _env_dir("XDG_CACHE_HOME") or Path.home() / ".cache"
    return root / "netmark" / name


def offline() -> bool:
    """True when ``$NETMARK_OFFLINE`` is set to 1 / true / yes."""
    return os.environ.get("NETMARK_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _roots(data_dir: str | os.PathLike[str] | None) -> list[Path]:
    """``data_dir`` and ``$NETMARK_DATA``, those given, in this order."""
    roots = [Path(data_dir).expanduser() if data_dir is not None else None, _env_dir("NETMARK_DATA")]
    return [r for r in roots if r is not None]


def candidate_dirs(name: str, data_dir: str | os.PathLike[str] | None) -> list[Path]:
    """The directories searched for dataset ``name``, in order."""
    return [d for root in _roots(data_dir) for d in (root / name, root)] + [SYSTEM_DATA_DIR / name, cache_dir(name)]


def download_dir(name: str, data_dir: str | os.PathLike[str] | None) -> Path:
    """Where missing files are downloaded to (and where the error message asks to put them)."""
    roots = _roots(data_dir)
    return roots[0] / name if roots else cache_dir(name)


def _download(url: str, target: Path) -> None:
    """Fetch ``url`` into ``target`` atomically (temporary file in the same directory + os.replace)."""
    if not url.startswith(("https://", "http://")):
        raise DataError(f"Refusing to download from non-HTTP URL {url}.")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
            shutil.copyfileobj(resp, out, length=1 << 20)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def find_dataset(spec: DatasetSpec, data_dir: str | os.PathLike[str] | None, download: bool) -> tuple[Path, ...]:
    """Locate (or download) the files of ``spec``; returns what ``spec.reader.locate`` found.

    Raises:
        DataError: when no searched directory holds the files and they cannot be downloaded; the
            message names the files and the directory to put them in.
    """
    if not spec.files:  # bundled data (digits): nothing to look for
        return ()
    searched = candidate_dirs(spec.name, data_dir)
    for directory in searched:
        if directory.is_dir():
            found = spec.reader.locate(directory)
            if found is not None:
                return found

    target = download_dir(spec.name, data_dir)
    if not download:
        why = "download=False"
    elif offline():
        why = "NETMARK_OFFLINE is set"
    else:
        url = ""
        try:
            for file, url in zip(spec.files, spec.urls, strict=True):
                if not (target / file).is_file():
                    _download(url, target / file)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            why = f"downloading {url} failed ({reason})"
        else:
            found = spec.reader.locate(target)
            if found is not None:
                return found
            why = f"the download into {target} is incomplete"

    sources = f" (from {spec.base_url})" if spec.base_url else ""
    raise DataError(
        f"Dataset {spec.name!r} not found and {why}: put {spec.reader.hint}{sources} into {target} "
        f"(or pass data_dir= / set NETMARK_DATA); searched {', '.join(str(d) for d in searched)}."
    )
