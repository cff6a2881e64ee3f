"""The single model registry: ``@register`` builders, ``build``, ``arch_of`` and layer look-up.

Every architecture is a builder function ``(in_channels, image_size, num_classes, **family_args)
-> nn.Module`` decorated with :func:`register`. :func:`build` binds and validates the arguments
against the builder's signature, builds the module and records the bound arguments on it
(attribute :data:`ARCH_ATTR`), so that ``build(**arch_of(model))`` rebuilds the same
architecture, e.g. when a saved model file is reloaded.

Size bound: the arguments come from untrusted files too (a model file's metadata, a key's ``arch``), and
``num_classes=1.5e6`` or sixty hidden layers of 4096 would cost gigabytes before anything else could fail. So
:func:`build` first builds the architecture on PyTorch's ``meta`` device (shapes only: no memory, no random
numbers drawn), counts its parameters and buffers and refuses, with an :class:`~netmark.errors.ArchitectureError`,
more than :func:`max_params` (default :data:`DEFAULT_MAX_PARAMS`, 200 million; the environment variable
``NETMARK_MAX_PARAMS`` or the ``max_params`` argument of :func:`build` changes it). A list argument may hold at
most :data:`MAX_LIST_LEN` items.
"""

from __future__ import annotations

import inspect
import math
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from netmark._util import first_line
from netmark.errors import ArchitectureError
from netmark.models.resize import checked_widths, resize_layers

__all__ = ["ARCH_ATTR", "MODELS", "ModelSpec", "arch_of", "available", "build", "conv_and_linear_layers", "get_layer",
           "host_layer", "host_layers", "max_params", "model_version", "param_count", "register", "skeleton",
           "transposed", "unit_major"]

#: Name of the attribute on which :func:`build` records ``{"name": ..., "args": {...}}``.
ARCH_ATTR = "netmark_arch"

#: Argument names every builder must accept.
COMMON_ARGS = ("in_channels", "image_size", "num_classes")

_RESERVED = ("name", "args", "max_params", "widths")

#: Default bound on the parameters + buffers an architecture's arguments may imply (about 800 MB in float32;
#: the largest registered architecture at its defaults, vgg16, has 15 million).
DEFAULT_MAX_PARAMS = 200_000_000
#: Environment variable overriding :data:`DEFAULT_MAX_PARAMS` (an integer, ``2e8`` style accepted).
MAX_PARAMS_ENV = "NETMARK_MAX_PARAMS"
#: Most items a list argument (e.g. ``mlp``'s ``hidden`` widths) may hold.
MAX_LIST_LEN = 1000

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """One registered architecture.

    Attributes:
        name: registry key, e.g. ``"lenet5"``.
        builder: function building the ``nn.Module`` from keyword arguments.
        summary: one-line human description.
        paper: the paper (and section/table) the architecture comes from.
        host_layer: qualified name of the layer the papers typically watermark (default args).
        min_values: lower bound for ``int`` arguments that may be below 1 (e.g. ``padding: 0``);
            every other ``int`` argument must be positive.
        version: the architecture's behaviour version, part of every cached study run's key (with the name and
            arguments): bump it when the numerical output changes for the same arguments and seed (other initial
            weights, another forward computation). Moving its code does not need a bump.
    """

    name: str
    builder: Builder
    summary: str
    paper: str
    host_layer: str
    min_values: Mapping[str, int] = field(default_factory=dict)
    version: int = 1

    @property
    def signature(self) -> inspect.Signature:
        """The builder's signature with annotations resolved to real types."""
        return inspect.signature(self.builder, eval_str=True)

    def defaults(self) -> dict[str, Any]:
        """Every argument of the builder with its default value."""
        return {p.name: p.default for p in self.signature.parameters.values()}


#: The one registry of architectures, keyed by name.
MODELS: dict[str, ModelSpec] = {}


