"""``netmark attack ...``: a thief's attacks, model file in -> new model file out, registered on
:data:`netmark.cli.attack_app`.

Exit codes as everywhere: 0 success, 2 bad input (one line on stderr, nothing written).
"""

from __future__ import annotations

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
    Momentum,
    Optim,
    Quiet,
    Seed,
    TrainSize,
    Wd,
    _data,
    _load,
    _method,
    _train_config,
    attack_app,
    handles_errors,
)
from netmark.errors import ConfigError

Out = Annotated[Path, typer.Option("--out", "-o", help="output model file (.safetensors)")]
ArchKey = Annotated[Path | None, typer.Option("--arch-from-key", help="take the architecture from this key (plain .pt input)")]


def _out_file(out: Path, force: bool) -> Path:
    """Refuse an existing ``out`` (without ``--force``) or an unwritable directory for it, before any work."""
    from netmark._util import check_writable
    from netmark.cli_util import check_dir_writable

    check_writable(out, force)
    check_dir_writable(out.parent)
    return out


def _save_attacked(net: Any, out: Path, source: Path, attack: dict[str, Any], force: bool) -> None:
    from netmark.io import save_model

    save_model(net, out, extra={"attack": attack, "source": str(source)}, force=force)
    typer.echo(f"wrote {out}")


@attack_app.command("prune")
@handles_errors
def attack_prune(model: Annotated[Path, typer.Argument(help="model file")], out: Out,
                 rate: Annotated[float, typer.Option("--rate", help="fraction of weights to zero")] = 0.65,
                 order: Annotated[str, typer.Option("--order", help="ascending | descending | random")] = "ascending",
                 layer: Annotated[str | None, typer.Option("--layer", help="one layer (default: every conv/linear)")] = None,
                 seed: Seed = 0, arch_from_key: ArchKey = None, force: Force = False) -> None:
    """Zero a fraction of the weights by |w| (or at random)."""
    from netmark.attacks import PruneConfig, prune

    _out_file(out, force)
    cfg = PruneConfig(rate=rate, order=order, layer=layer, seed=seed)  # type: ignore[arg-type]
    _save_attacked(prune(_load(model, arch_from_key), cfg), out, model, {"prune": cfg.to_dict()}, force)


@attack_app.command("quantize")
@handles_errors
def attack_quantize(model: Annotated[Path, typer.Argument(help="model file")], out: Out,
                    bits: Annotated[int, typer.Option("--bits", help="bits per weight (1-16)")] = 8,
                    layer: Annotated[str | None, typer.Option("--layer", help="one layer (default: every conv/linear)")] = None,
                    per_layer: Annotated[bool, typer.Option("--per-layer", help="one scale per layer, not per output channel")] = False,
                    arch_from_key: ArchKey = None, force: Force = False) -> None:
    """Round weights to 2**bits uniform levels (model compression)."""
    from netmark.attacks import QuantizeConfig, quantize

    _out_file(out, force)
    cfg = QuantizeConfig(bits=bits, layer=layer, per_channel=not per_layer)
    _save_attacked(quantize(_load(model, arch_from_key), cfg), out, model, {"quantize": cfg.to_dict()}, force)


Buffers = Annotated[bool, typer.Option("--include-buffers", help="also convert BatchNorm running statistics")]


@attack_app.command("fixed-point")
@handles_errors
def attack_fixed_point(model: Annotated[Path, typer.Argument(help="model file")], out: Out,
                       bits: Annotated[int, typer.Option("--bits", help="total bits per parameter, sign included (2-32)")] = 8,
                       layer: Annotated[str | None, typer.Option("--layer", help="one layer (default: every parameter)")] = None,
                       rounding: Annotated[str, typer.Option("--rounding", help="mask (drop LSBs, paper) | nearest")] = "mask",
                       include_buffers: Buffers = False, arch_from_key: ArchKey = None, force: Force = False) -> None:
    """Store every parameter in fixed point and mask the LSBs (Tartaglione et al. 2021 compression)."""
    from netmark.attacks import FixedPointConfig, fixed_point_model

    _out_file(out, force)
    cfg = FixedPointConfig(bits=bits, layer=layer, rounding=rounding,  # type: ignore[arg-type]
                           include_buffers=include_buffers)
    _save_attacked(fixed_point_model(_load(model, arch_from_key), cfg), out, model, {"fixed-point": cfg.to_dict()},
                   force)


@attack_app.command("roundtrip")
@handles_errors
def attack_roundtrip(model: Annotated[Path, typer.Argument(help="model file")], out: Out,
                     dtype: Annotated[str, typer.Option("--dtype", help="fp16 | bf16 | int8 (per-tensor symmetric)")] = "fp16",
                     layer: Annotated[str | None, typer.Option("--layer", help="one layer (default: every parameter)")] = None,
                     include_buffers: Buffers = False, arch_from_key: ArchKey = None, force: Force = False) -> None:
    """Save the parameters as an fp16 / bf16 / int8 checkpoint and load them back."""
    from netmark.attacks import RoundTripConfig, roundtrip

    _out_file(out, force)
    cfg = RoundTripConfig(dtype=dtype, layer=layer, include_buffers=include_buffers)  # type: ignore[arg-type]
    _save_attacked(roundtrip(_load(model, arch_from_key), cfg), out, model, {"roundtrip": cfg.to_dict()}, force)


