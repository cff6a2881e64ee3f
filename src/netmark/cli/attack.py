"""``netmark attack NAME``: a thief's attacks, model file in -> new model file out, one command per attack of the
registry :data:`netmark.attacks.ATTACKS`, built when the command line is parsed (adding an attack needs no edit here).

Every attack's command takes MODEL, ``--out``, ``--set k=v`` (repeatable: a field of the attack's config dataclass,
the value parsed by the field's type and validated by the config; a field of a nested config as ``train.lr=0.05``),
``--arch-from-key`` and ``--force``; an attack that needs data (it trains) also ``--dataset``, ``--train-size``,
``--data-dir`` and ``--device``. The attacks in :data:`SHORTCUTS` have documented options of their own instead
(``attack prune --rate 0.9`` is ``attack prune --set rate=0.9``); ``--set`` is applied after them.

Exit codes as everywhere: 0 success, 2 bad input (one line on stderr, nothing written).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import typer
from typer.core import TyperGroup

from netmark.cli import common as opt
from netmark.errors import ConfigError

Out = Annotated[Path, typer.Option("--out", "-o", help="output model file (.safetensors)")]
ArchKey = Annotated[Path | None, typer.Option("--arch-from-key", help="take the architecture from this key (plain .pt input)")]
Factory = Annotated[str | None, typer.Option("--model-factory", help="package.module:function returning your nn.Module: MODEL's tensors are loaded into it by name (an architecture netmark does not know)")]


@dataclass
class Plan:
    """What an attack command's options ask for: the attack's config and the data it runs on."""

    config: dict[str, Any]  #: keyword arguments of the attack's config (``--set`` is applied on top)
    dataset: str | None = None  #: the training split of this dataset is the attacker's data
    train_size: int | None = None
    data_dir: Path | None = None
    device: str | None = None  #: move the model (and every training schedule of the config) there first
    select: Callable[[Any, Any], Any] | None = None  #: (data, config) -> the data the attack gets
    after: Callable[[Any], None] | None = None  #: called with the attack object once it ran
    record: dict[str, Any] = field(default_factory=dict)  #: written beside the config into the model's metadata
    record_train_size: bool = False  #: also record the number of attacker images


@dataclass(frozen=True)
class Shortcut:
    """The documented options of one attack's command: ``options`` lists them in its signature (plus, unannotated,
    ``quiet`` / ``device`` when it uses those) and returns the :class:`Plan`; its docstring is the command's help."""

    options: Callable[..., Plan]
    model_help: str = "model file"


#: hand-made options of the attacks that had commands before the registry built them (in ``--help`` order)
SHORTCUTS: dict[str, Shortcut] = {}


def _fields(doc: str, options: dict[str, tuple[Any, Any]], config: Callable[..., dict[str, Any]] = dict,
            model_help: str = "model file") -> Shortcut:
    """Options (name: (type, default)) that are fields of the attack's config (``config`` maps them) but for
    ``dataset``, ``train_size``, ``data_dir`` and ``device``: the attacker's data, recorded with its size."""

    def plan(**kw: Any) -> Plan:
        data = {k: kw.pop(k) for k in ("dataset", "train_size", "data_dir", "device") if k in kw}
        if not data:
            return Plan(config(**kw))
        return Plan(config(**kw), **data, record={"dataset": data["dataset"]}, record_train_size=True)

    return Shortcut(opt.with_signature(plan, [opt.kw_param(k, *v) for k, v in options.items()], doc), model_help)


# ---------------------------------------------------------------- the documented shortcuts
Layer = (Annotated[str | None, typer.Option("--layer", help="one layer (default: every conv/linear)")], None)
AnyLayer = (Annotated[str | None, typer.Option("--layer", help="one layer (default: every parameter)")], None)
Buffers = (Annotated[bool, typer.Option("--include-buffers", help="also convert BatchNorm running statistics")], False)

