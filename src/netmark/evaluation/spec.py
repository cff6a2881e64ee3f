"""What ``netmark evaluate`` measures: :class:`EvaluationConfig`, the attack :class:`Sweep` s and the presets.

An evaluation trains one unmarked *baseline* model and, per method, one marked model with the same seeds and
schedule (fidelity), probes a ladder of payload sizes (capacity), times training steps with and without the
method's hook (overhead), verifies the key against ``n_independent`` independently trained models (false
positives) and runs every attack sweep on the marked model (robustness).

Data. The official training set is split once (``split_seed``): the owner trains on the ``"train"`` part
(``train_size`` of it), the attacker holds the disjoint ``attacker_size`` images of the ``"val"`` part; accuracy
is measured on the official test set (``test_size`` of it).

Different domain (``other_domain``), for ``Sweep(data="other-domain")``: the thief fine-tunes on another task with
a fresh output layer (Uchida et al. 2017 §4.3, Table 8). ``"auto"`` picks ``"digits"`` (bundled, always
available) for any other dataset and ``"inverted"`` for digits itself; a dataset name is resized (bilinear,
antialiased) to the evaluated input shape, grey ↔ colour by channel mean / repetition, at most
``attacker_size`` of its training images; ``"inverted"`` is the attacker's own images with inverted intensities
(``1 − x``) and labels shifted by one class (``(y + 1) mod C``): other inputs and another task on the same
pixels, cheap and available for every dataset. The accuracy of such a cell is measured on that domain's test set.

Presets (``full``, ``quick``, ``tiny``, ``hf``): :mod:`netmark.evaluation.presets`.

Anti-piracy (:mod:`netmark.evaluation.access`): :func:`protect_config` (a transform kind with ``access_options``)
and the forged-transform attacks on each protected model (:class:`PiracyAttack`, :func:`piracy_attacks`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from netmark._util import check_bool, check_finite, check_int
from netmark.access import KINDS, InputOnlyConfig, PairAttackConfig, ProtectConfig, TransformConfig
from netmark.attacks import ATTACKS, AttackConfig
from netmark.errors import ConfigError, NetmarkError
from netmark.training import TrainConfig
from netmark.verify import DEFAULT_ALPHA

SCHEMA = "netmark-evaluation/1"
SWEEP_DATA = ("none", "attacker", "other-domain", "other-images")
CAPACITY_UNITS = ("bits", "values", "triggers")
#: an attack removes a watermark only if the attacked model's task accuracy stays within this many percentage
#: points of the marked model's (the usefulness bound of Lukas et al., "SoK: How Robust is Image Classification
#: Deep Neural Network Watermarking?", S&P 2022).
DEFAULT_MAX_ACCURACY_DROP = 5.0
Strength = int | float | str


@dataclass
class Sweep:
    """One attack swept over its strength.

    Args:
        attack: a registered attack (:data:`netmark.attacks.ATTACKS`).
        strengths: the values of ``param``, in plotting order.
        unit: what a strength is, for the report (``rate``, ``epochs``, ``bits``, ``dtype``).
        label: unique name of the sweep (``"prune (magnitude)"``, ``"fine-tune (same domain)"``).
        param: the attack-config field a strength sets; ``"epochs"`` of an attack with a ``train`` schedule sets
            that schedule's epochs (the rest of it is the evaluation's training schedule).
        options: further fields of the attack config (``{"order": "random"}``).
        data: what the attack trains on: ``none``, the ``attacker``'s images, the ``other-domain`` data (another
            task: the attacked model is tested on that domain) or ``other-images`` (the other domain's images used
            as queries for the owner's task, e.g. knockoff extraction: tested on the owner's test set).
        data_fraction: the attacker's data budget (issue 23): this share of the owner's training-set size, taken
            from ``data`` (the first images of one seeded order, so a smaller budget's images are part of every
            larger one); None: all of ``data`` (``attacker_size`` images).
    """

    attack: str
    strengths: tuple[Strength, ...]
    unit: str
    label: str
    param: str
    options: dict[str, Any] = field(default_factory=dict)
    data: Literal["none", "attacker", "other-domain", "other-images"] = "none"
    data_fraction: float | None = None

    def __post_init__(self) -> None:
        if self.attack not in ATTACKS:
            raise ConfigError(f"unknown attack {self.attack!r}; known: {', '.join(sorted(ATTACKS))}")
        self.strengths = tuple(self.strengths)
        if not self.strengths or len(set(self.strengths)) != len(self.strengths):
            raise ConfigError(f"sweep {self.label!r} needs distinct strengths, got {list(self.strengths)}")
        if not self.label or not self.unit:
            raise ConfigError("a sweep needs a label and a unit")
        if self.data not in SWEEP_DATA:
            raise ConfigError(f"sweep data must be one of {', '.join(SWEEP_DATA)}, got {self.data!r}")
        if self.data_fraction is not None:
            check_finite("data_fraction", self.data_fraction, positive=True)
            if self.data == "none" or self.data_fraction > 1:
                raise ConfigError(f"sweep {self.label!r}: a data_fraction in (0, 1] needs data (attacker, "
                                  f"other-domain or other-images), got {self.data_fraction!r} with data={self.data!r}")
        cls = ATTACKS[self.attack]
        if cls.needs_data and self.data == "none":
            raise ConfigError(f"the {self.attack} attack trains: give sweep {self.label!r} data='attacker' or "
                              "'other-domain'")
        names = {f.name for f in fields(cls.config_cls)}
        if self.param not in names and not (self.param == "epochs" and "train" in names):
            raise ConfigError(f"{cls.config_cls.__name__} has no field {self.param!r} to sweep")
        unknown = sorted(set(self.options) - names)
        if unknown or self.param in self.options:
            raise ConfigError(f"sweep {self.label!r}: bad options {unknown or [self.param]} for {self.attack}")
        for s in self.strengths:  # every point must make a valid attack config
            if isinstance(s, bool) or not isinstance(s, int | float | str):
                raise ConfigError(f"sweep {self.label!r}: strength {s!r} is not a number or a string")
            self.attack_config(s, train=TrainConfig(progress=False), seed=0)

    def attack_config(self, strength: Strength, *, train: TrainConfig, seed: int, method: str | None = None,
                      method_options: Mapping[str, Any] | None = None) -> AttackConfig:
        """The attack config of one point: ``options`` + the strength; a ``train`` schedule, the optimizer
        settings (``lr``, ``optimizer``, ``batch_size``) and an overwriting ``method`` come from the evaluation."""
        cls = ATTACKS[self.attack].config_cls
        names = {f.name for f in fields(cls)}
        kw: dict[str, Any] = {"seed": seed, **self.options}
        if "train" in names and "train" not in kw:
            kw["train"] = replace(train, seed=seed, progress=False)
        if self.param == "epochs" and "train" in names:
            if isinstance(strength, bool) or not isinstance(strength, int) or strength < 0:
                raise ConfigError(f"sweep {self.label!r}: epochs must be integers >= 0, got {strength!r}")
            kw["train"] = replace(kw["train"], epochs=strength)
        else:
            kw[self.param] = strength
        for name in ("lr", "optimizer", "batch_size"):
            if name in names and name not in kw:
                kw[name] = getattr(train, name)
        if method is not None and "method" in names and "method" not in self.options:
            kw["method"], kw["method_config"] = method, dict(method_options or {})
        try:
            return cls(**kw)
        except TypeError as e:
            raise ConfigError(f"sweep {self.label!r}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        d = {"attack": self.attack, "label": self.label, "unit": self.unit, "strengths": list(self.strengths),
             "param": self.param, "options": dict(self.options), "data": self.data}
        return d if self.data_fraction is None else {**d, "data_fraction": self.data_fraction}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Sweep:
        return cls(**{**d, "strengths": tuple(d["strengths"])})


def default_sweeps(*, rates: Sequence[float] = (0.0, 0.25, 0.5, 0.65, 0.8, 0.9, 0.95),
                   finetune_epochs: Sequence[int] = (0, 1, 2, 5, 10),
                   fixed_point_bits: Sequence[int] = (16, 12, 10, 8, 6, 4, 2),
                   quantize_bits: Sequence[int] = (8, 6, 4, 3, 2),
                   overwrite_epochs: Sequence[int] = (1, 5, 10),
                   distill_epochs: Sequence[int] = (1, 5, 10, 20),
                   obfuscation: Sequence[float] = (0.0, 0.5, 1.0),
                   dummy_widths: Sequence[float] = (0.0, 0.5, 1.0),
                   obfuscation_finetune_epochs: Sequence[int] = (0, 1)) -> tuple[Sweep, ...]:
    """Every attack of :mod:`netmark.attacks`: pruning of all conv/linear layers in three orders, same- and
    different-domain fine-tuning, fixed point, uniform quantization, fp16/bf16/int8 round trips, overwriting
    with a second key of the method under test, distillation into a fresh model, and the function-preserving
    obfuscations (issue 21): permuting and rescaling a fraction of the hidden unit spaces, adding dummy units (a share
    of every hidden layer's width), and the three followed by fine-tuning."""
    prune = [Sweep("prune", tuple(rates), "rate", f"prune ({what})", "rate", {"order": order})
             for order, what in (("ascending", "magnitude"), ("descending", "largest first"), ("random", "random"))]
    return (
        *prune,
        Sweep("finetune", tuple(finetune_epochs), "epochs", "fine-tune (same domain)", "epochs",
              {"new_head": False}, data="attacker"),
        Sweep("finetune", tuple(finetune_epochs), "epochs", "fine-tune (different domain)", "epochs",
              {"new_head": True}, data="other-domain"),
        Sweep("fixed-point", tuple(fixed_point_bits), "bits", "fixed point", "bits"),
        Sweep("quantize", tuple(quantize_bits), "bits", "quantize", "bits"),
        Sweep("roundtrip", ("fp16", "bf16", "int8"), "dtype", "round trip", "dtype"),
        Sweep("overwrite", tuple(overwrite_epochs), "epochs", "overwrite (same method)", "epochs", data="attacker"),
        Sweep("distill", tuple(distill_epochs), "epochs", "distillation", "epochs", data="attacker"),
        Sweep("permute", tuple(obfuscation), "fraction", "permute (hidden units)", "fraction"),
        Sweep("rescale", tuple(obfuscation), "fraction", "rescale (hidden units)", "fraction"),
        Sweep("dummy-neurons", tuple(dummy_widths), "width", "dummy neurons (share of width)", "width"),
        Sweep("obfuscate", tuple(obfuscation_finetune_epochs), "epochs", "dummy + permute + rescale, then fine-tune",
              "epochs", data="attacker"),
    )


# ---------------------------------------------------------------------- anti-piracy (netmark.evaluation.access)


PROTECT_FIELDS = ("alpha", "beta", "gamma", "raw_pass")
TRANSFORM_FIELDS = ("sigma", "p", "hidden")


def protect_config(kind: str, options: dict[str, Any], seed: int) -> ProtectConfig:
    """The :class:`ProtectConfig` of transform ``kind`` with ``options`` (ProtectConfig's ``alpha``, ``beta``,
    ``gamma``, ``raw_pass`` and TransformConfig's ``sigma``, ``p``, ``hidden``); ConfigError on anything else."""
    if kind not in KINDS:
        raise ConfigError(f"unknown anti-piracy transform {kind!r}; choose from {', '.join(KINDS)}")
    unknown = sorted(set(options) - {*PROTECT_FIELDS, *TRANSFORM_FIELDS})
    if unknown:
        raise ConfigError(f"access_options has unknown option(s) {', '.join(unknown)}; known: "
                          f"{', '.join((*PROTECT_FIELDS, *TRANSFORM_FIELDS))}")
    t = TransformConfig(kind, seed=seed, **{k: v for k, v in options.items() if k in TRANSFORM_FIELDS})  # type: ignore[arg-type]
    return ProtectConfig(transform=t, **{k: v for k, v in options.items() if k in PROTECT_FIELDS})


def check_access_config(config: EvaluationConfig) -> None:
    """Validate the access fields of ``config`` (called by ``EvaluationConfig.__post_init__``)."""
    kinds = tuple(config.access)
    if len(set(kinds)) != len(kinds):
        raise ConfigError(f"access lists a transform twice: {list(kinds)}")
    if not isinstance(config.access_options, dict):
        raise ConfigError("access_options must be a mapping of option -> value")
    for kind in kinds:
        protect_config(kind, config.access_options, config.key_seed)
    check_int("piracy_trials", config.piracy_trials)
    for f in config.pair_fractions:
        PairAttackConfig(fraction=f)
    if len(set(config.pair_fractions)) != len(config.pair_fractions):
        raise ConfigError(f"pair_fractions must be distinct, got {list(config.pair_fractions)}")


@dataclass(frozen=True)
class PiracyAttack:
    """A forged-transform attack on a protected model: ``input-only``, ``one-pair`` or the ``pair`` attack fitted
    on a share ``fraction`` of the attacker's images. :attr:`name` is how ``results.json``, the cache keys and the
    job names call it (``"pair@0.5"``); :meth:`named` reads such a name back (a report of stored results)."""

    kind: Literal["input-only", "one-pair", "pair"]
    fraction: float = 1.0

    @property
    def name(self) -> str:
        return f"pair@{self.fraction:g}" if self.kind == "pair" else self.kind

    @property
    def label(self) -> str:
        """Its column in the report."""
        if self.kind == "pair":
            return f"pair attack, {self.fraction:.0%} of the images"
        return "one pair" if self.kind == "one-pair" else self.kind

    @classmethod
    def named(cls, name: str) -> PiracyAttack | None:
        """The attack of :attr:`name` ``name``; None for a name no attack has."""
        if name in ("input-only", "one-pair"):
            return cls(name)  # type: ignore[arg-type]
        try:
            return cls("pair", float(name.removeprefix("pair@"))) if name.startswith("pair@") else None
        except ValueError:
            return None

    def options(self, config: EvaluationConfig) -> dict[str, Any]:
        """Its options under ``config`` (part of its cells' cache keys)."""
        if self.kind == "one-pair":
            return {"index": 0}
        if self.kind == "pair":
            return asdict(PairAttackConfig(fraction=self.fraction, trials=config.piracy_trials,
                                           seed=config.attack_seed))
        t = protect_config("fixed", config.access_options, config.key_seed).transform
        return asdict(InputOnlyConfig(trials=config.piracy_trials, sigma=t.sigma, p=t.p, seed=config.attack_seed))


def piracy_attacks(config: EvaluationConfig, kind: str) -> list[PiracyAttack]:
    """The forged-transform attacks on transform ``kind``: ``input-only``, ``one-pair`` and a ``pair`` attack per
    ``config.pair_fractions`` (generator only)."""
    pairs = [PiracyAttack("pair", float(f)) for f in config.pair_fractions] if kind == "generator" else []
    return [PiracyAttack("input-only"), PiracyAttack("one-pair"), *pairs]


#: payload ladders of the capacity probes, by unit (the full preset's; :mod:`netmark.evaluation.presets`).
FULL_CAPACITY = {"bits": (64, 256, 1024, 4096), "values": (1800, 7200, 28800), "triggers": (100, 400, 1600)}


@dataclass
class EvaluationConfig:
    """One evaluation (see the module docstring); validated on construction.

    Args:
        methods: method name → options of its config (``{"uchida": {"bits": 64}}``); a list of names takes each
            method's defaults.
        model, model_args: the architecture (:func:`netmark.models.build`) for every model.
        dataset: the task (:func:`netmark.data.load`); ``data_dir`` where its files are.
        train: the owner's schedule, for the baseline, marked, independent and capacity models.
        train_size, attacker_size, test_size, split_seed: the data (module docstring); ``None``: all.
        seed: model initialisation and training seed of the baseline and marked models (the key's is seed + 1,
            the independent models' seed + 2000 + i, the attacks' seed + 666).
        n_independent: independently trained models the false-positive test verifies each key against.
        sweeps: the attack sweeps (:func:`default_sweeps`).
        capacity: payload-size ladder per unit (``bits``, ``values``, ``triggers``); empty: no capacity probes.
        overhead_rounds, overhead_steps: interleaved rounds of that many plain and marked training steps.
        other_domain: ``auto``, ``inverted`` or a dataset name (module docstring).
        alpha: significance level of every verification.
        max_accuracy_drop: percentage points of task accuracy an attacked model may lose against the marked model
            and still count as useful; a watermark not detected in a model that lost more was not removed, the
            attack destroyed the model (the report classifies every attacked cell this way).
        access: anti-piracy transforms to evaluate (:mod:`netmark.evaluation.access`; ``fixed``, ``learned``,
            ``generator``); empty: no anti-piracy section.
        access_options: ProtectConfig's ``alpha``, ``beta``, ``gamma``, ``raw_pass`` and TransformConfig's
            ``sigma``, ``p``, ``hidden`` [the paper's: 1, 1, 0.01, 0.1, 0.2, 16].
        forgery: the forgery section (:mod:`netmark.evaluation.forgery`: per method, an owner's model marked under a
            claim and every forgery of :mod:`netmark.attacks.forgery` against it; with ``n_independent`` < 3 its cells
            record that they need 3).
        piracy_trials: forged transforms per piracy attack (input-only draws, pair-attack fits) [paper: 100].
        pair_fractions: shares of the attacker's images whose (raw, processed) pairs the pair attack fits
            [paper: 0.1, 0.5, 1].
        quick, preset: which preset the config came from (reported).
    """

    methods: dict[str, dict[str, Any]]
    model: str = "lenet5"
    dataset: str = "fashion-mnist"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20, optimizer="adam", lr=1e-3,
                                                                   progress=False))
    train_size: int | None = None
    attacker_size: int = 10000
    test_size: int | None = None
    seed: int = 0
    split_seed: int = 0
    n_independent: int = 20
    sweeps: tuple[Sweep, ...] = field(default_factory=default_sweeps)
    capacity: dict[str, tuple[int, ...]] = field(default_factory=lambda: dict(FULL_CAPACITY))
    overhead_rounds: int = 5
    overhead_steps: int = 10
    other_domain: str = "auto"
    alpha: float = DEFAULT_ALPHA
    max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP
    model_args: dict[str, Any] = field(default_factory=dict)
    data_dir: str | None = None
    access: tuple[str, ...] = ("fixed", "learned", "generator")
    access_options: dict[str, Any] = field(default_factory=dict)
    forgery: bool = True
    piracy_trials: int = 100
    pair_fractions: tuple[float, ...] = (0.1, 0.5, 1.0)
    quick: bool = False
    preset: str = "custom"

    def __post_init__(self) -> None:
        from netmark.data import get_spec
        from netmark.methods import get_method
        from netmark.models import MODELS

        if isinstance(self.methods, str):
            raise ConfigError("methods must be a list of names or a mapping name -> options, not a string")
        if not isinstance(self.methods, Mapping):
            self.methods = {str(n): {} for n in self.methods}
        self.methods = {str(n): dict(o or {}) for n, o in self.methods.items()}
        if not self.methods:
            raise ConfigError("an evaluation needs at least one watermark method")
        for name, options in self.methods.items():
            get_method(name).config_cls.from_dict(options)
        if self.model not in MODELS:
            raise ConfigError(f"unknown model {self.model!r}; known: {', '.join(sorted(MODELS))}")
        try:
            ds = get_spec(self.dataset).name
            if self.other_domain not in ("auto", "inverted"):
                get_spec(self.other_domain)
        except NetmarkError as e:
            raise ConfigError(str(e)) from None
        if self.other_domain in (ds, self.dataset):
            raise ConfigError("other_domain must differ from the evaluated dataset")
        if not isinstance(self.train, TrainConfig):
            raise ConfigError("EvaluationConfig.train must be a TrainConfig")
        for name in ("train_size", "test_size"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name))
        for name, low in (("attacker_size", 1), ("n_independent", 1), ("overhead_rounds", 1),
                          ("overhead_steps", 1), ("seed", 0), ("split_seed", 0)):
            check_int(name, getattr(self, name), low)
        check_finite("alpha", self.alpha, positive=True)
        check_finite("max_accuracy_drop", self.max_accuracy_drop, positive=False)
        if self.alpha >= 1 or self.max_accuracy_drop > 100:
            raise ConfigError(f"alpha must lie in (0, 1) and max_accuracy_drop (percentage points) in [0, 100], got "
                              f"{self.alpha!r} and {self.max_accuracy_drop!r}")
        check_bool("forgery", self.forgery)
        self._check_sweeps()
        self._check_capacity()
        if isinstance(self.access, str):
            raise ConfigError("access must be a list of transform kinds, not a string")
        self.access, self.pair_fractions = tuple(self.access), tuple(self.pair_fractions)
        check_access_config(self)

    def _check_sweeps(self) -> None:
        self.sweeps = tuple(self.sweeps)
        if not all(isinstance(s, Sweep) for s in self.sweeps):
            raise ConfigError("sweeps must be Sweep objects")
        labels = [s.label for s in self.sweeps]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"sweep labels must be unique, got {labels}")

    def _check_capacity(self) -> None:
        if not isinstance(self.capacity, Mapping) or set(self.capacity) - set(CAPACITY_UNITS):
            raise ConfigError(f"capacity maps units ({', '.join(CAPACITY_UNITS)}) to payload sizes")
        self.capacity = {u: tuple(v) for u, v in self.capacity.items()}
        for unit, ladder in self.capacity.items():
            for n in ladder:
                check_int(f"capacity[{unit!r}] sizes", n)
            if list(ladder) != sorted(set(ladder)):
                raise ConfigError(f"capacity[{unit!r}] must be increasing, got {list(ladder)}")

    @property
    def key_seed(self) -> int:
        return self.seed + 1

    @property
    def attack_seed(self) -> int:
        return self.seed + 666

    def independent_seed(self, i: int) -> int:
        return self.seed + 2000 + i

    def resolved_other_domain(self) -> str:
        if self.other_domain != "auto":
            return self.other_domain
        return "inverted" if self.dataset == "digits" else "digits"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["train"] = self.train.to_dict()
        d["sweeps"] = [s.to_dict() for s in self.sweeps]
        d["capacity"] = {u: list(v) for u, v in self.capacity.items()}
        d["access"], d["pair_fractions"] = list(self.access), list(self.pair_fractions)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EvaluationConfig:
        """The inverse of :meth:`to_dict` (``results["config"]``); unknown keys raise ConfigError."""
        kw = dict(d)
        extra = ", ".join(sorted(set(kw) - {f.name for f in fields(cls)}))
        if extra:
            raise ConfigError(f"EvaluationConfig has no option(s) {extra}")
        if isinstance(kw.get("train"), Mapping):
            kw["train"] = TrainConfig(**{**kw["train"], "milestones": tuple(kw["train"].get("milestones", ()))})
        if "sweeps" in kw:
            kw["sweeps"] = tuple(s if isinstance(s, Sweep) else Sweep.from_dict(s) for s in kw["sweeps"])
        return cls(**kw)
