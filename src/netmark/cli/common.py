"""Plumbing of the ``netmark`` command line that is not a command: one-line usage errors, ``--version``,
``-v/--verbose`` logging, JSON error objects and the output-directory checks.

Errors, whatever their origin (a bad option value caught by the option parser, a :class:`~netmark.errors.NetmarkError`
raised by a command), end the same way: one line ``netmark: error: ...`` on stderr and exit code 2. A command run
with ``--json`` also prints ``{"error": "...", "exit_code": 2}`` on stdout, so a script that parses stdout gets a
JSON object in every case.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from netmark.errors import ConfigError

try:  # typer >= 0.2x vendors click; older versions use the click package
    from typer._click import exceptions as _click_exc
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover
    from click import exceptions as _click_exc  # type: ignore[no-redef]
    from click import get_current_context  # type: ignore[no-redef]

_ClickException: type[Exception] = _click_exc.ClickException
_NoArgsIsHelp: tuple[type[Exception], ...] = tuple(
    c for c in (getattr(_click_exc, "NoArgsIsHelpError", None),) if c is not None)

#: Exit code of every bad input (also of a bad option value caught by the option parser).
BAD_INPUT = 2


def error_line(msg: str, *, as_json: bool = False) -> None:
    """The one stderr line of a bad input (and, with ``as_json``, its JSON object on stdout)."""
    msg = " ".join(str(msg).split())  # one line, whatever the message held
    if as_json:
        typer.echo(json.dumps({"error": msg, "exit_code": BAD_INPUT}))
    typer.echo(f"netmark: error: {msg}", err=True)


def _usage_message(e: Exception) -> str:
    msg = e.format_message()  # type: ignore[attr-defined]
    ctx = getattr(e, "ctx", None)
    if ctx is not None:
        msg += f" (see `{ctx.command_path} --help`)"
    return msg


class OneLineErrors(TyperGroup):
    """The top-level command group: usage errors (an out-of-range ``--epochs``, an unknown option, a missing
    argument) become one ``netmark: error:`` line and exit 2 instead of click's framed usage box."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,  # type: ignore[override]
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        try:
            rv = super().main(args=argv, prog_name=prog_name, complete_var=complete_var, standalone_mode=False,
                              **extra)
        except _NoArgsIsHelp:  # `netmark` or `netmark attack` alone: the help text, as before
            if not standalone_mode:
                raise
            return super().main(args=argv, prog_name=prog_name, complete_var=complete_var, **extra)
        except _ClickException as e:
            if not standalone_mode:
                raise
            error_line(_usage_message(e), as_json="--json" in argv)
            sys.exit(BAD_INPUT)
        except typer.Abort:
            if not standalone_mode:
                raise
            typer.echo("netmark: aborted", err=True)
            sys.exit(1)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


class _EchoHandler(logging.Handler):
    """Log records as lines on the *current* stderr (``typer.echo``: also under a test runner's capture)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            if record.levelno >= logging.WARNING:
                msg = f"netmark: {record.levelname.lower()}: {msg}"
            typer.echo(msg, err=True)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def enable_verbose(ctx: typer.Context) -> None:
    """``-v``: netmark's INFO records (one line per training epoch, ...) on stderr, terminal or not, until the
    command ends."""
    log = logging.getLogger("netmark")
    handler = _EchoHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    before = (log.level, log.propagate)
    log.setLevel(logging.INFO)
    log.propagate = False  # the root handler would print each line a second time
    log.addHandler(handler)

    def restore() -> None:
        log.removeHandler(handler)
        log.setLevel(before[0])
        log.propagate = before[1]

    ctx.call_on_close(restore)


def version_text() -> str:
    import platform

    import torch

    from netmark import __version__

    return f"netmark {__version__} (torch {torch.__version__}, Python {platform.python_version()})"


def check_dir_writable(directory: Path) -> None:
    """ConfigError unless files can be created in ``directory`` (or, when it does not exist yet, in its nearest
    existing ancestor, where it would be created): checked before any training by creating and removing a
    temporary file, which also catches read-only file systems and ``--out`` under a regular file."""
    d = Path(directory)
    probe = d
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"cannot create output directory {d}: {probe} is not a directory")
    try:
        fd, name = tempfile.mkstemp(prefix=".netmark-write-test.", dir=probe)
    except OSError as e:
        where = f"{d}" if probe == d else f"{d} (its parent {probe})"
        raise ConfigError(f"output directory {where} is not writable ({e.strerror or type(e).__name__})") from None
    os.close(fd)
    os.unlink(name)


def out_was_defaulted(param: str = "out") -> bool:
    """True when the running command's ``param`` option was not given (its default is used)."""
    ctx = get_current_context(silent=True)
    if ctx is None:
        return False
    source = ctx.get_parameter_source(param)
    return source is not None and source.name == "DEFAULT"
