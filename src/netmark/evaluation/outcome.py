"""What an attacked cell of an evaluation means: survived, removed, or the attack destroyed the model.

An attack *removes* a watermark only if the attacked model is still useful: its task accuracy stays within
``max_accuracy_drop`` percentage points of the marked model's (the rule of Lukas et al., "SoK: How Robust is Image
Classification Deep Neural Network Watermarking?", S&P 2022; 5 pp by default). Every attacked cell of a
``results.json`` is one of (:func:`cell_kind`):

* ``survived`` — the watermark is detected (also in a model the attack destroyed: the owner still proves
  ownership, but such a cell says nothing about robustness and :func:`robustness_share` leaves it out);
* ``removed`` — not detected, and the attacked model is still useful;
* ``destroyed`` — not detected, but the attacked model lost more than the allowed drop: the attack failed too.

The classification is done from the stored per-cell accuracies when a report is rendered, so old results render
with the rule (their threshold is the default when they predate the setting, ``config.max_accuracy_drop``).
Cells on another task (``task`` other than ``"same"``: fine-tuning on another domain with a new output layer)
measure accuracy on that task, which is not comparable with the marked model's: they count as useful, i.e. by
detection alone. Errored cells are left out everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from netmark.bench.report import DASH
from netmark.evaluation.spec import DEFAULT_MAX_ACCURACY_DROP

SURVIVED, REMOVED, DESTROYED = "survived", "removed", "destroyed"
#: a kind's marker in tables and the matrix
MARKS = {SURVIVED: "✓", REMOVED: "✗", DESTROYED: "✗ destroyed"}


def _skey(v: Any) -> tuple[str, Any]:
    """A strength as a lookup key (``1`` and ``1.0`` are the same strength, ``"int8"`` a name)."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return ("n", float(v))
    return ("s", str(v))


def _strength_text(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v)) if abs(v) < 1e15 else f"{v:g}"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def number_text(v: Any, spec: str, suffix: str = "") -> str:
    """A number formatted by ``spec`` (and ``suffix``), ``—`` when it is missing or not finite."""
    n = _number(v)
    return DASH if n is None else f"{n:{spec}}{suffix}"


def _strengths(res: dict[str, Any], sweep: dict[str, Any]) -> list[Any]:
    """The sweep's strengths in its order, then any a cell names beyond them."""
    out = list(sweep["strengths"])
    seen = {_skey(v) for v in out}
    for c in res["cells"]:
        if c["label"] == sweep["label"] and _skey(c["strength"]) not in seen:
            seen.add(_skey(c["strength"]))
            out.append(c["strength"])
    return out


def by_strength(cells: Iterable[dict[str, Any]], label: str,
                method: str | None = None) -> dict[tuple[str, Any], dict[str, Any]]:
    """Strength key → cell of the sweep ``label`` among ``cells`` (of ``method`` when given)."""
    return {_skey(c["strength"]): c for c in cells if c["label"] == label and method in (None, c.get("method"))}


# ----------------------------------------------------------------------------- the rule


def _stored_drop(res: dict[str, Any]) -> float | None:
    cfg = res.get("config")
    return _number(cfg.get("max_accuracy_drop")) if isinstance(cfg, dict) else None


def max_drop(res: dict[str, Any]) -> float:
    """The results' allowed accuracy drop in percentage points (the default when they predate the setting)."""
    v = _stored_drop(res)
    return DEFAULT_MAX_ACCURACY_DROP if v is None else v


def drop_is_stored(res: dict[str, Any]) -> bool:
    return _stored_drop(res) is not None


def usable(res: dict[str, Any], c: dict[str, Any]) -> bool:
    """Whether the attacked model of cell ``c`` is still useful (accuracy within the drop of the marked model's).

    Cells on another task, and cells whose accuracy (or the marked model's) is unknown, count as useful."""
    if c.get("task") not in (None, "same"):
        return True
    acc = _number(c.get("test_accuracy"))
    marked = _number(res["methods"].get(c["method"], {}).get("test_accuracy"))
    if acc is None or marked is None:
        return True
    return 100.0 * (marked - acc) <= max_drop(res) + 1e-9


def cell_kind(res: dict[str, Any], c: dict[str, Any]) -> str | None:
    """``survived``, ``removed`` or ``destroyed`` (module docstring); None for an errored cell."""
    if c.get("error"):
        return None
    if c.get("detected") is True:
        return SURVIVED
    return REMOVED if usable(res, c) else DESTROYED