def register(name: str, *, summary: str, paper: str, host_layer: str, min_values: Mapping[str, int] | None = None,
             version: int = 1) -> Callable[[Builder], Builder]:
    """Decorator adding a builder function to :data:`MODELS` under ``name`` (``version``: :attr:`ModelSpec.version`).

    The builder must take keyword arguments with defaults only, including ``in_channels``,
    ``image_size`` and ``num_classes``; ``name`` and ``args`` are reserved.
    """

    def decorator(builder: Builder) -> Builder:
        if name in MODELS:
            raise ArchitectureError(f"model name {name!r} is already registered.")
        params = inspect.signature(builder).parameters
        missing = [a for a in COMMON_ARGS if a not in params]
        reserved = [a for a in _RESERVED if a in params]
        no_default = [p.name for p in params.values() if p.default is inspect.Parameter.empty]
        variadic = [p.name for p in params.values() if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if missing or reserved or no_default or variadic:
            raise ArchitectureError(f"builder for {name!r} must take keyword args with defaults including "
                                    f"{', '.join(COMMON_ARGS)} (missing: {missing}, reserved: {reserved}, "
                                    f"without default: {no_default}, variadic: {variadic}).")
        MODELS[name] = ModelSpec(name=name, builder=builder, summary=summary, paper=paper, host_layer=host_layer,
                                 min_values=dict(min_values or {}), version=version)
        return builder

    return decorator


def available() -> list[str]:
    """Sorted names of every registered architecture."""
    return sorted(MODELS)


def model_version(name: str) -> int | None:
    """The :attr:`ModelSpec.version` of architecture ``name`` (``None`` for an unknown name: building it fails)."""
    spec = MODELS.get(name)
    return None if spec is None else spec.version


def _spec(name: object) -> ModelSpec:
    if not isinstance(name, str) or name not in MODELS:
        raise ArchitectureError(f"unknown model {name!r}; known: {', '.join(available())}")
    return MODELS[name]


def _check_value(model: str, arg: str, value: Any, annotation: Any, min_value: int) -> Any:
    """Type-check one argument against its annotation; return it in JSON-friendly form."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        for option in options:
            base = typing.get_origin(option) or option
            kinds = (list, tuple) if base is list else (int, float) if base is float else (base,)
            if isinstance(base, type) and isinstance(value, kinds) and (base is bool or not isinstance(value, bool)):
                return _check_value(model, arg, value, option, min_value)
        wanted = " or ".join(getattr(o, "__name__", str(o)) for o in options)
        raise ArchitectureError(f"model {model!r}: argument {arg!r} must be {wanted}, got {value!r}.")
    if annotation is bool:
        if not isinstance(value, bool):
            raise ArchitectureError(f"model {model!r}: argument {arg!r} must be a bool, got {value!r}.")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ArchitectureError(f"model {model!r}: argument {arg!r} must be an int, got {value!r}.")
        if value < min_value:
            raise ArchitectureError(f"model {model!r}: argument {arg!r} must be >= {min_value}, got {value}.")
        return int(value)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ArchitectureError(f"model {model!r}: argument {arg!r} must be a finite number, got {value!r}.")
        return float(value)
    if origin is list:
        (item_type,) = typing.get_args(annotation) or (Any,)
        if not isinstance(value, list | tuple) or not value:
            raise ArchitectureError(f"model {model!r}: argument {arg!r} must be a non-empty list, got {value!r}.")
        if len(value) > MAX_LIST_LEN:
            raise ArchitectureError(f"model {model!r}: argument {arg!r} has {len(value)} items, at most {MAX_LIST_LEN} "
                                    "are accepted.")
        return [_check_value(model, arg, v, item_type, min_value) for v in value]
    return value


def max_params() -> int:
    """The parameter bound of :func:`build`: ``$NETMARK_MAX_PARAMS`` if set, else :data:`DEFAULT_MAX_PARAMS`."""
    raw = os.environ.get(MAX_PARAMS_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_MAX_PARAMS
    try:
        n = float(raw)
    except ValueError:
        n = float("nan")
    if not (math.isfinite(n) and n >= 1):
        raise ArchitectureError(f"{MAX_PARAMS_ENV}={raw!r} must be a positive number of parameters")
    return int(n)


def build(name: str, args: Mapping[str, Any] | None = None, *, widths: Mapping[str, Any] | None = None,
          max_params: int | None = None, **kwargs: Any) -> nn.Module:
    """Build the registered architecture ``name``.

    Arguments may be given as keywords or as the ``args`` mapping (the form :func:`arch_of`
    returns), so ``build(**arch_of(model))`` rebuilds ``model``'s architecture. ``widths``: layers whose unit
    counts differ from what the arguments give (a model with dummy units: :mod:`netmark.models.resize`).
    Unknown or ill-typed arguments raise :class:`~netmark.errors.ArchitectureError`, and so do arguments
    that imply more than ``max_params`` parameters + buffers (default :func:`max_params`), counted
    on the ``meta`` device before anything is allocated (module docstring).
    """
    spec, checked = _checked(name, args, kwargs)
    _bounded(spec, checked, max_params, widths)
    model = spec.builder(**checked)
    if widths:
        resize_layers(model, widths)
    _record(model, name, checked, widths)
    return model


def skeleton(name: str, args: Mapping[str, Any] | None = None, *, widths: Mapping[str, Any] | None = None,
             max_params: int | None = None, **kwargs: Any) -> nn.Module:
    """:func:`build` on the ``meta`` device: the architecture's modules and tensor shapes without their memory
    (e.g. to check a file's tensors against it before building it for real). Same checks and bound as :func:`build`;
    no random numbers are drawn."""
    spec, checked = _checked(name, args, kwargs)
    model = _bounded(spec, checked, max_params, widths)
    _record(model, name, checked, widths)
    return model


def _record(model: nn.Module, name: str, checked: dict[str, Any], widths: Mapping[str, Any] | None) -> None:
    arch: dict[str, Any] = {"name": name, "args": checked}
    if widths:
        arch["widths"] = checked_widths(model, widths)
    setattr(model, ARCH_ATTR, arch)


def param_count(name: str, args: Mapping[str, Any] | None = None, **kwargs: Any) -> int:
    """Parameters + buffers of architecture ``name`` with these arguments, counted on the ``meta`` device
    (no memory allocated, no random numbers drawn, whatever the size)."""
    spec, checked = _checked(name, args, kwargs)
    return _count(_meta_model(spec, checked))


_max_params_from_env = max_params  # `build`'s keyword argument shadows the function's name there


def _bounded(spec: ModelSpec, checked: dict[str, Any], max_params: int | None,
             widths: Mapping[str, Any] | None = None) -> nn.Module:
    """The meta-device model (resized to ``widths``), after checking its size against ``max_params`` (default:
    :func:`max_params`)."""
    limit = _max_params_from_env() if max_params is None else max_params
    model = _meta_model(spec, checked)
    if widths:
        with torch.device("meta"):
            resize_layers(model, widths)
    n = _count(model)
    if n > limit:
        raise ArchitectureError(f"model {spec.name!r} with these arguments would have {n:,} parameters, over the limit "
                                f"of {limit:,} (set {MAX_PARAMS_ENV} or build(..., max_params=N) to allow more).")
    return model


def _meta_model(spec: ModelSpec, checked: dict[str, Any]) -> nn.Module:
    try:
        with torch.device("meta"):
            return spec.builder(**checked)
    except (RuntimeError, OverflowError, MemoryError) as e:  # sizes past int64
        raise ArchitectureError(f"model {spec.name!r}: these arguments imply an impossible size "
                                f"({first_line(e, 160)}).") from None


def _count(model: nn.Module) -> int:
    return sum(t.numel() for t in (*model.parameters(), *model.buffers()))


def _checked(name: str, args: Mapping[str, Any] | None, kwargs: dict[str, Any]) -> tuple[ModelSpec, dict[str, Any]]:
    spec = _spec(name)
    if args is not None and not isinstance(args, Mapping):
        raise ArchitectureError(f"model {name!r}: 'args' must be a mapping of argument names to values.")
    given = dict(args or {})
    twice = sorted(set(given) & set(kwargs))
    if twice:
        raise ArchitectureError(f"model {name!r}: argument(s) {', '.join(twice)} given twice.")
    given.update(kwargs)
    signature = spec.signature
    unknown = sorted(set(given) - set(signature.parameters))
    if unknown:
        raise ArchitectureError(f"model {name!r} has no argument(s) {', '.join(map(repr, unknown))}; "
                                f"valid arguments: {', '.join(signature.parameters)}.")
    bound = signature.bind(**given)
    bound.apply_defaults()
    checked = {arg: _check_value(name, arg, value, signature.parameters[arg].annotation, spec.min_values.get(arg, 1))
               for arg, value in bound.arguments.items()}
    return spec, checked


def arch_of(model: nn.Module) -> dict[str, Any]:
    """``{"name": ..., "args": {...}}`` of a model made by :func:`build` (a JSON-serialisable copy), with
    ``"widths"`` when some layers were resized (:mod:`netmark.models.resize`)."""
    arch = getattr(model, ARCH_ATTR, None)
    if not isinstance(arch, dict) or "name" not in arch or "args" not in arch:
        raise ArchitectureError(f"{type(model).__name__} was not built by netmark.models.build, so its architecture "
                                "is unknown.")
    out = {"name": arch["name"], "args": _json_copy(arch["args"])}
    if arch.get("widths"):
        out["widths"] = _json_copy(arch["widths"])
    return out


def _json_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_copy(v) for v in value]
    return value


def conv_and_linear_layers(model: nn.Module) -> dict[str, nn.Conv2d | nn.Linear]:
    """Every ``nn.Conv2d`` / ``nn.Linear`` of ``model`` keyed by qualified module name, in order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}


def get_layer(model: nn.Module, name: str) -> nn.Conv2d | nn.Linear:
    """The conv/linear layer called ``name`` (e.g. ``"conv2.0.conv2"``) of ``model``."""
    layers = conv_and_linear_layers(model)
    if name not in layers:
        arch = getattr(model, ARCH_ATTR, None)
        label = arch["name"] if isinstance(arch, dict) and "name" in arch else type(model).__name__
        raise ArchitectureError(f"model {label!r} has no layer {name!r}; conv/linear layers: "
                                f"{', '.join(layers) or 'none'}")
    return layers[name]


#: layers whose weight is stored ``(in, out)``: Hugging Face's ``Conv1D`` (GPT-2), by qualified class name
TRANSPOSED_LAYERS = ("transformers.pytorch_utils.Conv1D",)
#: layer types a weight-reading watermark can live in (besides :data:`TRANSPOSED_LAYERS`)
HOST_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding)


