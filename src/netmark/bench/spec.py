"""The fields every study's declarations share: a scale's seeds and command, a run's seeds and parentage, and
the helpers their plans and schedules repeat.

A paper's ``Scale`` and ``RunSpec`` subclass :class:`ScaleBase` / :class:`RunSpecBase` and add their own fields
(positional after ``name``); the shared ones are keyword-only, and a paper that seeds its keys differently
redeclares ``key_seed = field(default=..., kw_only=True)``. Cache fingerprints read ``to_dict()`` as canonical
(sorted) JSON, so where a field is declared does not change a run's key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, asdict, dataclass, replace
from typing import Any, ClassVar, TypedDict, TypeVar

from netmark.errors import ConfigError
from netmark.training import TrainConfig

R = TypeVar("R", bound="RunSpecBase")
#: the model/train seeds of the independent models of a false-positive check (``1000 + i``).
INDEPENDENT_SEED = 1000


class Seeds(TypedDict):
    """The seeds of a root run (keyword arguments of a ``RunSpec``)."""

    model_seed: int
    train_seed: int
    key_seed: int


def at_least(obj: Any, minimum: int, *names: str) -> None:
    """ConfigError ``"a, b and c must be >= minimum"`` unless every attribute ``names`` of ``obj`` is."""
    if any(getattr(obj, n) < minimum for n in names):
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
        raise ConfigError(f"{listed} must be >= {minimum}")


def plain_data(value: Any) -> Any:
    """``value`` as its JSON reads back: tuples as lists (recursively), a config as its ``to_dict()``."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [plain_data(v) for v in value]
    if isinstance(value, dict):
        return {k: plain_data(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class ScaleBase:
    """A preset of a study: ``name``, its seeds, torch threads (``None``: torch's setting) and the command line
    that reproduces it (shown in the README).

    Attributes (shared by every paper's ``Scale``):
        model_seed / train_seed / key_seed / split_seed: seeds of initialisation, shuffling, the secret key and
            the data split.
        threads: torch intra-op threads while the runner works (restored afterwards); ``None`` keeps torch's
            setting. A ``quick`` scale uses 1: its tiny models gain nothing from more, and on a shared 2-core
            machine several multi-threaded torch processes slow each other down many-fold.
        command: the command line that reproduces this scale (shown in the README).
    """

    name: str
    _: KW_ONLY
    model_seed: int = 0
    train_seed: int = 0
    key_seed: int = 0
    split_seed: int = 0
    threads: int | None = None
    command: str = ""

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ConfigError("threads must be >= 1 or None")

    @property
    def seeds(self) -> Seeds:
        """The model, train and key seeds of a root run of this scale (keyword arguments of a ``RunSpec``)."""
        return {"model_seed": self.model_seed, "train_seed": self.train_seed, "key_seed": self.key_seed}

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON reads it back (:func:`plain_data`); ``model_args`` pairs as a dict."""
        d = {k: plain_data(getattr(self, k)) for k in asdict(self)}
        if "model_args" in d:
            d["model_args"] = dict(self.model_args)  # type: ignore[attr-defined]
        return d


@dataclass(frozen=True)
class RunSpecBase:
    """One run of a study's plan: ``name`` (the key of ``results["runs"]``), its seeds (initialisation, shuffling,
    key; a derived run's ``train_seed`` seeds its attack), and for a derived run the ``attack`` applied to
    ``parent``.

    ``OPTIONAL`` names fields that ``to_dict()`` leaves out while ``None`` (fields added after runs were cached:
    their default keeps the cached runs' keys)."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ()
    name: str
    _: KW_ONLY
    model_seed: int = 0
    train_seed: int = 0
    key_seed: int = 0
    parent: str | None = None
    attack: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None or k not in self.OPTIONAL}


def independent_run(i: int, prefix: str = "") -> str:
    """``independent-07``: the ``i``-th independent model of a false-positive check (``prefix``: of a study part)."""
    return f"{prefix}independent-{i:02d}"


def independent_specs(cls: Callable[..., R], n: int, name: Callable[[int], str] = independent_run,
                      **fields: Any) -> list[R]:
    """``n`` independent models (own model/train seeds ``1000 + i``, no key) of the run class ``cls``."""
    return [cls(name(i), model_seed=INDEPENDENT_SEED + i, train_seed=INDEPENDENT_SEED + i, **fields)
            for i in range(n)]


def pick_schedule(spec: Any, schedules: Mapping[str, TrainConfig], **changes: Any) -> TrainConfig:
    """The schedule ``schedules[spec.schedule]`` on the run's train seed, with ``changes``."""
    base = schedules.get(spec.schedule)
    if base is None:
        raise ConfigError(f"unknown schedule {spec.schedule!r}")
    return replace(base, seed=spec.train_seed, **changes)

