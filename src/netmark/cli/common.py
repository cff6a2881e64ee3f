"""What the ``netmark`` command modules share: one-line usage errors, ``--version``, ``-v/--verbose`` logging, JSON
error objects, the output-directory checks, the shared option types and the helpers that turn options into
library objects (training schedules, datasets, models, methods). The exit codes are listed in :mod:`netmark.cli`.

Errors, whatever their origin (a bad option value caught by the option parser, a :class:`~netmark.errors.NetmarkError`
raised by a command), end the same way: one line ``netmark: error: ...`` on stderr and exit code 2. A command run
with ``--json`` also prints ``{"error": "...", "exit_code": 2}`` on stdout, so a script that parses stdout gets a
JSON object in every case.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperGroup

from netmark.errors import ConfigError, NetmarkError

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
        run = functools.partial(super().main, args=argv, prog_name=prog_name, complete_var=complete_var, **extra)
        if not standalone_mode:
            return run(standalone_mode=False)
        try:
            rv = run(standalone_mode=False)
        except _NoArgsIsHelp:  # `netmark` or `netmark attack` alone: the help text, as before
            return run()
        except _ClickException as e:
            error_line(_usage_message(e), as_json="--json" in argv)
            sys.exit(BAD_INPUT)
        except typer.Abort:
            typer.echo("netmark: aborted", err=True)
            sys.exit(1)
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


def out_was_defaulted() -> bool:
    """True when the running command's ``--out`` option was not given (its default is used)."""
    ctx = get_current_context(silent=True)
    source = ctx.get_parameter_source("out") if ctx is not None else None
    return source is not None and source.name == "DEFAULT"


# ---------------------------------------------------------------- errors of a command
F = TypeVar("F", bound=Callable[..., Any])


def fail(msg: str, code: int = BAD_INPUT, as_json: bool = False) -> typer.Exit:
    """The one stderr line of an error, and the exit (``raise fail(...)``) with ``code``."""
    error_line(msg, as_json=as_json)
    return typer.Exit(code)


def handles_errors(fn: F) -> F:
    """Turn user-facing errors into one stderr line and exit code 2 (no traceback); a command called with
    ``--json`` (parameter ``as_json``) also prints the error as a JSON object on stdout."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json"))
        try:
            return fn(*args, **kwargs)
        except NetmarkError as e:
            raise fail(str(e), as_json=as_json) from None
        except (OSError, ValueError) as e:
            raise fail(f"{type(e).__name__}: {e}", as_json=as_json) from None

    return wrapper  # type: ignore[return-value]


# ---------------------------------------------------------------- commands built from tables
def kw_param(name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
    """One option (or argument) of a command whose signature is built from a table."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def with_signature(fn: F, params: Sequence[inspect.Parameter], doc: str | None) -> F:
    """``fn`` (taking ``**kw``) as typer sees a command of these ``params`` and this help text."""
    fn.__signature__ = inspect.Signature(list(params))  # type: ignore[attr-defined]
    fn.__doc__ = doc
    return fn