@dataclass(frozen=True)
class Counts:
    """A method's attacked cells by kind (errored cells left out); ``survived_destroyed``: detected in a model the
    attack destroyed (counted in ``survived`` too)."""

    survived: int = 0
    removed: int = 0
    destroyed: int = 0
    survived_destroyed: int = 0

    @property
    def usable(self) -> int:
        """Cells whose attacked model is useful: the ones that say something about robustness."""
        return self.survived - self.survived_destroyed + self.removed

    @property
    def measured(self) -> int:
        return self.survived + self.removed + self.destroyed


def counts(res: dict[str, Any], method: str, label: str | None = None) -> Counts:
    """The kinds of ``method``'s attacked cells (of the sweep ``label``, or of every sweep)."""
    kinds = [(cell_kind(res, c), usable(res, c)) for c in res["cells"]
             if c["method"] == method and label in (None, c["label"])]
    s, r, d = (sum(k == kind for k, _ in kinds) for kind in (SURVIVED, REMOVED, DESTROYED))
    return Counts(s, r, d, sum(k == SURVIVED and not u for k, u in kinds))


def robustness_share(res: dict[str, Any], method: str) -> float | None:
    """The share of ``method``'s *usable* attacked cells (every sweep and strength; errored cells and cells whose
    model the attack destroyed left out) in which the watermark was still detected; None without such cells."""
    k = counts(res, method)
    return (k.usable - k.removed) / k.usable if k.usable else None


def naive_share(res: dict[str, Any], method: str) -> float | None:
    """The share of every non-errored attacked cell detected, destroyed models included (what the rule corrects)."""
    k = counts(res, method)
    return k.survived / k.measured if k.measured else None


@dataclass(frozen=True)
class Survival:
    """How far into a sweep a method's watermark is still detected in a useful model."""

    text: str  # "all", "never", "up to <strength>", "model destroyed", "error", "no data"
    detected: int  # usable cells detected
    measured: int  # usable cells
    css: str  # ok | part | lost | err | dead
    destroyed: int = 0  # cells whose model the attack destroyed (detected or not)


def survival(res: dict[str, Any], method: str, sweep: dict[str, Any]) -> Survival:
    """The strongest strength of ``sweep`` (in its order) at which ``method`` is still detected, among the cells
    whose attacked model is still useful.

    Errored cells are left out; cells whose model the attack destroyed are counted apart (``destroyed``).
    ``all``: detected at every strength (none destroyed the model), ``never``: at no useful strength, ``model
    destroyed``: no strength left a useful model; otherwise ``up to <the strongest useful strength detected>``."""
    row = by_strength(res["cells"], sweep["label"], method)
    cells = [(s, row.get(_skey(s))) for s in _strengths(res, sweep)]
    done = [(s, c) for s, c in cells if c is not None and not c.get("error")]
    if not done:
        errored = any(c is not None for _, c in cells)
        return Survival("error" if errored else "no data", 0, 0, "err")
    useful = [(s, c) for s, c in done if usable(res, c)]
    dead = len(done) - len(useful)
    hit = [s for s, c in useful if c.get("detected") is True]
    if not useful:
        return Survival("model destroyed", 0, 0, "dead", dead)
    if len(hit) == len(useful) and not dead:
        return Survival("all", len(hit), len(useful), "ok")
    if not hit:
        return Survival("never", 0, len(useful), "lost", dead)
    css = "ok" if len(hit) == len(useful) else "part"
    return Survival(f"up to {_strength_text(hit[-1])}", len(hit), len(useful), css, dead)


def survival_text(v: Survival) -> str:
    """A summary-table cell: the survival and, when some strengths destroyed the model, how many."""
    return v.text if not v.destroyed or v.css == "dead" else f"{v.text} ({v.destroyed} destroyed)"


def rule_text(res: dict[str, Any]) -> str:
    """The rule in one paragraph of the report."""
    drop = max_drop(res)
    stored = "" if drop_is_stored(res) else " (the default: these results predate the setting)"
    return (f"An attack removes a watermark only if the attacked model stays useful: task accuracy at most {drop:g} "
            f"percentage points{stored} below the marked model's (the rule of Lukas et al., SoK, S&P 2022). Each "
            "attacked cell is survived (detected), removed (not detected, model still useful) or destroyed (not "
            "detected, the attack cost more accuracy than that: the attacker gained no useful model either). Cells "
            "in which the model lost more but the watermark was still detected count as survived, but say nothing "
            "about robustness: the survival columns and the robustness share count useful models only. Cells on "
            "another task (fine-tuning on another domain with a new output layer) are judged by detection alone.")
