"""The protocol every watermarking scheme implements, and its single registry.

A method is a class with a validated dataclass config (torchao style: ``Method(Config(...))``)
registered once with :func:`register_method`; the registry, the CLI and the test table
(``tests/test_methods.py`` is parametrised over :data:`METHODS`) all read that one dict.

Life cycle of a multi-bit watermark::

    method = Uchida(UchidaConfig(layer="conv2", bits=256))
    key = method.create_key(model, seed=1)          # secret; never stored in the model
    hook = method.hook(key)                         # a TrainHook: adds the embedding loss
    train(model, data, TrainConfig(...), hooks=[hook])
    result = method.verify(model, key)              # VerificationResult with a p-value

or all at once: ``model, key, run = method.embed(model, data, TrainConfig(...), seed=1)``.

:meth:`WatermarkMethod.embed` ends with a check (:mod:`netmark.methods.check`): the owner's key is verified
on the trained model and its accuracy is tested against chance; ``run.check`` holds the outcome and a
warning is logged when the watermark is not detected or the task is at chance. Subclasses implement
:meth:`WatermarkMethod._embed` (the training) and never override ``embed`` itself, so every method is checked.
"""

from __future__ import annotations

import logging
import random
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Self, TypeVar

import torch
from torch import nn
from torch.utils.data import Dataset

from netmark.errors import ConfigError, KeyFileError
from netmark.keys import WatermarkKey, str_to_bits
from netmark.methods.check import EmbedResult, check_embedding
from netmark.training import TrainConfig, TrainHook, TrainResult, train
from netmark.verify import DEFAULT_ALPHA, VerificationResult, bit_match_result

log = logging.getLogger(__name__)


