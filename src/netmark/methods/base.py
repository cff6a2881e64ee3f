"""The protocol every watermarking scheme implements, and its single registry.

A method is a class with a validated dataclass config (torchao style: ``Method(Config(...))``)
registered once with :func:`register_method`; the registry, the CLI and the test table
(``tests/test_methods.py`` is parametrised over :data:`METHODS`) all read that one dict.

Life cycle of a multi-bit watermark::

    method = Uchida(UchidaConfig(layer="conv2", bits=256))
    key = method.create_key(model, seed=1)          # secret; never stored in the model
    hook = method.hook(key)                         # a TrainHook: adds the embedding loss
    train(model, data, TrainConfig(...), hooks=[hook])
    key = method.finalize(key, model, hook=hook)    # the key's final form (from the hook's state)
    result = method.verify(model, key)              # VerificationResult with a p-value

or all at once: ``model, key, run = method.embed(model, data, TrainConfig(...), seed=1)``.

A method declares what it is (:class:`~netmark.methods.traits.MethodTraits`: payload kind, query-verifiable, what
its key needs) and its embedding phases (:meth:`WatermarkMethod.prepare`, :meth:`WatermarkMethod.hook`,
:meth:`WatermarkMethod.finalize`; :mod:`netmark.methods.phases`); :meth:`WatermarkMethod.embed` runs them and ends
with a check (:mod:`netmark.methods.check`): the owner's key is verified on the trained model and its accuracy is
tested against chance; ``run.check`` holds the outcome and a warning is logged when the watermark is not detected
or the task is at chance. No method overrides ``embed`` or ``create_key`` (it implements ``_create_key``), so every
key's inputs are checked against the traits and every embedding is checked.
"""

from __future__ import annotations

import logging
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, ClassVar, Self, TypeVar

import torch
from torch import nn
from torch.utils.data import Dataset

from netmark._util import add_to_registry
from netmark.draws import KeyRoot, check_root, draw, new_root
from netmark.errors import ArchitectureError, ConfigError, KeyFileError
from netmark.keys import WatermarkKey, str_to_bits
from netmark.methods.check import EmbedResult, check_embedding
from netmark.methods.dispatch import METHODS  # the registry: a leaf module, so no import cycle
from netmark.methods.phases import EmbedPrep
from netmark.methods.traits import MethodTraits
from netmark.training import TrainConfig, TrainHook, train
from netmark.verify import DEFAULT_ALPHA, VerificationResult, bit_match_result

log = logging.getLogger(__name__)


#: key tensors that hold a null measured by the key's maker (trigger sets' reference models, Wang's null inputs)
NULL_TENSORS = ("null_counts", "null_rates")