SHORTCUTS["prune"] = _fields("Zero a fraction of the weights by |w| (or at random).", {
    "rate": (Annotated[float, typer.Option("--rate", help="fraction of weights to zero")], 0.65),
    "order": (Annotated[str, typer.Option("--order", help="ascending | descending | random")], "ascending"),
    "layer": Layer, "seed": (opt.Seed, 0)})
SHORTCUTS["quantize"] = _fields("Round weights to 2**bits uniform levels (model compression).", {
    "bits": (Annotated[int, typer.Option("--bits", help="bits per weight (1-16)")], 8), "layer": Layer,
    "per_layer": (Annotated[bool, typer.Option("--per-layer", help="one scale per layer, not per output channel")], False)},
    lambda per_layer, **kw: {**kw, "per_channel": not per_layer})
SHORTCUTS["fixed-point"] = _fields("Store every parameter in fixed point and mask the LSBs (Tartaglione et al. 2021 compression).", {
    "bits": (Annotated[int, typer.Option("--bits", help="total bits per parameter, sign included (2-32)")], 8),
    "layer": AnyLayer,
    "rounding": (Annotated[str, typer.Option("--rounding", help="mask (drop LSBs, paper) | nearest")], "mask"),
    "include_buffers": Buffers})
SHORTCUTS["roundtrip"] = _fields("Save the parameters as an fp16 / bf16 / int8 checkpoint and load them back.", {
    "dtype": (Annotated[str, typer.Option("--dtype", help="fp16 | bf16 | int8 (per-tensor symmetric)")], "fp16"),
    "layer": AnyLayer, "include_buffers": Buffers})


def _finetune(dataset: opt.Dataset_ = "digits", epochs: opt.Epochs = 10,
              classes: Annotated[str | None, typer.Option("--classes", help="keep only these classes, e.g. 5,6,7,8,9 (different domain; new head)")] = None,
              new_head: Annotated[bool | None, typer.Option("--new-head/--same-head", help="replace the output layer (default: when the class count differs)")] = None,
              train_size: opt.TrainSize = None, seed: opt.Seed = 0, lr: opt.Lr = 0.01, batch_size: opt.Batch = 64,
              optimizer: opt.Optim = "sgd", momentum: opt.Momentum = 0.9, weight_decay: opt.Wd = 0.0,
              data_dir: opt.DataDir = None, quiet: bool = False, device: str = "cpu") -> Plan:
    """Fine-tune on the same task or on another label set (transfer learning)."""

    def select(data: Any, cfg: Any) -> Any:
        if not classes:
            return data
        try:
            keep = [int(c) for c in classes.split(",")]
        except ValueError:
            raise ConfigError(f"--classes must be comma-separated integers, got {classes!r}") from None
        if cfg.new_head is None:
            cfg.new_head = True
        return data.select_classes(keep)

    schedule = opt.train_config(epochs, lr, batch_size, optimizer, momentum, False, weight_decay, "", 0.1, seed,
                                quiet, device)
    return Plan({"seed": seed, "new_head": new_head, "train": schedule}, dataset, train_size, data_dir,
                select=select, record={"dataset": dataset, "classes": classes})


SHORTCUTS["finetune"] = Shortcut(_finetune)


def _overwrite(method: Annotated[str, typer.Option("--method", help="scheme the attacker embeds with")] = "uchida",
               dataset: opt.Dataset_ = "digits", epochs: opt.Epochs = 10,
               layer: Annotated[str | None, typer.Option("--layer", help="layer to overwrite")] = None,
               bits: Annotated[int | None, typer.Option("--bits", min=1, help="attacker message length (default: the method's)")] = None,
               key_out: Annotated[Path | None, typer.Option("--key-out", help="also save the attacker key")] = None,
               train_size: opt.TrainSize = None, seed: opt.Seed = 666, lr: opt.Lr = 0.01, batch_size: opt.Batch = 64,
               data_dir: opt.DataDir = None, force: bool = False, quiet: bool = False, device: str = "cpu") -> Plan:
    """Embed a second watermark with an attacker key into the same layer (Uchida §5.1)."""
    if key_out is not None:
        opt.out_file(key_out, force)

    def save_key(atk: Any) -> None:
        if key_out is not None and atk.attacker_key is not None:
            atk.attacker_key.save(key_out, force=force)

    mcfg = opt.make_method(method, {"layer": layer, "bits": bits}, None).config.to_dict()
    schedule = opt.train_config(epochs, lr, batch_size, "sgd", 0.9, False, 0.0, "", 0.1, seed, quiet, device)
    return Plan({"method": method, "method_config": mcfg, "seed": seed, "train": schedule}, dataset, train_size,
                data_dir, after=save_key, record={"dataset": dataset})