@dataclass
class MethodConfig:
    """Base of every method config; subclasses validate in ``__post_init__``."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"{cls.__name__} has no option(s) {', '.join(unknown)}")
        return cls(**d)


@dataclass
class Extraction:
    """What a method reads out of a model: bits (multi-bit) and the raw scores behind them."""

    bits: torch.Tensor
    scores: torch.Tensor
    details: dict[str, Any] = field(default_factory=dict)


class WatermarkMethod(ABC):
    """Base class of watermarking schemes (one file per scheme under ``netmark.methods``).

    Subclasses set ``name``, ``config_cls``, ``paper`` and ``white_box`` and implement
    :meth:`create_key`, :meth:`hook` and :meth:`extract`; the default :meth:`verify`
    compares extracted bits with the key's message under the binomial null.
    """

    name: ClassVar[str]
    config_cls: ClassVar[type[MethodConfig]]
    paper: ClassVar[str] = ""
    white_box: ClassVar[bool] = True
    #: the behaviour version: bump it when the method's numerical output (key, embedded model) changes for the same
    #: config and seeds; cached study runs are keyed by it (with the config), not by source text
    VERSION: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "embed" in cls.__dict__:
            raise TypeError(f"{cls.__name__} overrides embed(): implement _embed() instead, so that every embedding "
                            "ends with the check of WatermarkMethod.embed")

    def __init__(self, config: MethodConfig | None = None) -> None:
        cfg = config if config is not None else self.config_cls()
        if not isinstance(cfg, self.config_cls):
            raise ConfigError(f"{type(self).__name__} needs a {self.config_cls.__name__}, got {type(cfg).__name__}")
        self.config = cfg

    @classmethod
    def from_key(cls, key: WatermarkKey) -> Self:
        if key.method != cls.name:
            raise KeyFileError(f"key is for method {key.method!r}, not {cls.name!r}")
        try:
            return cls(cls.config_cls.from_dict(key.config))
        except (ConfigError, TypeError) as e:
            raise KeyFileError(f"key has an invalid {cls.name} config: {e}") from None

    @abstractmethod
    def create_key(self, model: nn.Module, *, seed: int, message: str | None = None) -> WatermarkKey:
        """Generate the secret key for embedding into ``model`` (checks the host layer)."""

    @abstractmethod
    def hook(self, key: WatermarkKey) -> TrainHook:
        """A training hook that embeds the watermark of ``key`` while the model trains."""

    @abstractmethod
    def extract(self, model: nn.Module, key: WatermarkKey) -> Extraction:
        """Read the watermark of ``key`` out of ``model``."""

    def verify(self, model: nn.Module, key: WatermarkKey, *, alpha: float = DEFAULT_ALPHA) -> VerificationResult:
        """Decide whether ``model`` carries the watermark of ``key`` (binomial p-value)."""
        ex = self.extract(model, key)
        return bit_match_result(ex.bits, key.bits, method=self.name, alpha=alpha, details=ex.details,
                                exact_null=key.message_random)

    def embed(self, model: nn.Module, data: Dataset, train_config: TrainConfig | None = None, *,
              seed: int = 0, key: WatermarkKey | None = None, message: str | None = None,
              eval_data: Dataset | None = None, teacher: nn.Module | None = None, warn: bool = True,
              **options: Any) -> tuple[nn.Module, WatermarkKey, EmbedResult]:
        """Train ``model`` (in place) on ``data`` while embedding, then check it; returns (model, key, run).

        Train-to-embed: pass a freshly built model. Fine-tune-to-embed: pass a trained one.
        Distill-to-embed: pass ``teacher`` (its soft predictions replace the labels). ``options`` go to the
        method's :meth:`_embed` (trigger sets: ``null_models``).

        The check (:func:`netmark.methods.check.check_embedding`): the owner's ``key`` is verified on the
        trained model and its accuracy on ``eval_data`` (else on ``data``) is tested against the
        majority-class rate. ``run`` is a :class:`~netmark.training.TrainResult` whose ``check`` holds the
        outcome; when the watermark is not detected or the task is at chance, a warning saying what was
        reached and what to change is logged (``warn=False``: not logged, for callers that report it).
        """
        model, key, run = self._embed(model, data, train_config, seed=seed, key=key, message=message,
                                      eval_data=eval_data, teacher=teacher, **options)
        check = check_embedding(self, model, key, eval_data if eval_data is not None else data,
                                data_name="test" if eval_data is not None else "train")
        problem = check.problem()
        if warn and problem is not None:
            log.warning("%s: %s", self.name, problem)
        return model, key, EmbedResult.of(run, check)

    def _embed(self, model: nn.Module, data: Dataset, train_config: TrainConfig | None = None, *,
               seed: int = 0, key: WatermarkKey | None = None, message: str | None = None,
               eval_data: Dataset | None = None, teacher: nn.Module | None = None,
               ) -> tuple[nn.Module, WatermarkKey, TrainResult]:
        """The embedding itself (no check): create the key unless given and train with :meth:`hook`."""
        key = key if key is not None else self.create_key(model, seed=seed, message=message)
        run = train(model, data, train_config, hooks=[self.hook(key)], eval_data=eval_data, teacher=teacher)
        return model, key, run

    def embed_advice(self, *, at_chance: bool) -> str:
        """What to change when :meth:`embed`'s check fails, in terms of ``netmark embed`` options (one sentence).

        ``at_chance``: the task did not learn (else: it learnt, but the watermark is not detected). Methods
        override this with their own levers; this default names the training ones."""
        if at_chance:
            return "The task did not learn: lower --lr or --momentum (SGD), or train longer (--epochs)."
        return "Train longer (--epochs) or raise the embedding strength (--strength)."


def check_message(message: str | None, bits: int) -> None:
    """A user-chosen message must be a 0/1 string of exactly ``bits`` characters."""
    if message is None:
        return
    str_to_bits(message)
    if len(message) != bits:
        raise ConfigError(f"message has {len(message)} bits but bits={bits}")


def random_message(bits: int, seed: int) -> str:
    """A uniformly random bit string (the p-value is exact only for such messages)."""
    rng = random.Random(seed)
    return "".join(rng.choice("01") for _ in range(bits))


METHODS: dict[str, type[WatermarkMethod]] = {}


M = TypeVar("M", bound=type[WatermarkMethod])


def register_method(cls: M) -> M:
    """Class decorator: add a method to :data:`METHODS` under ``cls.name`` (once)."""
    if cls.name in METHODS:
        raise ValueError(f"watermark method {cls.name!r} registered twice")
    METHODS[cls.name] = cls
    return cls