def transposed(m: nn.Module) -> bool:
    """Whether ``m``'s weight is stored ``(in, out)`` (:data:`TRANSPOSED_LAYERS`), not ``(out, in, ...)``."""
    return f"{type(m).__module__}.{type(m).__qualname__}" in TRANSPOSED_LAYERS


def host_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every layer of ``model`` that can host a weight watermark (:data:`HOST_TYPES`, Hugging Face ``Conv1D``),
    by qualified name, in model order."""
    return {n: m for n, m in model.named_modules() if n and (isinstance(m, HOST_TYPES) or transposed(m))
            and isinstance(getattr(m, "weight", None), torch.Tensor)}


def host_layer(model: nn.Module, name: str) -> nn.Module:
    """The host-capable layer called ``name`` (:func:`host_layers`); ArchitectureError listing them otherwise."""
    layers = host_layers(model)
    if name not in layers:
        arch = getattr(model, ARCH_ATTR, None)
        label = arch["name"] if isinstance(arch, dict) and "name" in arch else type(model).__name__
        shown = list(layers)
        raise ArchitectureError(f"model {label!r} has no layer {name!r} that can host a watermark; such layers: "
                                f"{', '.join(shown[:12]) or 'none'}{' ...' if len(shown) > 12 else ''}")
    return layers[name]


def unit_major(m: nn.Module) -> torch.Tensor:
    """``m``'s weight with its output units first (a Hugging Face ``Conv1D``'s transposed; an ``Embedding``'s rows
    are its units): the layout every weight watermark reads, so that the same layer gives the same host vector
    whatever class implements it."""
    w = m.weight
    if not isinstance(w, torch.Tensor):
        raise ArchitectureError(f"{type(m).__name__} has no weight")
    return w.t() if transposed(m) else w


def conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Spatial output size of a convolution / pooling layer (floor mode)."""
    return (size + 2 * padding - kernel) // stride + 1


def check_spatial(model: str, image_size: int, sizes: list[tuple[str, int]]) -> None:
    """Raise if any layer's spatial output (``(layer, size)`` pairs, in order) is below 1×1."""
    for layer, size in sizes:
        if size < 1:
            raise ArchitectureError(f"model {model!r} cannot take {image_size}x{image_size} inputs: the feature map "
                                    f"shrinks below 1x1 at {layer} (use larger images or more padding).")


def check_fraction(model: str, arg: str, value: float) -> None:
    """Raise unless ``0 <= value < 1`` (dropout probabilities)."""
    if not 0.0 <= value < 1.0:
        raise ArchitectureError(f"model {model!r}: argument {arg!r} must be in [0, 1), got {value}.")


def check_positive(model: str, arg: str, value: float) -> None:
    """Raise unless ``value > 0`` (width multipliers)."""
    if not value > 0.0:
        raise ArchitectureError(f"model {model!r}: argument {arg!r} must be > 0, got {value}.")


def scaled(channels: int, width: float) -> int:
    """``channels`` scaled by a width multiplier, at least 1."""
    return max(1, round(channels * width))
