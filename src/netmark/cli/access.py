"""``netmark protect``, ``netmark evaluate`` and ``netmark piracy ...``: the anti-piracy commands
(Chen & Wu 2018; US patent 11,687,623 B2, see :mod:`netmark.access`), registered on :data:`netmark.cli.app`.

Exit codes as everywhere: 0 success, 2 bad input (one line on stderr, nothing written).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from netmark.cli import (
    Batch,
    DataDir,
    Dataset_,
    Device,
    Epochs,
    Force,
    Lr,
    Model,
    ModelArgs,
    Momentum,
    Quiet,
    Seed,
    TrainSize,
    Wd,
    _data,
    _echo,
    _fresh_model,
    _outputs,
    _train_config,
    _write_json,
    app,
    handles_errors,
)
from netmark.errors import ConfigError

piracy_app = typer.Typer(help="Attack an anti-piracy model the way a thief would (Chen & Wu §4): forge the "
                              "secret transform, report the stolen model's accuracy.", no_args_is_help=True)
app.add_typer(piracy_app, name="piracy")

TransformKey = Annotated[Path | None, typer.Option("--transform", "-t", help="the owner's secret transform key")]
Split = Annotated[str, typer.Option("--split", help="train | test")]
Limit = Annotated[int | None, typer.Option("--limit", min=1, help="score on the first N images only")]
AsJson = Annotated[bool, typer.Option("--json", help="print the result as JSON")]


def _transform(path: Path) -> Any:
    from netmark.access import transform_from_key
    from netmark.keys import WatermarkKey

    return transform_from_key(WatermarkKey.load(path))


def _model(path: Path) -> tuple[Any, str]:
    """The model of ``path`` and the input range it was protected on (``unit`` unless its metadata says)."""
    from netmark.access.inputs import RANGES
    from netmark.io import load_model, read_metadata

    net = load_model(path)
    rng = str(read_metadata(path).get("extra", {}).get("input_range", "unit")) if path.suffix == ".safetensors" \
        else "unit"
    if rng not in RANGES:
        raise ConfigError(f"{path} records an unknown input range {rng!r}")
    return net, rng


def _split(dataset: str, split: str, data_dir: Path | None, limit: int | None, input_range: str = "unit") -> Any:
    from netmark.access.inputs import to_range
    from netmark.data import load

    if split not in ("train", "test"):
        raise ConfigError(f"--split must be train or test, got {split!r}")
    data = load(dataset, split, data_dir=data_dir)
    if limit is not None and limit < len(data):
        data = data.subset(range(limit))
    return to_range(data, input_range)


def _accuracy(model: Any, data: Any, transform: Any = None) -> float:
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


@app.command()
@handles_errors
def protect(transform: Annotated[str, typer.Option("--transform", help="fixed | learned | generator")] = "generator",
            model: Model = "simple-cnn", dataset: Dataset_ = "digits", epochs: Epochs = 10,
            out: Annotated[Path, typer.Option("--out", "-o", help="output directory")] = Path("runs/protected"),
            sigma: Annotated[float, typer.Option("--sigma", help="fixed/learned: amplitude of the bipolar perturbation")] = 0.1,
            p: Annotated[float, typer.Option("--p", help="fixed/learned: probability of +sigma (and of -sigma)")] = 0.2,
            hidden: Annotated[int, typer.Option("--hidden", min=1, help="generator: intermediate channels (paper 16 grey, 64 colour)")] = 16,
            alpha: Annotated[float, typer.Option("--alpha", help="weight of the loss on processed inputs")] = 1.0,
            beta: Annotated[float, typer.Option("--beta", help="weight of the correct-class probability on raw inputs")] = 1.0,
            distortion: Annotated[float, typer.Option("--distortion", help="gamma of Eq. 3: weight of ||x_p - x_r||^2")] = 0.01,
            transform_seed: Annotated[int | None, typer.Option("--transform-seed", help="seed of the secret transform (default: --seed)")] = None,
            train_size: TrainSize = None, seed: Seed = 0, lr: Lr = 0.1, batch_size: Batch = 128,
            momentum: Momentum = 0.9, weight_decay: Wd = 5e-4,
            milestones: Annotated[str | None, typer.Option("--milestones", help="epochs where lr /= 10 (default: each quarter of training, the paper's schedule)")] = None,
            model_arg: ModelArgs = None, data_dir: DataDir = None, force: Force = False, quiet: Quiet = False,
            device: Device = "cpu") -> None:
    """Train a model that works only through a secret input transform (Chen & Wu 2018) ->
    OUT/model.safetensors (release), OUT/transform.key (secret), OUT/report.json."""
    from netmark.access import ProtectConfig, TransformConfig, access_accuracy, transform_key
    from netmark.access import protect as run_protect
    from netmark.access.inputs import paper_range, to_range
    from netmark.experiments.chen_wu.spec import quarter_schedule
    from netmark.io import save_model

    model_path, key_path, report_path = _outputs(out, ["model.safetensors", "transform.key", "report.json"], force)
    cfg = ProtectConfig(TransformConfig(transform, sigma=sigma, p=p, hidden=hidden,  # type: ignore[arg-type]
                                        seed=seed if transform_seed is None else transform_seed),
                        alpha=alpha, beta=beta, gamma=distortion)
    ms = milestones if milestones is not None else ",".join(str(m) for m in quarter_schedule(epochs).milestones)
    tcfg = _train_config(epochs, lr, batch_size, "sgd", momentum, False, weight_decay, ms, 0.1, seed, quiet, device)
    tr, te = _data(dataset, data_dir, train_size)
    rng = paper_range(tr.shape[0])  # §3.2: grey in [0, 1], colour in [-1, 1]
    tr, te = to_range(tr, rng), to_range(te, rng)
    net = _fresh_model(model, tr, seed, model_arg)
    _echo(f"protecting {model} with a {transform} transform on {dataset} ({len(tr)} images, {epochs} epochs)", quiet)
    res = run_protect(net, tr, cfg, tcfg, eval_data=te)
    res.model.cpu(), res.transform.cpu()  # trained on --device; measured and saved from the CPU
    acc = access_accuracy(res.model, res.transform, te)
    key = transform_key(res.transform, dataset=dataset, model=model, input_range=rng)
    key.save(key_path, force=force)
    save_model(res.model, model_path, extra={"dataset": dataset, "protected": "chen-wu", "input_range": rng},
               force=force)
    _write_json(report_path, {"command": "protect", "model": model, "dataset": dataset, "train_size": len(tr),
                              "protect": cfg.to_dict(), "train": tcfg.to_dict(), **acc,
                              "transform_fingerprint": key.fingerprint, "train_seconds": res.history.seconds,
                              "history": res.history.history}, force)
    typer.echo(f"authorized accuracy {acc['authorized']:.4f}, unauthorized (raw) {acc['unauthorized']:.4f}; wrote "
               f"{model_path} and the secret {key_path} (keep it private; never ship it with the model)")


@app.command()
@handles_errors
def evaluate(model: Annotated[Path | None, typer.Argument(help="model file (.safetensors): its test accuracy, raw and through --transform; leave it out to compare watermark methods instead (--methods ...)")] = None,
             dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="fashion-mnist | mnist | cifar10 | cifar100 | digits (MODEL: digits; comparison: the preset's)")] = None,
             transform: TransformKey = None, split: Split = "test", limit: Limit = None,
             data_dir: DataDir = None, as_json: AsJson = False,
             methods: Annotated[str | None, typer.Option("--methods", help="comparison: comma-separated methods (default: every registered one)")] = None,
             preset: Annotated[str, typer.Option("--preset", help="comparison: full | quick (Fashion-MNIST MLP) | tiny (digits, seconds)")] = "quick",
             arch: Annotated[str | None, typer.Option("--model", help="comparison: architecture (default: the preset's)")] = None,
             out: Annotated[Path, typer.Option("--out", "-o", help="comparison: output directory")] = Path("reports/evaluation"),
             cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="comparison: trained runs and finished cells (default OUT/cache; a rerun resumes; holds keys: keep it private)")] = None,
             executor: Annotated[str, typer.Option("--executor", help="comparison: local (process pool) | serial | ray (Ray tasks: the cluster at $RAY_ADDRESS, else a local Ray instance of --jobs CPUs; pip install 'netmark\\[ray]')")] = "local",
             jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="comparison: worker processes (ray: CPUs of the local instance)")] = 2,
             max_drop: Annotated[float | None, typer.Option("--max-accuracy-drop", help="comparison: an attack removes a watermark only if the attacked model's task accuracy stays within this many percentage points of the marked model's (else: the attack destroyed the model) [default: 5, Lukas et al. S&P 2022]")] = None,
             force: Force = False, quiet: Quiet = False) -> None:
    """Test accuracy of MODEL: unauthorized (raw inputs) and, with --transform, authorized (through it). Without
    MODEL: compare watermark methods side by side (fidelity, capacity, overhead, false positives, every attack swept
    over its strength) -> OUT/results.json, README.md, index.html, PNGs."""
    if model is None:
        if transform is not None:
            raise ConfigError("--transform needs a MODEL (the comparison of methods takes none)")
        _compare(methods, preset, arch, dataset, out, cache_dir, executor, jobs, force, quiet, max_drop)
        return
    if methods is not None or arch is not None:
        raise ConfigError("give either a MODEL (its accuracy) or --methods/--model (a comparison of methods), not both")
    if max_drop is not None:
        raise ConfigError("--max-accuracy-drop applies to the comparison of methods (no MODEL)")
    dataset = dataset or "digits"
    g = _transform(transform) if transform is not None else None
    net, rng = _model(model)
    data = _split(dataset, split, data_dir, limit, rng)
    out_d: dict[str, Any] = {"model": str(model), "dataset": dataset, "split": split, "images": len(data),
                             "unauthorized": _accuracy(net, data)}
    if g is not None:
        out_d["authorized"] = _accuracy(net, data, g)
    if as_json:
        typer.echo(json.dumps(out_d))
        return
    msg = f"{dataset} {split} ({len(data)} images): unauthorized (raw) accuracy {out_d['unauthorized']:.4f}"
    if g is not None:
        msg += f", authorized (through {transform}) {out_d['authorized']:.4f}"
    typer.echo(msg)


def _compare(methods: str | None, preset: str, arch: str | None, dataset: str | None, out: Path,
             cache_dir: Path | None, executor: str, jobs: int, force: bool, quiet: bool,
             max_drop: float | None = None) -> None:
    """``netmark evaluate`` without a model: :func:`netmark.evaluation.evaluate`, then its report."""
    from netmark._util import sigterm_interrupts
    from netmark.evaluation import evaluate as run_evaluation
    from netmark.evaluation import preset as make_preset
    from netmark.evaluation.report import render_evaluation
    from netmark.evaluation.runner import cache_dir_of

    names = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
    overrides = {k: v for k, v in (("model", arch), ("dataset", dataset), ("max_accuracy_drop", max_drop))
                 if v is not None}
    config = make_preset(preset, methods=names, **overrides)
    try:
        with sigterm_interrupts():
            run_evaluation(config, out, cache_dir=cache_dir, executor=executor, jobs=jobs, force=force,
                           progress=None if quiet else (lambda m: _echo(m)))
    except KeyboardInterrupt:
        _echo(f"interrupted: the finished cells are cached in {cache_dir_of(out, cache_dir)}; run the same command "
              "again to resume")
        raise typer.Exit(130) from None
    page = render_evaluation(out / "results.json", force=True)  # beside the results it was made from
    typer.echo(f"wrote {out / 'results.json'}, {page} and the README and figures beside it")


def _check_out(out: Path | None, force: bool) -> None:
    """Refuse an existing ``--out`` before any work (without ``--force``)."""
    if out is not None:
        _outputs(out.parent, [out.name], force)


def _report(res: Any, as_json: bool, out: Path | None, force: bool) -> None:
    d = res.to_dict()
    if out is not None:
        _write_json(out, d, force)
    if as_json:
        typer.echo(json.dumps(d))
    else:
        typer.echo(f"{res.attack}: {len(res.accuracies)} trial(s), stolen model's accuracy mean {res.mean:.4f}, "
                   f"best {res.best:.4f}")


PiracyOut = Annotated[Path | None, typer.Option("--out", "-o", help="also write the result as JSON here")]


@piracy_app.command("direct")
@handles_errors
def piracy_direct(model: Annotated[Path, typer.Argument(help="the stolen model file")], dataset: Dataset_ = "digits",
                  split: Split = "test", limit: Limit = None, data_dir: DataDir = None, as_json: AsJson = False,
                  out: PiracyOut = None, force: Force = False) -> None:
    """Direct piracy: raw inputs into the stolen model."""
    from netmark.access.piracy import PiracyResult

    _check_out(out, force)
    net, rng = _model(model)
    data = _split(dataset, split, data_dir, limit, rng)
    _report(PiracyResult("direct", [_accuracy(net, data)]), as_json, out, force)


@piracy_app.command("input-only")
@handles_errors
def piracy_input_only(model: Annotated[Path, typer.Argument(help="the stolen model file")],
                      dataset: Dataset_ = "digits", trials: Annotated[int, typer.Option("--trials", min=1)] = 100,
                      sigma: Annotated[float, typer.Option("--sigma", help="the Fixed scheme's amplitude (known)")] = 0.1,
                      p: Annotated[float, typer.Option("--p", help="the Fixed scheme's probability (known)")] = 0.2,
                      seed: Seed = 0, split: Split = "test", limit: Limit = None, data_dir: DataDir = None,
                      as_json: AsJson = False, out: PiracyOut = None, force: Force = False) -> None:
    """Input-only attack: the thief's own universal bipolar perturbations (mean and best of --trials)."""
    from netmark.access.piracy import InputOnlyConfig, input_only_attack

    _check_out(out, force)
    cfg = InputOnlyConfig(trials=trials, sigma=sigma, p=p, seed=seed)
    net, rng = _model(model)
    data = _split(dataset, split, data_dir, limit, rng)
    _accuracy(net, data)  # a clear error if the model does not fit the data
    _report(input_only_attack(net, data, cfg), as_json, out, force)