def without_null(key: WatermarkKey) -> WatermarkKey:
    """``key`` without the null it stores about itself (:data:`NULL_TENSORS`)."""
    return replace(key, tensors={k: v for k, v in key.tensors.items() if k not in NULL_TENSORS})


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

    Subclasses set ``name``, ``config_cls``, ``paper`` and ``TRAITS`` (:class:`~netmark.methods.traits.MethodTraits`)
    and implement :meth:`_create_key`, :meth:`hook`, :meth:`extract` and :meth:`example_config`; where needed
    :meth:`prepare` and :meth:`finalize` (the embedding's phases). The default :meth:`verify` compares extracted
    bits with the key's message under the binomial null.
    """

    name: ClassVar[str]
    config_cls: ClassVar[type[MethodConfig]]
    paper: ClassVar[str] = ""
    #: what the method is (payload kind, query-verifiable, what a key needs); :meth:`traits` may derive it from the
    #: config instead (a method with white- and black-box modes)
    TRAITS: ClassVar[MethodTraits] = MethodTraits(payload="bits")
    #: the behaviour version: bump it when the method's numerical output (key, embedded model) changes for the same
    #: config and seeds; cached study runs are keyed by it (with the config), not by source text
    VERSION: ClassVar[int] = 1
    #: what a key's config holds beyond the method's config (e.g. a trigger set's ``num_classes``)
    KEY_CONFIG_EXTRAS: ClassVar[tuple[str, ...]] = ()
    #: key tensors that training (not the key's root) determines: not compared when a claimed key's material is
    #: re-derived (:mod:`netmark.methods.ownership`)
    TRAINED_TENSORS: ClassVar[tuple[str, ...]] = ()
    #: the key's material re-derives from its root (and, where the traits say so, the training images); False for a
    #: key crafted on the model being marked (:meth:`check_crafted` then checks what can be checked)
    REDERIVABLE: ClassVar[bool] = True

    def check_crafted(self, key: WatermarkKey, data: Dataset | None) -> str | None:
        """A key that cannot be re-derived (``REDERIVABLE = False``): why its material is not what this method
        crafts from ``data`` (``None``: it is). Default: nothing to check."""
        return None

    def null_for_verifier(self, key: WatermarkKey, model: nn.Module, *,
                          null_models: Sequence[Any] | None = None) -> WatermarkKey:
        """``key`` with its null measured by the verifier, nothing kept of the null the key stores about itself
        (what a claim check decides with: :mod:`netmark.methods.ownership`). ``null_models``: models the verifier
        trained without the key, for nulls that are measured on models. Default: the key without stored null
        tensors (an exact null needs none)."""
        return without_null(key)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "embed" in cls.__dict__ or "_embed" in cls.__dict__:
            raise TypeError(f"{cls.__name__} overrides embed() or _embed(): declare its phases (prepare, hook, "
                            "finalize) instead, so that every embedding runs them alike and ends with the check of "
                            "WatermarkMethod.embed")
        if "create_key" in cls.__dict__:
            raise TypeError(f"{cls.__name__} overrides create_key(): implement _create_key() instead, so that the "
                            "key's inputs are checked against the method's traits")

    def __init__(self, config: MethodConfig | None = None) -> None:
        cfg = config if config is not None else self.config_cls()
        if not isinstance(cfg, self.config_cls):
            raise ConfigError(f"{type(self).__name__} needs a {self.config_cls.__name__}, got {type(cfg).__name__}")
        self.config = cfg

    @classmethod
    def from_key(cls, key: WatermarkKey) -> Self:
        """The method (with its config) that made ``key``; KeyFileError unless the key is well-formed for it
        (:meth:`check_key_tensors`)."""
        if key.method != cls.name:
            raise KeyFileError(f"key is for method {key.method!r}, not {cls.name!r}")
        known = {k: v for k, v in key.config.items() if k not in cls.KEY_CONFIG_EXTRAS}
        try:
            method = cls(cls.config_cls.from_dict(known))
        except (ConfigError, TypeError) as e:
            raise KeyFileError(f"key has an invalid {cls.name} config: {e}") from None
        method.check_key_tensors(key)
        return method

    def check_key_tensors(self, key: WatermarkKey) -> None:
        """KeyFileError unless ``key``'s tensors (and message) are what this method's keys hold. Default: nothing
        (the method's :meth:`extract` refuses what it cannot read)."""
        return None

    # ------------------------------------------------------------------ what the method is

    def traits(self) -> MethodTraits:
        """What this method is (its config's mode where it has several); default: the class's ``TRAITS``."""
        return self.TRAITS

    def query_verifiable(self) -> bool:
        """Whether a suspect's answers alone (a prediction API) verify this method's keys (black box)."""
        return self.traits().query_verifiable

    @property
    def white_box(self) -> bool:
        """Verification reads the suspect's weights or activations (not :meth:`query_verifiable`)."""
        return not self.query_verifiable()

    def verify_query(self, predict: Callable[[torch.Tensor], torch.Tensor | Sequence[int]], key: WatermarkKey, *,
                     alpha: float = DEFAULT_ALPHA) -> VerificationResult:
        """Verify ``key`` from a suspect's answers alone (``predict``: a prediction API); only methods that are
        :meth:`query_verifiable` (the trigger-set family) implement it."""
        raise ConfigError(f"{self.name!r} keys are verified from the model itself, not through its predictions")

    def describe(self, res: VerificationResult, *, with_ber: bool = False) -> str:
        """What a verification of this method reached, in words (:meth:`MethodTraits.describe`)."""
        return self.traits().describe(res, with_ber=with_ber)

    @classmethod
    def example_config(cls) -> MethodConfig:
        """A small config that embeds on digits with a simple-cnn (12 epochs, lr 0.05, batch 64) and is detected:
        the method tests, the DDP tests and the evaluation presets start from it (:mod:`netmark.methods.examples`)."""
        raise NotImplementedError(f"{cls.__name__} has no example_config()")

    @classmethod
    def example_variants(cls) -> dict[str, MethodConfig]:
        """Further small configs (another mode or variant) by name; the method tests run them too."""
        return {}

    # ------------------------------------------------------------------ the key

    def check_key_inputs(self, *, data: Dataset | None = None, payload: torch.Tensor | None = None,
                         message: str | None = None) -> None:
        """ConfigError unless ``data`` / ``payload`` / ``message`` fit :meth:`traits` (given where needed, only
        where taken)."""
        t = self.traits()
        if message is not None and not t.takes_message:
            what = "a zero-bit watermark (a trigger set)" if t.payload == "labels" else "real values (a payload)"
            raise ConfigError(f"{self.name} embeds {what}; it takes no message")
        if payload is not None and not t.takes_payload:
            raise ConfigError(f"{self.name} embeds {t.payload}; payload= is for methods that embed real values")
        if payload is None and t.needs_payload:
            raise ConfigError(f"{self.name} embeds a payload: pass payload=")
        if data is None and t.needs_data:
            raise ConfigError(f"{self.name} makes its key from training images: pass data=")

    def create_key(self, model: nn.Module, *, seed: int | None = None, data: Dataset | None = None,
                   payload: torch.Tensor | None = None, message: str | None = None,
                   root: KeyRoot | None = None) -> WatermarkKey:
        """Generate the secret key for embedding into ``model`` (checks the host layer).

        Its material is drawn from ``root`` (32 secret bytes, e.g. a claim's) or, by default, from a fresh secret
        root out of the OS CSPRNG (:mod:`netmark.draws`); ``seed``: draw it from this research seed instead
        (reproducible, and guessable: the key says so).

        ``data``: the training set (methods whose traits say ``needs_data``; others may read the input shape from
        it); ``payload``: real values in [0, 1] (``values`` methods; any shape, recorded in the key); ``message``:
        a 0/1 string (``bits`` methods; default a random one). What a method does not take is refused."""
        self.check_key_inputs(data=data, payload=payload, message=message)
        if seed is not None and root is not None:
            raise ConfigError("pass seed= (a research key) or root= (a secret one), not both")
        key_root = check_root(root if root is not None else seed if seed is not None else new_root())
        return self._create_key(model, root=key_root, data=data, payload=payload, message=message)

    @abstractmethod
    def _create_key(self, model: nn.Module, *, root: KeyRoot, data: Dataset | None, payload: torch.Tensor | None,
                    message: str | None) -> WatermarkKey:
        """The key itself (its inputs already checked by :meth:`create_key`), every random draw from
        :func:`netmark.draws.draw` ``(root, k)``."""

    def key_for(self, model: nn.Module, *, root: KeyRoot, layer: str | None, message: str | None = None,
                bits: int | None = None, tensors: dict[str, torch.Tensor], message_random: bool | None = None,
                **config_extra: Any) -> WatermarkKey:
        """A key of this method for ``model``: ``message`` (multi-bit: ``bits`` long, checked; default a random one
        from ``root``), the config with the resolved host ``layer`` (when given) plus ``config_extra``, and
        ``model``'s architecture (``None`` for a model :func:`netmark.models.build` did not make).
        ``message_random``: default, whether the message was drawn here."""
        if bits is not None:
            check_message(message, bits)
        msg = message if message is not None or bits is None else random_message(bits, root)
        cfg = replace(self.config, layer=layer) if layer is not None else self.config  # type: ignore[call-arg]
        hosts = None
        if self.traits().reads_weights:
            from netmark.models import host_layers, transposed

            turned = {f"{n}.weight" for n, m in host_layers(model).items() if transposed(m)}
            hosts = {n: {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch."),
                         **({"transposed": True} if n in turned else {})}
                     for n, t in self.host_tensors(model, layer).items()}
        return WatermarkKey(method=self.name, layer=layer, message=msg or "", tensors=tensors, hosts=hosts,
                            config={**cfg.to_dict(), **config_extra}, arch=arch_or_none(model),
                            seed=root if isinstance(root, int) else None,
                            root=root.hex() if isinstance(root, bytes) else None,
                            message_random=message is None if message_random is None else message_random)

    def host_tensors(self, model: nn.Module, layer: str | None) -> dict[str, torch.Tensor]:
        """The named weight tensors of ``model`` the extraction reads (methods with ``reads_weights``; recorded in
        the key as ``hosts``). Default: the host layer's weight."""
        from netmark.models import host_layer

        return {f"{layer}.weight": host_layer(model, layer).weight} if layer else {}  # type: ignore[dict-item]

    def host_names(self, key: WatermarkKey) -> dict[str, Any]:
        """The tensors to read from a suspect file for ``key``: its ``hosts``, or for a key written before they were
        recorded the host layer's weight (shape unchecked)."""
        if key.hosts is not None:
            return key.hosts
        if not self.traits().reads_weights or not key.layer:
            raise ConfigError(f"{self.name} keys are verified on a model (a forward pass or its predictions), not "
                              "on weights alone")
        return {f"{key.layer}.weight": None}

    def verify_weights(self, source: Any, key: WatermarkKey, *, alpha: float = DEFAULT_ALPHA) -> VerificationResult:
        """Verify ``key`` on the named weights of ``source`` (a :class:`netmark.weights.WeightFile`, or a path),
        whatever architecture the file belongs to (:mod:`netmark.weights`): only for methods that read weights
        (``MethodTraits.reads_weights``); ConfigError for others, ArchitectureError when a tensor is missing (and no
        tensor of its shape stands in for it: :mod:`netmark.methods.weights_verify`) or has another shape. Alignment
        needs the model's graph, so the suspect is read as it is."""
        from netmark.methods.weights_verify import verify_file
        from netmark.weights import WeightFile

        if not self.traits().reads_weights:
            raise ConfigError(f"{self.name} keys are verified on a model (a forward pass or its predictions), not on "
                              "weights alone")
        file = source if isinstance(source, WeightFile) else WeightFile(source)
        return verify_file(self, file, key, alpha=alpha)

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
              seed: int | None = None, key: WatermarkKey | None = None, message: str | None = None,
              payload: torch.Tensor | None = None, eval_data: Dataset | None = None, teacher: nn.Module | None = None,
              null_models: Sequence[Any] | None = None, warn: bool = True,
              ) -> tuple[nn.Module, WatermarkKey, EmbedResult]:
        """Train ``model`` (in place) on ``data`` while embedding, then check it; returns (model, key, run).

        ``seed``: draw the key from this research seed (default: a secret root from the OS CSPRNG; see
        :meth:`create_key`). Train-to-embed: pass a freshly built model. Fine-tune-to-embed: pass a trained one.
        Distill-to-embed: pass ``teacher`` (its soft predictions replace the labels). ``message`` / ``payload``:
        as :meth:`create_key` (unless ``key`` is given). ``null_models``: models trained without the key that
        calibrate a trigger set's null (:meth:`finalize`). The phases: :mod:`netmark.methods.phases`.

        The check (:func:`netmark.methods.check.check_embedding`): the owner's ``key`` is verified on the
        trained model and its accuracy on ``eval_data`` (else on ``data``) is tested against the
        majority-class rate. ``run`` is a :class:`~netmark.training.TrainResult` whose ``check`` holds the
        outcome; when the watermark is not detected or the task is at chance, a warning saying what was
        reached and what to change is logged (``warn=False``: not logged, for callers that report it).
        """
        if key is None:  # before any training
            self.check_key_inputs(data=data, payload=payload, message=message)
        prep = self.prepare(model, data, train_config, key=key, teacher=teacher, eval_data=eval_data,
                            null_models=null_models)
        if key is None:
            key = self.create_key(model, seed=seed, data=data, payload=payload, message=message)
        hook = self.hook(key)
        run = train(model, data, prep.train_config, hooks=[hook], eval_data=eval_data, teacher=teacher)
        key = self.finalize(key, model, hook=hook, data=data, train_config=train_config, seed=seed,
                            unmarked=prep.unmarked, null_models=null_models)
        run = prep.combine(run)
        check = check_embedding(self, model, key, eval_data if eval_data is not None else data,
                                data_name="test" if eval_data is not None else "train")
        problem = check.problem()
        if warn and problem is not None:
            log.warning("%s: %s", self.name, problem)
        return model, key, EmbedResult.of(run, check)

    def prepare(self, model: nn.Module, data: Dataset, train_config: TrainConfig | None, *,
                key: WatermarkKey | None, teacher: nn.Module | None, eval_data: Dataset | None,
                null_models: Sequence[Any] | None) -> EmbedPrep:
        """The embedding's first phase, before the key is made: refuse what the method cannot do, keep what
        :meth:`finalize` needs, train before the hook where the method does. Default: nothing."""
        return EmbedPrep(train_config=train_config)

    def finalize(self, key: WatermarkKey, model: nn.Module, *, hook: TrainHook | None = None,
                 data: Dataset | None = None, train_config: TrainConfig | None = None, seed: int | None = None,
                 unmarked: nn.Module | None = None, null_models: Sequence[Any] | None = None) -> WatermarkKey:
        """The key in its final form once ``model`` is trained with ``hook`` (a new key; ``key`` is not changed).

        Call it after your own training loop too (README). Default: ``key`` itself. Wang et al.: the extractor the
        hook trained and its measured null. Trigger sets with image-dependent labels: the null calibrated on
        ``null_models`` (or on reference models trained on ``data`` with ``train_config``; ``unmarked``: their
        architecture, default ``model``'s). DeepSigns' black box: the candidates selected against ``unmarked``."""
        return key

    def embed_advice(self, *, at_chance: bool) -> str:
        """What to change when :meth:`embed`'s check fails, in terms of ``netmark embed`` options (one sentence).

        ``at_chance``: the task did not learn (else: it learnt, but the watermark is not detected). Methods
        override this with their own levers; this default names the training ones."""
        if at_chance:
            return "The task did not learn: lower --lr or --momentum (SGD), or train longer (--epochs)."
        return "Train longer (--epochs) or raise the embedding strength (--strength)."


def arch_or_none(model: nn.Module) -> dict[str, Any] | None:
    """``model``'s registry architecture (:func:`netmark.models.arch_of`), or ``None`` when it has none."""
    from netmark.models import arch_of

    try:
        return arch_of(model)
    except (ArchitectureError, AttributeError, KeyError):
        return None


def drowning_note(strength: float) -> str:
    """What :meth:`WatermarkMethod.embed_advice` adds when the task did not learn and ``--strength`` weighs an
    embedding loss."""
    return f" A large --strength (now {strength:g}) can also drown the task loss."


def check_message(message: str | None, bits: int) -> None:
    """A user-chosen message must be a 0/1 string of exactly ``bits`` characters."""
    if message is None:
        return
    str_to_bits(message)
    if len(message) != bits:
        raise ConfigError(f"message has {len(message)} bits but bits={bits}")


#: the stream of a secret root that draws the message (:func:`random_message`)
MESSAGE_STREAM = -1


def random_message(bits: int, root: KeyRoot) -> str:
    """A uniformly random bit string (the p-value is exact only for such messages): from a seed as netmark always
    drew it (Python's ``random.Random(seed)``), from a secret root by its :data:`MESSAGE_STREAM`."""
    if isinstance(root, int):
        rng = random.Random(root)
        return "".join(rng.choice("01") for _ in range(bits))
    return "".join(str(int(b)) for b in draw(root, MESSAGE_STREAM).randint(0, 2, (bits,)))



M = TypeVar("M", bound=type[WatermarkMethod])


def register_method(cls: M) -> M:
    """Class decorator: add a method to :data:`METHODS` under ``cls.name`` (once)."""
    return add_to_registry(METHODS, "watermark method", cls.name, cls)
