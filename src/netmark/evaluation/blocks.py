"""The blocks an evaluation page is made of (:class:`Heading`, :class:`Para`, :class:`Table`, :class:`Image`,
:class:`Bullets`), written as markdown and HTML by :mod:`netmark.evaluation.report`.

A leaf module: :mod:`netmark.evaluation.report_access` builds its section from these blocks without importing the
report that includes it (an import cycle otherwise).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from netmark.evaluation.outcome import _skey, _strength_text

#: inline text: a plain string, or ``("code", text)`` / ``("b", text)``.
Inline = str | tuple[str, str]


@dataclass(frozen=True)
class Cell:
    """A table cell with a CSS class (``ok`` detected, ``lost`` not detected, ``part``, ``err``)."""

    text: str
    css: str = ""


@dataclass(frozen=True)
class Heading:
    """A section heading of ``level`` (1: the page title)."""

    level: int
    text: str


@dataclass(frozen=True)
class Para:
    """A paragraph of inline parts."""

    parts: tuple[Inline, ...]


@dataclass(frozen=True)
class Table:
    """A table: a header row and rows of plain or classed cells."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str | Cell, ...], ...]


@dataclass(frozen=True)
class Image:
    """A figure beside the page (``name``: its PNG) with its alternative text."""

    name: str
    alt: str


@dataclass(frozen=True)
class Bullets:
    """A bulleted list, each item a sequence of inline parts."""

    items: tuple[tuple[Inline, ...], ...]


Block = Heading | Para | Table | Image | Bullets


def strength_table(first: str, rows: Mapping[str, Mapping[tuple[str, Any], Any]], strengths: Sequence[Any],
                   text: Callable[[Any], str | Cell]) -> Table:
    """One sweep's table: a row per name of ``rows`` (a method, a transform: its cells by strength key), a column
    per strength, ``text`` of the row's cell there (None: not measured)."""
    return Table((first, *(_strength_text(s) for s in strengths)),
                 tuple((str(n), *(text(by.get(_skey(s))) for s in strengths)) for n, by in rows.items()))
