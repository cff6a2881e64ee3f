"""The fields every study's declarations share: a scale's seeds and command, a run's seeds and parentage.

A paper's ``Scale`` and ``RunSpec`` subclass :class:`ScaleBase` / :class:`RunSpecBase` and add their own fields
(positional after ``name``); the shared ones are keyword-only, and a paper that seeds its keys differently
redeclares ``key_seed = field(default=..., kw_only=True)``. Cache fingerprints read ``to_dict()`` as canonical
(sorted) JSON, so where a field is declared does not change a run's key.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, asdict, dataclass
from typing import Any

from netmark.errors import ConfigError


def at_least(obj: Any, minimum: int, *names: str) -> None:
    """ConfigError ``"a, b and c must be >= minimum"`` unless every attribute ``names`` of ``obj`` is."""
    if any(getattr(obj, n) < minimum for n in names):
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
        raise ConfigError(f"{listed} must be >= {minimum}")


@dataclass(frozen=True)
class ScaleBase:
    """A preset of a study: ``name``, its seeds, torch threads (``None``: torch's setting) and the command line
    that reproduces it (shown in the README)."""

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunSpecBase:
    """One run of a study's plan: ``name``, its seeds, and for a derived run the ``attack`` applied to ``parent``."""

    name: str
    _: KW_ONLY
    model_seed: int = 0
    train_seed: int = 0
    key_seed: int = 0
    parent: str | None = None
    attack: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