@attack_app.command("finetune")
@handles_errors
def attack_finetune(model: Annotated[Path, typer.Argument(help="model file")], out: Out,
                    dataset: Dataset_ = "digits", epochs: Epochs = 10,
                    classes: Annotated[str | None, typer.Option("--classes", help="keep only these classes, e.g. 5,6,7,8,9 (different domain; new head)")] = None,
                    new_head: Annotated[bool | None, typer.Option("--new-head/--same-head", help="replace the output layer (default: when the class count differs)")] = None,
                    train_size: TrainSize = None, seed: Seed = 0, lr: Lr = 0.01, batch_size: Batch = 64,
                    optimizer: Optim = "sgd", momentum: Momentum = 0.9, weight_decay: Wd = 0.0,
                    data_dir: DataDir = None, arch_from_key: ArchKey = None, force: Force = False,
                    quiet: Quiet = False, device: Device = "cpu") -> None:
    """Fine-tune on the same task or on another label set (transfer learning)."""
    from netmark.attacks import FinetuneConfig, finetune

    _out_file(out, force)
    net = _load(model, arch_from_key)
    cfg = FinetuneConfig(seed=seed, new_head=new_head, train=_train_config(
        epochs, lr, batch_size, optimizer, momentum, False, weight_decay, "", 0.1, seed, quiet, device))
    tr, _ = _data(dataset, data_dir, train_size)
    if classes:
        try:
            keep = [int(c) for c in classes.split(",")]
        except ValueError:
            raise ConfigError(f"--classes must be comma-separated integers, got {classes!r}") from None
        tr = tr.select_classes(keep)
        if cfg.new_head is None:
            cfg.new_head = True
    _save_attacked(finetune(net, tr, cfg), out, model, {"finetune": {**cfg.to_dict(), "dataset": dataset,
                                                                       "classes": classes}}, force)


@attack_app.command("overwrite")
@handles_errors
def attack_overwrite(model: Annotated[Path, typer.Argument(help="model file")], out: Out,
                     method: Annotated[str, typer.Option("--method", help="scheme the attacker embeds with")] = "uchida",
                     dataset: Dataset_ = "digits", epochs: Epochs = 10,
                     layer: Annotated[str | None, typer.Option("--layer", help="layer to overwrite")] = None,
                     bits: Annotated[int | None, typer.Option("--bits", min=1, help="attacker message length (default: the method's)")] = None,
                     key_out: Annotated[Path | None, typer.Option("--key-out", help="also save the attacker key")] = None,
                     train_size: TrainSize = None, seed: Seed = 666, lr: Lr = 0.01, batch_size: Batch = 64,
                     data_dir: DataDir = None, arch_from_key: ArchKey = None, force: Force = False,
                     quiet: Quiet = False) -> None:
    """Embed a second watermark with an attacker key into the same layer (Uchida §5.1)."""
    from netmark.attacks import Overwrite, OverwriteConfig

    _out_file(out, force)
    if key_out is not None:
        _out_file(key_out, force)
    mcfg = _method(method, {"layer": layer, "bits": bits}, None).config.to_dict()
    cfg = OverwriteConfig(method=method, method_config=mcfg, seed=seed, train=_train_config(
        epochs, lr, batch_size, "sgd", 0.9, False, 0.0, "", 0.1, seed, quiet))
    net = _load(model, arch_from_key)
    tr, _ = _data(dataset, data_dir, train_size)
    atk = Overwrite(cfg)
    attacked = atk(net, tr)
    if key_out is not None and atk.attacker_key is not None:
        atk.attacker_key.save(key_out, force=force)
    _save_attacked(attacked, out, model, {"overwrite": {**cfg.to_dict(), "dataset": dataset}}, force)


@attack_app.command("distill")
@handles_errors
def attack_distill(model: Annotated[Path, typer.Argument(help="the stolen model file (the teacher)")], out: Out,
                   dataset: Annotated[str, typer.Option("--dataset", "-d", help="the thief's images: this dataset's training split, labels ignored (fashion-mnist | mnist | cifar10 | cifar100 | digits)")] = "digits",
                   epochs: Epochs = 10, train_size: TrainSize = None, seed: Seed = 0,
                   lr: Annotated[float, typer.Option("--lr", help="learning rate")] = 1e-3,
                   temperature: Annotated[float, typer.Option("--temperature", "-T", help="softmax temperature T > 0 (Hinton et al. 2015 use 2-20)")] = 4.0,
                   batch_size: Batch = 64, optimizer: Optim = "adam", data_dir: DataDir = None,
                   arch_from_key: ArchKey = None, force: Force = False, device: Device = "cpu") -> None:
    """Distill MODEL into a fresh model of its architecture trained only on its soft predictions (Hinton et al. 2015):
    no weight is copied, so a mark in the weights does not survive; the price is the student's accuracy."""
    from netmark.attacks import DistillConfig, distill
    from netmark.training import check_device

    _out_file(out, force)
    check_device(device)
    cfg = DistillConfig(seed=seed, epochs=epochs, lr=lr, temperature=temperature, batch_size=batch_size,
                        optimizer=optimizer)  # type: ignore[arg-type]
    net = _load(model, arch_from_key).to(device)
    tr, _ = _data(dataset, data_dir, train_size)
    _save_attacked(distill(net, tr, cfg), out, model, {"distill": {**cfg.to_dict(), "dataset": dataset,
                                                                     "train_size": len(tr)}}, force)
