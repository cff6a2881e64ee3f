"""``netmark protect`` and ``netmark piracy ...``: the anti-piracy commands (Chen & Wu 2018; US patent 11,687,623 B2,
see :mod:`netmark.access`). ``netmark evaluate MODEL`` (a protected model's accuracy) lives with the studies
(:mod:`netmark.cli.study`).

Exit codes as everywhere: 0 success, 2 bad input (one line on stderr, nothing written).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from netmark.cli import common as opt
from netmark.errors import ConfigError

piracy_app = typer.Typer(help="Attack an anti-piracy model the way a thief would (Chen & Wu §4): forge the "
                              "secret transform, report the stolen model's accuracy.", no_args_is_help=True)


@opt.handles_errors
def protect(transform: Annotated[str, typer.Option("--transform", help="fixed | learned | generator")] = "generator",
            model: opt.Model = "simple-cnn", dataset: opt.Dataset_ = "digits", epochs: opt.Epochs = 10,
            out: opt.OutDir = Path("runs/protected"),
            sigma: Annotated[float, typer.Option("--sigma", help="fixed/learned: amplitude of the bipolar perturbation")] = 0.1,
            p: Annotated[float, typer.Option("--p", help="fixed/learned: probability of +sigma (and of -sigma)")] = 0.2,
            hidden: Annotated[int, typer.Option("--hidden", min=1, help="generator: intermediate channels (paper 16 grey, 64 colour)")] = 16,
            alpha: Annotated[float, typer.Option("--alpha", help="weight of the loss on processed inputs")] = 1.0,
            beta: Annotated[float, typer.Option("--beta", help="weight of the correct-class probability on raw inputs")] = 1.0,
            distortion: Annotated[float, typer.Option("--distortion", help="gamma of Eq. 3: weight of ||x_p - x_r||^2")] = 0.01,
            transform_seed: Annotated[int | None, typer.Option("--transform-seed", help="draw the secret transform from this seed: reproducible research only, anyone who guesses it rebuilds the transform's start (default: a 256-bit secret from the OS)")] = None,
            train_size: opt.TrainSize = None, seed: opt.Seed = 0, lr: opt.Lr = 0.1, batch_size: opt.Batch = 128,
            momentum: opt.Momentum = 0.9, weight_decay: opt.Wd = 5e-4,
            milestones: Annotated[str | None, typer.Option("--milestones", help="epochs where lr /= 10 (default: each quarter of training, the paper's schedule)")] = None,
            model_arg: opt.ModelArgs = None, data_dir: opt.DataDir = None, force: opt.Force = False,
            quiet: opt.Quiet = False, device: opt.Device = "cpu") -> None:
    """Train a model that works only through a secret input transform (Chen & Wu 2018) ->
    OUT/model.safetensors (release), OUT/transform.key (secret), OUT/report.json."""
    from netmark.access import ProtectConfig, TransformConfig, access_accuracy, transform_key
    from netmark.access import protect as run_protect
    from netmark.access.inputs import paper_range, to_range
    from netmark.experiments.chen_wu.spec import quarter_schedule
    from netmark.io import save_model

    model_path, key_path, report_path = opt.outputs(out, ["model.safetensors", "transform.key", "report.json"], force)
    cfg = ProtectConfig(TransformConfig(transform, sigma=sigma, p=p, hidden=hidden,  # type: ignore[arg-type]
                                        seed=transform_seed),
                        alpha=alpha, beta=beta, gamma=distortion)
    ms = milestones if milestones is not None else ",".join(str(m) for m in quarter_schedule(epochs).milestones)
    tcfg = opt.train_config(epochs, lr, batch_size, "sgd", momentum, False, weight_decay, ms, 0.1, seed, quiet, device)
    tr, te = opt.load_data(dataset, data_dir, train_size)
    rng = paper_range(tr.shape[0])  # §3.2: grey in [0, 1], colour in [-1, 1]
    tr, te = to_range(tr, rng), to_range(te, rng)
    net = opt.fresh_model(model, tr, seed, model_arg)
    opt.echo(f"protecting {model} with a {transform} transform on {dataset} ({len(tr)} images, {epochs} epochs)", quiet)
    res = run_protect(net, tr, cfg, tcfg, eval_data=te)
    res.model.cpu(), res.transform.cpu()  # trained on --device; measured and saved from the CPU
    acc = access_accuracy(res.model, res.transform, te)
    key = transform_key(res.transform, dataset=dataset, model=model, input_range=rng)
    key.save(key_path, force=force)
    save_model(res.model, model_path, extra={"dataset": dataset, "protected": "chen-wu", "input_range": rng},
               force=force)
    opt.write_json(report_path, {"command": "protect", "model": model, "dataset": dataset, "train_size": len(tr),
                                 "protect": cfg.to_dict(), "train": tcfg.to_dict(), **acc,
                                 "transform_fingerprint": key.fingerprint, "train_seconds": res.history.seconds,
                                 "history": res.history.history}, force)
    typer.echo(f"authorized accuracy {acc['authorized']:.4f}, unauthorized (raw) {acc['unauthorized']:.4f}; wrote "
               f"{model_path} and the secret {key_path} (keep it private; never ship it with the model)")


StolenModel = Annotated[Path, typer.Argument(help="the stolen model file")]
PiracyOut = Annotated[Path | None, typer.Option("--out", "-o", help="also write the result as JSON here")]
Trials = Annotated[int, typer.Option("--trials", min=1)]
_SEED = (opt.Seed, 0)


def _piracy(name: str, attack: Callable[..., Any], own: dict[str, tuple[Any, Any]], transform: str | None = None) -> None:
    """Register ``netmark piracy NAME`` (help: ``attack``'s docstring): MODEL, ``--transform`` (its help
    ``transform``; then the pairs come from the training split), ``--dataset``, the ``own`` options (name: (type,
    default)), ``--split`` (no transform), ``--limit``, ``--data-dir``, ``--json``, ``--out`` and ``--force``.
    ``attack(net, g, train, test, score, **own)`` returns the result; ``score`` (MODEL's accuracy on ``test``
    through ``g``) is taken first: one clear error when the model or the transform does not fit the data."""
    params = [opt.kw_param("model", StolenModel)]
    if transform is not None:
        params.append(opt.kw_param("transform", Annotated[Path, typer.Option("--transform", "-t", help=transform)]))
    params += [opt.kw_param("dataset", opt.Dataset_, "digits"), *(opt.kw_param(k, *v) for k, v in own.items())]
    if transform is None:
        params.append(opt.kw_param("split", opt.Split, "test"))
    params += [opt.kw_param("limit", opt.Limit, None), opt.kw_param("data_dir", opt.DataDir, None),
               opt.kw_param("as_json", opt.AsJson, False), opt.kw_param("out", PiracyOut, None),
               opt.kw_param("force", opt.Force, False)]

    def command(model: Path, dataset: str, limit: int | None, data_dir: Path | None, as_json: bool, out: Path | None,
                force: bool, transform: Path | None = None, split: str = "test", **kw: Any) -> None:
        if out is not None:  # refused before any work when it exists (without --force)
            opt.out_file(out, force)
        g = opt.load_transform(transform) if transform is not None else None
        net, rng = opt.protected_model(model)
        train = opt.data_split(dataset, "train", data_dir, None, rng) if g is not None else None
        test = opt.data_split(dataset, split, data_dir, limit, rng)
        res = attack(net, g, train, test, opt.accuracy(net, test, g), **kw)
        d = res.to_dict()
        if out is not None:
            opt.write_json(out, d, force)
        if as_json:
            typer.echo(json.dumps(d))
        else:
            typer.echo(f"{res.attack}: {len(res.accuracies)} trial(s), stolen model's accuracy mean {res.mean:.4f}, "
                       f"best {res.best:.4f}")

    piracy_app.command(name)(opt.handles_errors(opt.with_signature(command, params, attack.__doc__)))


def _direct(net: Any, g: None, train: None, test: Any, score: float) -> Any:
    """Direct piracy: raw inputs into the stolen model."""
    from netmark.access.piracy import PiracyResult

    return PiracyResult("direct", [score])


def _input_only(net: Any, g: None, train: None, test: Any, score: float, **cfg: Any) -> Any:
    """Input-only attack: the thief's own universal bipolar perturbations (mean and best of --trials)."""
    from netmark.access.piracy import InputOnlyConfig, input_only_attack

    return input_only_attack(net, test, InputOnlyConfig(**cfg))


