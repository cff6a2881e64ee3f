"""``netmark`` command line: train, embed, attack, verify, serve, reproduce, report, demo.

Exit codes: 0 success (``verify``: watermark detected), 1 ``verify``: not detected,
2 bad input (one line on stderr, nothing written; with ``--json`` also ``{"error": ..., "exit_code": 2}`` on
stdout). A bad option value caught by the option parser ends the same way (:mod:`netmark.cli_util`).
3 ``embed``: the owner's key does not verify on the trained model or its accuracy is at chance
(:mod:`netmark.methods.check`); one line on stderr, nothing written (``--allow-undetected``: written, exit 0).
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from netmark.cli_util import OneLineErrors, enable_verbose, error_line, version_text
from netmark.errors import ConfigError, NetmarkError

app = typer.Typer(
    help="netmark: embed ownership watermarks into PyTorch models, attack them, and verify them "
    "with a p-value. Exit codes: 0 ok / detected, 1 not detected (verify), 2 bad input, "
    "3 embed: the trained model fails its own verification or is at chance (nothing written).",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, cls=OneLineErrors,
)
attack_app = typer.Typer(help="Attack a model the way a thief would (model in -> new model file out).",
                         no_args_is_help=True)
app.add_typer(attack_app, name="attack")

F = TypeVar("F", bound=Callable[..., Any])


def _fail(msg: str, code: int = 2, as_json: bool = False) -> typer.Exit:
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
            raise _fail(str(e), as_json=as_json) from None
        except (OSError, ValueError) as e:
            raise _fail(f"{type(e).__name__}: {e}", as_json=as_json) from None

    return wrapper  # type: ignore[return-value]


def _show_version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit(0)


@app.callback()
def _global_options(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_show_version,
                                          help="print netmark's version (and torch's, Python's) and exit")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log progress on stderr, one line per training "
                                          "epoch, also when stderr is not a terminal (e.g. `netmark -v embed ...`)")] = False,
) -> None:
    if verbose:
        enable_verbose(ctx)


# ---------------------------------------------------------------- shared options
Model = Annotated[str, typer.Option("--model", "-m", help="architecture name (see `netmark models`)")]
Dataset_ = Annotated[str, typer.Option("--dataset", "-d", help="fashion-mnist | mnist | cifar10 | cifar100 | digits")]
Epochs = Annotated[int, typer.Option("--epochs", "-e", min=1, help="training epochs")]
TrainSize = Annotated[int | None, typer.Option("--train-size", min=1, help="use a seeded subset of N training images")]
Seed = Annotated[int, typer.Option("--seed", help="seed for initialisation, shuffling and keys")]
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
ModelArgs = Annotated[list[str] | None, typer.Option("--model-arg", help="architecture argument k=v (repeatable), e.g. widen=1")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")]
Device = Annotated[str, typer.Option("--device", help="torch device to train on: cpu, cuda, cuda:1, mps (checked before any work)")]


def _parse_kv(items: list[str] | None) -> dict[str, Any]:
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


def _train_config(epochs: int, lr: float, batch_size: int, optimizer: str, momentum: float, nesterov: bool,
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


def _outputs(out: Path, names: list[str], force: bool) -> list[Path]:
    """The output files in directory ``out``: refused up front when one exists (without ``--force``) or when the
    directory cannot be written; without ``--out`` on the command line, says on stderr where they go."""
    from netmark._util import check_writable
    from netmark.cli_util import check_dir_writable, out_was_defaulted

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    paths = [check_writable(out / n, force) for n in names]
    check_dir_writable(out)
    if out_was_defaulted("out"):
        _echo(f"no --out given: writing {', '.join(names)} into {out}/ (the default)")
    return paths


def _data(name: str, data_dir: Path | None, train_size: int | None) -> tuple[Any, Any]:
    from netmark.data import load

    return (load(name, "train", data_dir=data_dir, train_size=train_size),
            load(name, "test", data_dir=data_dir))


def _method(name: str, flags: dict[str, Any], extra: list[str] | None) -> Any:
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
    return cls(cls.config_cls.from_dict({**opts, **_parse_kv(extra)}))


def _match_text(res: Any) -> str:
    """``64/64 bits match (BER 0.0000)`` for bit watermarks, ``Pearson r 0.9990 over 1800 values`` otherwise."""
    from netmark.methods.check import match_text

    return match_text(res, with_ber=True)


def _fresh_model(name: str, data: Any, seed: int, model_args: list[str] | None) -> Any:
    from netmark._util import seeded
    from netmark.models import build

    c, h, _ = data.shape
    kv = _parse_kv(model_args)
    derived = sorted(set(kv) & {"in_channels", "image_size", "num_classes"})
    if derived:
        raise ConfigError(f"--model-arg {', '.join(derived)}: set by the dataset ({data.name}), not an option here")
    with seeded(seed):
        return build(name, in_channels=c, image_size=h, num_classes=data.num_classes, **kv)


def _load(path: Path, key_path: Path | None = None) -> Any:
    from netmark.io import load_model
    from netmark.keys import WatermarkKey

    arch = WatermarkKey.load(key_path).arch if key_path else None
    return load_model(path, arch=arch)


def _echo(msg: str, quiet: bool = False) -> None:
    if not quiet:
        typer.echo(msg, err=True)


def _write_json(path: Path, obj: Any, force: bool) -> None:
    from netmark._util import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n", force=force)


# ---------------------------------------------------------------- commands
@app.command()
@handles_errors
def train(model: Model = "lenet5", dataset: Dataset_ = "digits", epochs: Epochs = 10,
          out: Annotated[Path, typer.Option("--out", "-o", help="output directory")] = Path("runs/plain"),
          train_size: TrainSize = None, seed: Seed = 0, lr: Lr = 0.01, batch_size: Batch = 64,
          optimizer: Optim = "sgd", momentum: Momentum = 0.9, nesterov: Nesterov = False, weight_decay: Wd = 0.0,
          milestones: Milestones = "", gamma: Gamma = 0.1, model_arg: ModelArgs = None,
          data_dir: DataDir = None, force: Force = False, quiet: Quiet = False, device: Device = "cpu") -> None:
    """Train a model without a watermark -> OUT/model.safetensors, OUT/report.json."""
    from netmark.io import save_model
    from netmark.training import train as run_train

    model_path, report_path = _outputs(out, ["model.safetensors", "report.json"], force)
    cfg = _train_config(epochs, lr, batch_size, optimizer, momentum, nesterov, weight_decay, milestones, gamma,
                        seed, quiet, device)
    tr, te = _data(dataset, data_dir, train_size)
    net = _fresh_model(model, tr, seed, model_arg)
    _echo(f"training {model} on {dataset} ({len(tr)} images, {epochs} epochs, seed {seed})", quiet)
    run = run_train(net, tr, cfg, eval_data=te)
    save_model(net, model_path, extra={"dataset": dataset}, force=force)
    acc = run.final.get("test_accuracy")
    _write_json(report_path, {"command": "train", "model": model, "dataset": dataset, "train_size": len(tr),
                              "train": cfg.to_dict(), "test_accuracy": acc, "train_seconds": run.seconds,
                              "history": run.history}, force)
    typer.echo(f"test accuracy {acc:.4f}; wrote {model_path}")


@app.command()
@handles_errors
def embed(method: Annotated[str, typer.Option("--method", help="watermarking scheme")] = "uchida",
          model: Model = "lenet5", dataset: Dataset_ = "digits", epochs: Epochs = 10,
          out: Annotated[Path, typer.Option("--out", "-o", help="output directory")] = Path("runs/owner"),
          bits: Annotated[int | None, typer.Option("--bits", min=1, help="message length (default: the method's, uchida 256)")] = None,
          layer: Annotated[str | None, typer.Option("--layer", help="host layer (default: first layer with M >= bits)")] = None,
          key_type: Annotated[str | None, typer.Option("--key-type", help="uchida X: random | direct | diff")] = None,
          strength: Annotated[float | None, typer.Option("--strength", help="regularizer weight lambda (default: the method's paper value)")] = None,
          variant: Annotated[str | None, typer.Option("--variant", help="method variant, e.g. wang: auto | manu")] = None,
          method_arg: Annotated[list[str] | None, typer.Option("--method-arg", help="extra method option k=v")] = None,
          from_model: Annotated[Path | None, typer.Option("--from", help="start from this trained model (fine-tune-to-embed)")] = None,
          distill: Annotated[bool, typer.Option("--distill", help="with --from: no labels, the --from model's soft predictions are the targets (distill-to-embed)")] = False,
          payload: Annotated[Path | None, typer.Option("--payload", help="tartaglione: an image (PNG...) whose RGB pixels are the payload (default: random values)")] = None,
          allow_undetected: Annotated[bool, typer.Option("--allow-undetected", help="write the files even when the owner's key does not verify on the model or its accuracy is at chance (exit 0 and a warning, not exit 3)")] = False,
          train_size: TrainSize = None, seed: Seed = 0, lr: Lr = 0.01, batch_size: Batch = 64,
          optimizer: Optim = "sgd", momentum: Momentum = 0.9, nesterov: Nesterov = False, weight_decay: Wd = 0.0,
          milestones: Milestones = "", gamma: Gamma = 0.1, model_arg: ModelArgs = None,
          data_dir: DataDir = None, force: Force = False, quiet: Quiet = False, device: Device = "cpu") -> None:
    """Train while embedding a watermark -> OUT/model.safetensors (release), OUT/owner.key (secret), OUT/report.json.

    Exit 3, nothing written: the owner's key does not verify on the trained model, or its test accuracy is at chance
    (netmark.methods.check); one line says what was reached and what to change. --allow-undetected writes anyway.
    """
    import copy

    from netmark.io import save_model

    t0 = time.perf_counter()
    model_path, key_path, report_path = _outputs(out, ["model.safetensors", "owner.key", "report.json"], force)
    if distill and from_model is None:
        raise ConfigError("--distill needs --from MODEL (the teacher)")
    wm = _method(method, {"layer": layer, "bits": bits, "key_type": key_type, "strength": strength,
                          "variant": variant}, method_arg)
    cfg = _train_config(epochs, lr, batch_size, optimizer, momentum, nesterov, weight_decay, milestones, gamma,
                        seed, quiet, device)
    tr, te = _data(dataset, data_dir, train_size)
    if from_model is not None:
        net = _load(from_model)
        situation = "distill-to-embed" if distill else "fine-tune-to-embed"
    else:
        net = _fresh_model(model, tr, seed, model_arg)
        situation = "train-to-embed"
    teacher = copy.deepcopy(net) if distill else None
    _echo(f"{situation}: {method} into {type(net).__name__} on {dataset} ({len(tr)} images, {epochs} epochs)", quiet)
    key = None
    if payload is not None:
        from netmark.methods.tartaglione import Tartaglione, image_payload

        if not isinstance(wm, Tartaglione):
            raise ConfigError(f"--payload is for real-valued schemes (tartaglione), not {method!r}")
        values, shape = image_payload(str(payload))
        key = wm.create_key(net, seed=seed, payload=values, payload_shape=shape)
    net, key, run = wm.embed(net, tr, cfg, seed=seed, eval_data=te, teacher=teacher, key=key, warn=False)
    res, problem = run.check.verification, run.check.problem()
    if problem is not None and not allow_undetected:
        raise _fail(f"{problem} Nothing written (--allow-undetected writes it anyway).", 3)
    key.save(key_path, force=force)
    save_model(net, model_path, extra={"dataset": dataset}, force=force)
    acc = run.final.get("test_accuracy")
    _write_json(report_path, {
        "command": "embed", "situation": situation, "method": method, "method_config": key.config,
        "model": key.arch, "dataset": dataset, "train_size": len(tr), "train": cfg.to_dict(),
        "test_accuracy": acc, "bit_error_rate": res and res.bit_error_rate, "score": res and res.score,
        "p_value": res and res.p_value,
        "key_fingerprint": key.fingerprint, "check": run.check.to_dict(), "train_seconds": run.seconds,
        "total_seconds": time.perf_counter() - t0, "history": run.history}, force)
    if problem is not None:
        _echo(f"netmark: warning: {problem} Written anyway (--allow-undetected).")
    reached = "key not verifiable" if res is None else f"{_match_text(res)}, p-value {res.p_value:.3g}"
    typer.echo(f"test accuracy {acc:.4f}, {reached}; wrote {model_path} and the secret {key_path} (keep it private)")


@app.command()
@handles_errors
def verify(model: Annotated[str, typer.Argument(help="suspect model (.safetensors, or plain state_dict .pt/.pth), or the http(s):// URL of a prediction server (black-box keys only, see `netmark serve`)")],
           key: Annotated[Path, typer.Option("--key", "-k", help="the owner's secret key file")],
           as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
           alpha: Annotated[float, typer.Option("--alpha", help="significance level (false-positive bound)")] = 1e-6,
           timeout: Annotated[float, typer.Option("--timeout", help="URL: seconds to wait for each answer")] = 30.0,
           ) -> None:
    """Is the key's watermark in MODEL? Exit 0 = detected, 1 = not detected, 2 = bad input.

    MODEL may be an http(s):// URL of a prediction server (black-box keys only): the key's triggers are sent to it (wire format: netmark.serve) and only its answers are used, as with a stolen model behind an API.
    """
    from netmark.keys import WatermarkKey

    if not 0 < alpha < 1:
        raise ConfigError(f"--alpha must be in (0, 1), got {alpha}")
    k = WatermarkKey.load(key)
    shown = model
    if "://" in model:
        from netmark.methods import method_from_key
        from netmark.methods.triggerset import TriggerSetMethod
        from netmark.serve import HttpPredictor, is_url, redact_url

        if not is_url(model):
            raise ConfigError(f"only http:// and https:// URLs can be queried, got {redact_url(model)!r}")
        shown = redact_url(model)
        wm = method_from_key(k)
        if not isinstance(wm, TriggerSetMethod):
            raise ConfigError(f"the key's method {k.method!r} is white-box (it reads the model's weights), so it "
                              "cannot be verified through a prediction URL: pass the model file")
        res = wm.verify_query(HttpPredictor(model, timeout=timeout), k, alpha=alpha)
    else:
        from netmark.io import load_model
        from netmark.verify import verify as run_verify

        net = load_model(Path(model), arch=k.arch)
        res = run_verify(net, k, alpha=alpha)
    if as_json:
        typer.echo(json.dumps({**res.to_dict(), "key_fingerprint": k.fingerprint, "model": shown}, default=str))
    else:
        word = "DETECTED" if res.detected else "NOT DETECTED"
        typer.echo(f"{word}: {_match_text(res)}, p-value {res.p_value:.3g} vs alpha {alpha:g} "
                   f"[{res.method}, key {k.fingerprint[:12]}]")
    raise typer.Exit(0 if res.detected else 1)


@app.command()
@handles_errors
def serve(model: Annotated[Path, typer.Argument(help="model file (.safetensors, or plain state_dict .pt/.pth with --key)")],
          host: Annotated[str, typer.Option("--host", help="address to bind (default: this machine only)")] = "127.0.0.1",
          port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="TCP port (0: any free port)")] = 8000,
          key: Annotated[Path | None, typer.Option("--key", "-k", help="take the architecture from this key (plain .pt state_dict)")] = None,
          ) -> None:
    """Serve MODEL's predictions over HTTP (POST /predict, GET /health) until Ctrl-C.

    The wire format is documented in netmark.serve; `netmark verify URL --key KEY` queries such a server. There is no authentication: keep the default loopback --host unless the network is trusted.
    """
    from netmark._util import sigterm_interrupts
    from netmark.serve import is_loopback, make_server

    net = _load(model, key)
    server = make_server(net, host=host, port=port)
    if not is_loopback(host):
        _echo(f"warning: serving on {host}, reachable from the network without authentication")
    typer.echo(f"serving {model} at {server.url} (POST /predict, GET /health); Ctrl-C stops")
    try:
        with sigterm_interrupts():  # SIGTERM stops cleanly too
            server.serve_forever()
    except KeyboardInterrupt:
        _echo("stopped")
    finally:
        server.server_close()


@app.command()
@handles_errors
def reproduce(paper: Annotated[str, typer.Argument(help="which paper: uchida | wang | tartaglione | chen-wu | fkirin (also tartaglione-variants: paper vs official-code embedding)")],
              quick: Annotated[bool, typer.Option("--quick", help="digits + simple-cnn, under a minute")] = False,
              scale: Annotated[str | None, typer.Option("--scale", help="preset: quick | cpu | paper (chen-wu: gpu too; overrides --quick)")] = None,
              out: Annotated[Path | None, typer.Option("--out", "-o", help="output directory (default reports/PAPER[-quick])")] = None,
              cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="keep trained runs here and reuse them (resume; key files inside: keep it private)")] = None,
              jobs: Annotated[int, typer.Option("--jobs", "-j", help="train runs in this many worker processes (needs --cache-dir)")] = 1,
              device: Annotated[str, typer.Option("--device", help="torch device to train and measure on (cuda; chen-wu only)")] = "cpu",
              runs: Annotated[str | None, typer.Option("--runs", help="comma-separated runs of the plan: train only these (and their parents) into --cache-dir and write OUT/runs.json, no report (a big scale in pieces)")] = None,
              data_dir: DataDir = None, force: Force = False, quiet: Quiet = False) -> None:
    """Re-run a paper's tables and figures at CPU scale -> results.json, README.md (paper vs measured), PNGs."""
    import importlib

    from netmark._util import sigterm_interrupts
    from netmark.experiments.report import REPRODUCTIONS

    # "uchida" names the reproduction "uchida2017" (the paper's first author, year optional)
    ids = [k for k in REPRODUCTIONS if paper in (k, k.rstrip("0123456789"))]
    if not ids:
        raise ConfigError(f"unknown reproduction {paper!r}; known: {', '.join(sorted(REPRODUCTIONS))}")
    target = out or Path("reports") / (paper + ("-quick" if quick and scale is None else ""))
    t0 = time.perf_counter()
    module = importlib.import_module(REPRODUCTIONS[ids[0]])
    names = None if runs is None else [r.strip() for r in runs.split(",") if r.strip()]
    if names is not None and cache_dir is None:
        raise ConfigError("--runs trains runs for a later report: give --cache-dir too")
    try:
        with sigterm_interrupts():  # a scheduler's SIGTERM stops it like Ctrl-C: worker processes included
            module.run(target, quick=quick, scale=scale, force=force, data_dir=data_dir, cache_dir=cache_dir,
                       jobs=jobs, device=device, runs=names, progress=None if quiet else (lambda m: _echo(m)))
    except KeyboardInterrupt:
        _echo("interrupted: " + ("nothing was cached (no --cache-dir)" if cache_dir is None else
                                 f"the finished runs are cached in {cache_dir}; run the same command again to resume"))
        raise typer.Exit(130) from None
    if names is not None:
        typer.echo(f"wrote {target}/runs.json ({time.perf_counter() - t0:.0f} s); the runs are in {cache_dir}")
        return
    typer.echo(f"wrote {target}/results.json, README.md and plots ({time.perf_counter() - t0:.0f} s)")