# ---------------------------------------------------------------- shared options
Model = Annotated[str, typer.Option("--model", "-m", help="architecture name (see `netmark models`)")]
Dataset_ = Annotated[str, typer.Option("--dataset", "-d", help="fashion-mnist | mnist | cifar10 | cifar100 | digits")]
Epochs = Annotated[int, typer.Option("--epochs", "-e", min=1, help="training epochs")]
TrainSize = Annotated[int | None, typer.Option("--train-size", min=1, help="use a seeded subset of N training images")]
Seed = Annotated[int, typer.Option("--seed", help="seed for initialisation and shuffling")]
KeySeed = Annotated[int | None, typer.Option("--key-seed", help="draw the secret key from this seed: reproducible research only, anyone who guesses it rebuilds the key (default: a 256-bit secret from the OS)")]
Lr = Annotated[float, typer.Option("--lr", help="learning rate")]
Batch = Annotated[int, typer.Option("--batch-size", min=1, help="minibatch size")]
Optim = Annotated[str, typer.Option("--optimizer", help="sgd | adam | adagrad | adamax | nadam | rmsprop")]
Momentum = Annotated[float, typer.Option("--momentum", help="SGD/RMSprop momentum")]
Nesterov = Annotated[bool, typer.Option("--nesterov/--no-nesterov", help="Nesterov momentum (SGD)")]
Wd = Annotated[float, typer.Option("--weight-decay", help="L2 weight decay")]
Milestones = Annotated[str, typer.Option("--milestones", help="comma-separated epochs where lr *= gamma, e.g. 60,120,160")]
Gamma = Annotated[float, typer.Option("--gamma", help="learning-rate factor at each milestone")]
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="directory with the dataset files")]
Force = Annotated[bool, typer.Option("--force", help="overwrite existing output files")]
OutDir = Annotated[Path, typer.Option("--out", "-o", help="output directory")]
ModelArgs = Annotated[list[str] | None, typer.Option("--model-arg", help="architecture argument k=v (repeatable), e.g. widen=1")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")]
Device = Annotated[str, typer.Option("--device", help="torch device to train on: cpu, cuda, cuda:1, mps (checked before any work)")]
# the anti-piracy inputs (`netmark evaluate MODEL`, `netmark piracy ...`)
TransformKey = Annotated[Path | None, typer.Option("--transform", "-t", help="the owner's secret transform key")]
Split = Annotated[str, typer.Option("--split", help="train | test")]
Limit = Annotated[int | None, typer.Option("--limit", min=1, help="score on the first N images only")]
AsJson = Annotated[bool, typer.Option("--json", help="print the result as JSON")]


# ---------------------------------------------------------------- options -> library objects
def parse_kv(items: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"expected k=v, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def train_config(epochs: int, lr: float, batch_size: int, optimizer: str, momentum: float, nesterov: bool,
                 weight_decay: float, milestones: str, gamma: float, seed: int, quiet: bool,
                 device: str = "cpu") -> Any:
    from netmark.training import TrainConfig

    try:
        ms = tuple(int(m) for m in milestones.split(",") if m.strip())
    except ValueError:
        raise ConfigError(f"--milestones must be comma-separated integers, got {milestones!r}") from None
    return TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer,  # type: ignore[arg-type]
                       momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, milestones=ms,
                       gamma=gamma, seed=seed, progress=not quiet, device=device)


def outputs(out: Path, names: list[str], force: bool) -> list[Path]:
    """The output files in directory ``out``: refused up front when one exists (without ``--force``) or when the
    directory cannot be written; without ``--out`` on the command line, says on stderr where they go."""
    from netmark._util import check_writable

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    paths = [check_writable(out / n, force) for n in names]
    check_dir_writable(out)
    if out_was_defaulted():
        echo(f"no --out given: writing {', '.join(names)} into {out}/ (the default)")
    return paths


def out_file(out: Path, force: bool) -> Path:
    """Refuse an existing ``out`` (without ``--force``) or an unwritable directory for it, before any work."""
    from netmark._util import check_writable

    check_writable(out, force)
    check_dir_writable(out.parent)
    return out


def load_data(name: str, data_dir: Path | None, train_size: int | None) -> tuple[Any, Any]:
    from netmark.data import load

    return (load(name, "train", data_dir=data_dir, train_size=train_size),
            load(name, "test", data_dir=data_dir))


def make_method(name: str, flags: dict[str, Any], extra: list[str] | None) -> Any:
    """Instantiate method ``name`` from the CLI flags its config has (unset flags keep the
    method's own paper defaults) plus ``--method-arg k=v`` extras."""
    import dataclasses

    from netmark.methods import get_method

    cls = get_method(name)
    fields = {f.name for f in dataclasses.fields(cls.config_cls)}
    unsupported = sorted(k for k, v in flags.items() if v is not None and k not in fields)
    if unsupported:
        raise ConfigError(f"method {name!r} has no option {', '.join('--' + k.replace('_', '-') for k in unsupported)}")
    opts = {k: v for k, v in flags.items() if v is not None}
    return cls(cls.config_cls.from_dict({**opts, **parse_kv(extra)}))