def _pair(net: Any, g: Any, train: Any, test: Any, score: float, **cfg: Any) -> Any:
    """Pair attack: fit a copy of the Generator to (raw, processed) pairs, score the stolen model through it."""
    from netmark.access.piracy import PairAttackConfig, pair_attack

    return pair_attack(net, g, train, test, PairAttackConfig(**cfg))


def _one_pair(net: Any, g: Any, train: Any, test: Any, score: float, index: int) -> Any:
    """One-pair attack: delta = processed - raw of one image, added to every input (breaks Fixed/Learned)."""
    from netmark.access.piracy import one_pair_attack

    if index >= len(train):
        raise ConfigError(f"--index {index} is past the {len(train)} training images")
    return one_pair_attack(net, g, train, test, index=index)


_piracy("direct", _direct, {})
_piracy("input-only", _input_only, {
    "trials": (Trials, 100),
    "sigma": (Annotated[float, typer.Option("--sigma", help="the Fixed scheme's amplitude (known)")], 0.1),
    "p": (Annotated[float, typer.Option("--p", help="the Fixed scheme's probability (known)")], 0.2), "seed": _SEED})
_piracy("pair", _pair, {
    "fraction": (Annotated[float, typer.Option("--fraction", help="share of the training set's (raw, processed) pairs")], 1.0),
    "trials": (Trials, 10),
    "epochs": (Annotated[int, typer.Option("--epochs", min=1, help="epochs of each least-squares fit")], 5), "seed": _SEED},
    transform="the owner's generator key (stands in for the wiretapped module that yields the pairs)")
_piracy("one-pair", _one_pair, {
    "index": (Annotated[int, typer.Option("--index", min=0, help="which training image is the pair")], 0)},
    transform="the owner's transform key (yields the one pair)")
