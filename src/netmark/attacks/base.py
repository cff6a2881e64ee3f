"""Base class and single registry of attacks: model in → new model out.

Every attack (one file each) is a class ``Attack[XConfig]`` over a validated dataclass config (its type argument
is the attack's ``config_cls``). The base class owns what every attack needs (torchattacks style): it deep-copies
the victim so the input model is never modified, seeds the run locally (torch's global RNG is forked and restored),
puts the result in eval mode and rejects NaN/Inf results.

Docstring template of an attack: paper/section, threat model, args with paper defaults,
example.
"""

from __future__ import annotations

import copy
import typing
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Generic, TypeVar, cast

import torch
from torch import nn
from torch.utils.data import Dataset

from netmark._util import add_to_registry, generator, seeded
from netmark.errors import ConfigError
from netmark.io import check_finite
from netmark.training import TrainConfig


@dataclass
class AttackConfig:
    """Base of attack configs. ``seed`` drives everything random in the attack."""

    seed: int = 0

    def training_epochs(self) -> float:
        """The attack's compute budget in passes over its data (issue 23's compute axis): the epochs of every
        :class:`TrainConfig` field plus an ``epochs`` field (distillation); 0 for an attack that does not train. An
        attack that trains another way overrides it."""
        total = 0.0
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, TrainConfig):
                total += v.epochs
            elif f.name == "epochs" and isinstance(v, int | float) and not isinstance(v, bool):
                total += v
        return total

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data; a training schedule field as :meth:`TrainConfig.to_dict` writes it."""
        d = asdict(self)
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, TrainConfig):
                d[f.name] = value.to_dict()
        return d


C = TypeVar("C", bound=AttackConfig)


class Attack(ABC, Generic[C]):
    """An attack on a (watermarked) model; call it: ``attacked = attack(model, data)``.

    ``class Prune(Attack[PruneConfig])`` sets ``config_cls`` to ``PruneConfig`` (or set ``config_cls`` yourself)."""

    name: ClassVar[str]
    config_cls: ClassVar[type[AttackConfig]]
    config: C
    needs_data: ClassVar[bool] = False
    #: it rewrites tensors one by one and needs no forward pass, so it also runs on a file whose architecture
    #: cannot be rebuilt (``netmark attack`` on a plain state dict: :func:`netmark.weights.state_shell`)
    tensor_only: ClassVar[bool] = False
    #: the behaviour version: bump it when the attack's output changes for the same config, model and seed;
    #: cached study runs are keyed by it (with the config), not by source text
    VERSION: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in cls.__dict__.get("__orig_bases__", ()):
            arg = next(iter(typing.get_args(base)), None)
            if "config_cls" not in cls.__dict__ and isinstance(arg, type) and issubclass(arg, AttackConfig):
                cls.config_cls = arg

    @classmethod
    def example_config(cls) -> AttackConfig:
        """A small config that runs in about a second on a tiny model (the attack contract tests start from it;
        ``tests/test_attacks.py`` may state a smaller one). Default: the config's defaults."""
        return cls.config_cls()

    def __init__(self, config: C | None = None) -> None:
        cfg = config if config is not None else self.config_cls()
        if not isinstance(cfg, self.config_cls):
            raise ConfigError(f"{type(self).__name__} needs a {self.config_cls.__name__}")
        self.config = cast(C, cfg)

    def __call__(self, model: nn.Module, data: Dataset | None = None) -> nn.Module:
        if self.needs_data and data is None:
            raise ConfigError(f"the {self.name} attack needs training data")
        victim = copy.deepcopy(model)
        with seeded(self.config.seed):
            out = self.apply(victim, data)
        out.eval()
        check_finite(out, source=f"model after the {self.name} attack")
        return out

    @abstractmethod
    def apply(self, model: nn.Module, data: Dataset | None) -> nn.Module:
        """Attack ``model`` (a private copy; may be modified in place) and return the result."""


class TensorAttack(Attack[C]):
    """An attack that rewrites the model tensor by tensor, in place: each of :meth:`targets` becomes
    :meth:`transform` of itself (prune, quantize, fixed point, round trip). ``gen`` is one generator seeded with the
    config's ``seed`` per call, drawn from by the tensors in turn. The config has a ``layer`` field (``None``: the
    whole model) and, to rewrite every floating-point tensor rather than the conv/linear weights, ``include_buffers``.
    """

    tensor_only = True

    def apply(self, model: nn.Module, data: Dataset | None) -> nn.Module:
        gen = generator(self.config.seed)
        with torch.no_grad():
            for t in self.targets(model).values():
                t.copy_(self.transform(t, gen))
        return model

    def targets(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The tensors to rewrite, by name: :func:`target_tensors` when the config has ``include_buffers``, else
        :func:`layer_weights`."""
        layer, include_buffers = getattr(self.config, "layer", None), getattr(self.config, "include_buffers", None)
        return layer_weights(model, layer) if include_buffers is None else target_tensors(model, layer, include_buffers)

    @abstractmethod
    def transform(self, t: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """The new value of tensor ``t`` (a new tensor of its shape and dtype)."""


def layer_weights(model: nn.Module, layer: str | None) -> dict[str, torch.Tensor]:
    """The ``weight`` of the named layer, or of every convolution and linear layer when ``layer`` is None: Conv1d/2d/3d,
    Linear and Hugging Face's ``Conv1D`` (GPT-2's hidden layers; :func:`netmark.models.host_layers` without the
    embedding tables)."""
    from netmark.models import host_layer, host_layers

    layers = ({layer: host_layer(model, layer)} if layer else
              {n: m for n, m in host_layers(model).items() if not isinstance(m, nn.Embedding)})
    return {name: cast(torch.Tensor, mod.weight) for name, mod in layers.items()}


def target_tensors(model: nn.Module, layer: str | None, include_buffers: bool = False) -> dict[str, torch.Tensor]:
    """The floating-point parameters (and, with ``include_buffers``, floating-point buffers such as
    BatchNorm running statistics) of the named conv/linear layer, or of the whole model when
    ``layer`` is None, keyed by their ``state_dict`` name. Integer buffers (``num_batches_tracked``)
    are never included."""
    from netmark.models import get_layer

    root, prefix = (get_layer(model, layer), layer + ".") if layer else (model, "")
    named = list(root.named_parameters()) + (list(root.named_buffers()) if include_buffers else [])
    return {prefix + n: t for n, t in named if t.is_floating_point()}


ATTACKS: dict[str, type[Attack[Any]]] = {}
A = TypeVar("A", bound=type[Attack[Any]])


def register_attack(cls: A) -> A:
    """Class decorator: add an attack to :data:`ATTACKS` under ``cls.name`` (once)."""
    return add_to_registry(ATTACKS, "attack", cls.name, cls)