SHORTCUTS["overwrite"] = Shortcut(_overwrite)


SHORTCUTS["distill"] = _fields(
    "Distill MODEL into a fresh model of its architecture trained only on its soft predictions (Hinton et al. 2015):\n"
    "no weight is copied, so a mark in the weights does not survive; the price is the student's accuracy.", {
        "dataset": (Annotated[str, typer.Option("--dataset", "-d", help="the thief's images: this dataset's training split, labels ignored (fashion-mnist | mnist | cifar10 | cifar100 | digits)")], "digits"),
        "epochs": (opt.Epochs, 10), "train_size": (opt.TrainSize, None), "seed": (opt.Seed, 0), "lr": (opt.Lr, 1e-3),
        "temperature": (Annotated[float, typer.Option("--temperature", "-T", help="softmax temperature T > 0 (Hinton et al. 2015 use 2-20)")], 4.0),
        "batch_size": (opt.Batch, 64), "optimizer": (opt.Optim, "adam"), "data_dir": (opt.DataDir, None),
        "device": (str, "cpu")}, model_help="the stolen model file (the teacher)")


def _generic(cls: Any) -> Shortcut:
    """The options of an attack without shortcuts: its data (when it needs some) and its seed."""
    data = {"dataset": (opt.Dataset_, "digits"), "train_size": (opt.TrainSize, None), "data_dir": (opt.DataDir, None)}
    seed = {f.name: (opt.Seed, f.default) for f in dataclasses.fields(cls.config_cls) if f.name == "seed"}
    return _fields(_summary(cls), {**data, **seed, "device": (str, "cpu")} if cls.needs_data else seed)


def _summary(cls: Any) -> str:
    """The first paragraph of the attack's docstring (of its module's, when the class's defers to it)."""
    doc = inspect.getdoc(cls) or ""
    if not doc or "module docstring" in doc:
        doc = inspect.getdoc(sys.modules.get(cls.__module__)) or doc
    first = doc.strip().split("\n\n", 1)[0]
    return " ".join(first.split()).replace("``", "`") or f"The {cls.name} attack."


# ---------------------------------------------------------------- --set k=v
def apply_settings(cfg: Any, items: list[str] | None, attack: str) -> Any:
    """``cfg`` with each ``k=v`` of ``items`` set (a nested config's field as ``train.lr=0.05``): the value parsed
    by the field's type, the new config validated by its class. One clear :class:`ConfigError` for a bad key or
    value."""
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects k=v, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        cfg = _with_setting(cfg, key.split("."), raw, key, attack)
    return cfg


def _with_setting(cfg: Any, path: list[str], raw: str, key: str, attack: str) -> Any:
    names = [f.name for f in dataclasses.fields(cfg) if f.init]
    head = path[0]
    if head not in names:
        raise ConfigError(f"attack {attack!r} has no setting {key!r}; settings: {_settings_text(type(cfg))}")
    if len(path) > 1:
        inner = getattr(cfg, head)
        if not dataclasses.is_dataclass(inner):
            raise ConfigError(f"--set {key}: {head!r} is a single value, not a group of settings")
        value = _with_setting(inner, path[1:], raw, key, attack)
    else:
        value = _convert(_hints(type(cfg)).get(head, Any), raw, f"--set {key}")
    try:
        return dataclasses.replace(cfg, **{head: value})
    except TypeError as e:
        raise ConfigError(f"--set {key}: {e}") from None