@piracy_app.command("pair")
@handles_errors
def piracy_pair(model: Annotated[Path, typer.Argument(help="the stolen model file")],
                transform: Annotated[Path, typer.Option("--transform", "-t", help="the owner's generator key (stands in for the wiretapped module that yields the pairs)")],
                dataset: Dataset_ = "digits",
                fraction: Annotated[float, typer.Option("--fraction", help="share of the training set's (raw, processed) pairs")] = 1.0,
                trials: Annotated[int, typer.Option("--trials", min=1)] = 10,
                epochs: Annotated[int, typer.Option("--epochs", min=1, help="epochs of each least-squares fit")] = 5,
                seed: Seed = 0, limit: Limit = None, data_dir: DataDir = None, as_json: AsJson = False,
                out: PiracyOut = None, force: Force = False) -> None:
    """Pair attack: fit a copy of the Generator to (raw, processed) pairs, score the stolen model through it."""
    from netmark.access.piracy import PairAttackConfig, pair_attack

    _check_out(out, force)
    cfg = PairAttackConfig(fraction=fraction, trials=trials, epochs=epochs, seed=seed)
    g = _transform(transform)
    net, rng = _model(model)
    train_data = _split(dataset, "train", data_dir, None, rng)
    test = _split(dataset, "test", data_dir, limit, rng)
    _accuracy(net, test, g)
    _report(pair_attack(net, g, train_data, test, cfg), as_json, out, force)


@piracy_app.command("one-pair")
@handles_errors
def piracy_one_pair(model: Annotated[Path, typer.Argument(help="the stolen model file")],
                    transform: Annotated[Path, typer.Option("--transform", "-t", help="the owner's transform key (yields the one pair)")],
                    dataset: Dataset_ = "digits", index: Annotated[int, typer.Option("--index", min=0, help="which training image is the pair")] = 0,
                    limit: Limit = None, data_dir: DataDir = None, as_json: AsJson = False, out: PiracyOut = None,
                    force: Force = False) -> None:
    """One-pair attack: delta = processed - raw of one image, added to every input (breaks Fixed/Learned)."""
    from netmark.access.piracy import one_pair_attack

    _check_out(out, force)
    g = _transform(transform)
    net, rng = _model(model)
    train_data = _split(dataset, "train", data_dir, None, rng)
    if index >= len(train_data):
        raise ConfigError(f"--index {index} is past the {len(train_data)} training images")
    test = _split(dataset, "test", data_dir, limit, rng)
    _accuracy(net, test, g)
    _report(one_pair_attack(net, g, train_data, test, index=index), as_json, out, force)