@app.command()
@handles_errors
def report(results: Annotated[Path, typer.Argument(help="a reproduction's results.json (or its directory)")],
           out: Annotated[Path | None, typer.Option("--out", "-o", help="output directory (default: beside results.json)")] = None,
           force: Force = False) -> None:
    """Re-render a reproduction's or an evaluation's report (markdown, PNG plots; evaluations also a
    self-contained HTML page) from its results.json alone."""
    from netmark.experiments.report import render

    path = results / "results.json" if results.is_dir() else results
    for p in render(path, out, force=force):
        typer.echo(f"wrote {p}")


@app.command()
@handles_errors
def models() -> None:
    """List the registered architectures."""
    from netmark.models import MODELS

    for name in sorted(MODELS):
        spec = MODELS[name]
        typer.echo(f"{name:12s} {spec.summary}  [host layer: {spec.host_layer}]")


@app.command()
@handles_errors
def demo(epochs: Annotated[int, typer.Option("--epochs", min=1)] = 30, quiet: Quiet = False) -> None:
    """Train plain vs watermarked on digits, attack, verify everything; prints a table (< 2 min)."""
    from netmark.experiments.demo import BITS, LAYER, MODEL, run_demo

    t0 = time.perf_counter()
    rows = run_demo(epochs=epochs, progress=None if quiet else (lambda m: _echo(m)))
    typer.echo(f"\nUchida watermark, {BITS} bits in {MODEL}.{LAYER}, digits (1437 train / 360 test), "
               f"{epochs} epochs; detected = p-value <= 1e-6")
    head = f"{'model':30s} {'test acc':>8s} {'matched':>9s} {'BER':>6s} {'p-value':>9s} {'detected':>9s}"
    typer.echo(head + "\n" + "-" * len(head))
    for r in rows:
        res = r.result
        typer.echo(f"{r.name:30s} {r.accuracy:8.3f} {res.matched_bits:>4d}/{res.total_bits:<4d} "
                   f"{res.bit_error_rate:6.3f} {res.p_value:9.2g} {'yes' if res.detected else 'no':>9s}")
    typer.echo(f"({time.perf_counter() - t0:.0f} s)")
    wrong_fp = [r.name for r in rows if not r.owner_expects and r.result.detected]
    if wrong_fp:
        raise _fail(f"false positive on {', '.join(wrong_fp)}", 1)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("netmark: interrupted", err=True)
        sys.exit(130)


# the attack commands and the anti-piracy ones (protect, evaluate, piracy ...) live in their own modules and
# register on `attack_app` / `app`
from netmark import cli_access, cli_attack  # noqa: E402,F401

if __name__ == "__main__":
    main()