def fresh_model(name: str, data: Any, seed: int, model_args: list[str] | None) -> Any:
    from netmark._util import seeded
    from netmark.models import build

    c, h, _ = data.shape
    kv = parse_kv(model_args)
    derived = sorted(set(kv) & {"in_channels", "image_size", "num_classes"})
    if derived:
        raise ConfigError(f"--model-arg {', '.join(derived)}: set by the dataset ({data.name}), not an option here")
    with seeded(seed):
        return build(name, in_channels=c, image_size=h, num_classes=data.num_classes, **kv)


def load_model_file(path: Path, key_path: Path | None = None) -> Any:
    """The model in ``path`` (its architecture from ``key_path`` when given: a plain ``.pt`` state_dict)."""
    from netmark.io import load_model
    from netmark.keys import WatermarkKey

    arch = WatermarkKey.load(key_path).arch if key_path else None
    return load_model(path, arch=arch)


def echo(msg: str, quiet: bool = False) -> None:
    """``msg`` on stderr (progress and notes), unless ``quiet``."""
    if not quiet:
        typer.echo(msg, err=True)


def progress(quiet: bool) -> Callable[[str], None] | None:
    """The progress callback of a long command: its lines on stderr (none with ``--quiet``)."""
    return None if quiet else echo


@contextlib.contextmanager
def interruptible(note: str) -> Iterator[None]:
    """Ctrl-C, or a scheduler's SIGTERM (worker processes included), ends the command with ``interrupted: note``
    on stderr and exit code 130."""
    from netmark._util import sigterm_interrupts

    try:
        with sigterm_interrupts():
            yield
    except KeyboardInterrupt:
        echo(f"interrupted: {note}")
        raise typer.Exit(130) from None


def write_json(path: Path, obj: Any, force: bool) -> None:
    from netmark._util import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n", force=force)


# ---------------------------------------------------------------- anti-piracy inputs (evaluate MODEL, piracy ...)
def load_transform(path: Path) -> Any:
    from netmark.access import transform_from_key
    from netmark.keys import WatermarkKey

    return transform_from_key(WatermarkKey.load(path))


def protected_model(path: Path) -> tuple[Any, str]:
    """The model of ``path`` and the input range it was protected on (``unit`` unless its metadata says)."""
    from netmark.access.inputs import RANGES
    from netmark.io import load_model, read_metadata

    net = load_model(path)
    rng = str(read_metadata(path).get("extra", {}).get("input_range", "unit")) if path.suffix == ".safetensors" \
        else "unit"
    if rng not in RANGES:
        raise ConfigError(f"{path} records an unknown input range {rng!r}")
    return net, rng


def data_split(dataset: str, split: str, data_dir: Path | None, limit: int | None, input_range: str = "unit") -> Any:
    from netmark.access.inputs import to_range
    from netmark.data import load

    if split not in ("train", "test"):
        raise ConfigError(f"--split must be train or test, got {split!r}")
    data = load(dataset, "train" if split == "train" else "test", data_dir=data_dir)  # checked just above
    if limit is not None and limit < len(data):
        data = data.subset(range(limit))
    return to_range(data, input_range)


def accuracy(model: Any, data: Any, transform: Any = None) -> float:
    """``evaluate`` with a clear error when the model or the transform does not fit the data."""
    from netmark.training import evaluate

    if transform is not None and tuple(transform.shape) != tuple(data.shape):
        raise ConfigError(f"the transform key is for inputs of shape {list(transform.shape)}, the dataset has "
                          f"{list(data.shape)}")
    try:
        return float(evaluate(model, data, transform=transform)["accuracy"])
    except RuntimeError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"the model does not accept {data.name} inputs of shape {list(data.shape)} ({first})") from None