def _hints(cls: type) -> dict[str, Any]:
    try:
        return get_type_hints(cls)
    except (NameError, TypeError):  # an annotation that cannot be resolved: the value is parsed as JSON
        return {}


def _convert(tp: Any, raw: str, where: str) -> Any:
    """``raw`` as a value of type ``tp`` (ConfigError naming ``where`` when it is not one)."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return _convert(args[0], raw, where)
    if origin in (Union, types.UnionType):
        if type(None) in args and raw.strip().lower() in ("none", "null"):
            return None
        kinds = [a for a in args if a is not type(None)]
        for kind in kinds:
            try:
                return _convert(kind, raw, where)
            except ConfigError:
                if len(kinds) == 1:
                    raise
        raise ConfigError(f"{where}: {raw!r} is not {' or '.join(_type_name(k) for k in kinds)}")
    if origin is Literal:
        for choice in args:
            if str(choice) == raw.strip():
                return choice
        raise ConfigError(f"{where} must be one of {', '.join(map(str, args))}, got {raw!r}")
    if tp is bool:
        word = raw.strip().lower()
        if word in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return word in ("true", "1", "yes", "on")
        raise ConfigError(f"{where}: expected true or false, got {raw!r}")
    if tp in (int, float):
        try:
            return tp(raw.strip())
        except ValueError:
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {raw!r}") from None
    if tp is str:
        return raw
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        first = dataclasses.fields(tp)[0].name
        raise ConfigError(f"{where} is a group of settings: set one of them, e.g. {where.split()[-1]}.{first}=...")
    if origin in (tuple, list):
        items = _json(raw, where) if raw.strip().startswith("[") else [s for s in raw.split(",") if s.strip()]
        if not isinstance(items, list):
            raise ConfigError(f"{where}: expected a list, got {raw!r}")
        kind = args[0] if args else Any
        return origin(_convert(kind, v if isinstance(v, str) else json.dumps(v), where) for v in items)
    if origin is dict or tp is dict:
        value = _json(raw, where)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a JSON object, got {raw!r}")
        return value
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _json(raw: str, where: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise ConfigError(f"{where}: not valid JSON: {raw!r}") from None


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _settings_text(config_cls: type) -> str:
    out = []
    for f in dataclasses.fields(config_cls):
        if f.init:
            kind = _hints(config_cls).get(f.name)
            nested = isinstance(kind, type) and dataclasses.is_dataclass(kind)
            out.append(f"{f.name}.*" if nested else f.name)
    return ", ".join(out)


# ---------------------------------------------------------------- one command per registered attack
def _on_device(cfg: Any, device: str) -> Any:
    """``cfg`` with every training schedule in it (a ``TrainConfig`` field) on ``device``."""
    from netmark.training import TrainConfig

    moved = {f.name: dataclasses.replace(v, device=device) for f in dataclasses.fields(cfg)
             if isinstance(v := getattr(cfg, f.name), TrainConfig)}
    return dataclasses.replace(cfg, **moved) if moved else cfg


@functools.lru_cache(maxsize=64)
def attack_command(name: str, cls: Any) -> Any:
    """The click command ``netmark attack NAME`` of attack class ``cls``."""
    shortcut = SHORTCUTS.get(name) or _generic(cls)
    own = inspect.signature(shortcut.options, eval_str=True).parameters
    settings = Annotated[list[str] | None, typer.Option(
        "--set", help=f"a setting of the attack's {cls.config_cls.__name__}, k=v (repeatable; applied after the other "
                      f"options): {_settings_text(cls.config_cls)}")]
    # after its own options every attack command has these, in this order (``quiet`` only where the shortcut takes
    # it, ``device`` on every attack that trains)
    tail = {"settings": (settings, None), "arch_from_key": (ArchKey, None), "model_factory": (Factory, None),
            "force": (opt.Force, False),
            "quiet": (opt.Quiet, False), "device": (opt.Device, "cpu")}
    wanted = [t for t in tail if (t != "quiet" or "quiet" in own) and (t != "device" or cls.needs_data)]
    params = [opt.kw_param("model", Annotated[Path, typer.Argument(help=shortcut.model_help)]), opt.kw_param("out", Out),
              *(opt.kw_param(p.name, p.annotation, p.default) for p in own.values() if p.name not in tail),
              *(opt.kw_param(t, *tail[t]) for t in wanted)]

    def run(**kw: Any) -> None:
        from netmark.io import save_model
        from netmark.training import check_device

        model, out, force = kw.pop("model"), kw.pop("out"), kw["force"]
        opt.out_file(out, force)
        if "device" in kw:
            check_device(kw["device"])
        plan = shortcut.options(**{k: v for k, v in kw.items() if k in own})
        try:
            base = cls.config_cls(**plan.config)
        except TypeError as e:  # a config field without a default: --set cannot add it after the fact
            raise ConfigError(f"attack {name!r}: {e}") from None
        cfg = apply_settings(base, kw["settings"], name)
        net, plain = _victim(model, kw["arch_from_key"], cls.tensor_only, kw["model_factory"])
        if plan.device is not None:
            cfg, net = _on_device(cfg, plan.device), net.to(plan.device)
        data = opt.load_data(plan.dataset, plan.data_dir, plan.train_size)[0] if plan.dataset is not None else None
        if plan.select is not None:
            data = plan.select(data, cfg)
        atk = cls(cfg)
        attacked = atk(net, data)
        if plan.after is not None:
            plan.after(atk)
        record = {**cfg.to_dict(), **plan.record}
        if plan.record_train_size and data is not None:  # record_train_size comes with a dataset
            record["train_size"] = len(data)
        if plain:  # a state dict without an architecture: written back under its own names, format by --out suffix
            from netmark.weights import save_state

            save_state(attacked.state_dict(), out, force=force)
        else:
            save_model(attacked, out, extra={"attack": {name: record}, "source": str(model)}, force=force)
        typer.echo(f"wrote {out}")

    one = typer.Typer(add_completion=False)
    one.command(name)(opt.handles_errors(opt.with_signature(run, params, shortcut.options.__doc__)))
    return typer.main.get_command(one)


def _victim(model: Path, arch_key: Path | None, tensor_only: bool, factory: str | None = None) -> tuple[Any, bool]:
    """The model to attack and whether it is a plain state dict held by name (an attack that rewrites tensors one by
    one runs on a file whose architecture cannot be rebuilt: a user's own module's state dict). With ``factory``
    (package.module:function) the user's module is built and the file's tensors loaded into it; the result is then
    written back as a plain state dict too."""
    from netmark.errors import NoArchitectureError

    if factory is not None:
        from netmark.weights import from_factory

        return from_factory(factory, model), True
    try:
        return opt.load_model_file(model, arch_key), False
    except NoArchitectureError:
        if not tensor_only:
            raise
    from netmark.weights import WeightFile, state_shell

    return state_shell(WeightFile(model).all()), True


def attack_names() -> list[str]:
    """The registered attacks: those with shortcuts first (in their order), then the others in registry order."""
    from netmark.attacks import ATTACKS

    return [n for n in SHORTCUTS if n in ATTACKS] + [n for n in ATTACKS if n not in SHORTCUTS]


class AttackGroup(TyperGroup):
    """The ``netmark attack`` group: one subcommand per registered attack, read from the registry each time they are
    looked up (an attack registered later, e.g. by a plug-in or a test, appears too)."""

    @property  # type: ignore[override]
    def commands(self) -> dict[str, Any]:
        from netmark.attacks import ATTACKS

        return {n: attack_command(n, ATTACKS[n]) for n in attack_names()}

    @commands.setter
    def commands(self, value: Any) -> None:  # typer hands the group its (empty) decorated commands: unused
        pass


attack_app = typer.Typer(cls=AttackGroup, no_args_is_help=True,
                         help="Attack a model the way a thief would (model in -> new model file out).")
