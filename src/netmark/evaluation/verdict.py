"""Which scheme survives which thief (issue 23, item 4): the cheapest attacker budget that removes each watermark.

Every attacked cell records the attacker's budget (:meth:`netmark.evaluation.cells.Context.budget`): the images it
used (``data_fraction`` of the owner's training-set size; 0: none) and its compute (``compute``: training epochs over
its data relative to the owner's epochs). A cell *removes* a watermark when the key is no longer detected and the
attacked model keeps its task accuracy within ``max_accuracy_drop`` points of the marked model's (the rule of Lukas et
al., "SoK: How Robust is Image Classification Deep Neural Network Watermarking?", S&P 2022;
:func:`netmark.evaluation.outcome.cell_kind`). Budgets are ordered by data first (none < other-domain data < the
task's own data, then by share), then by compute: the verdict of a scheme is its cheapest removing cell, and how many
of the sweeps remove it at any budget.

:data:`SOK_POINTS` sets the SoK's published conclusions (quoted from its abstract) beside what
this evaluation measured, point by point (:func:`sok_rows`); the measured side is computed from ``results.json``,
never written by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from netmark.evaluation.blocks import Block, Cell, Heading, Para, Table
from netmark.evaluation.outcome import REMOVED, _strength_text, cell_kind, max_drop, number_text

__all__ = ["SOK_POINTS", "budget_key", "budget_text", "removals", "sok_rows", "verdict_blocks", "verdict_rows"]

#: sweeps whose attack derives a new model from the stolen one's answers or retrains it on its own data (the SoK's
#: "surrogate" attacks: extraction, distillation, transfer learning to another task)
SURROGATE_ATTACKS = ("distill", "extraction", "finetune")
#: a cell's ``data`` kinds that are another domain's images
OTHER_DATA = ("other-domain", "other-images")


def budget_key(c: dict[str, Any]) -> tuple[float, int, float]:
    """The order of budgets (module docstring): (data share, 0 for other-domain data else 1, compute)."""
    frac = c.get("data_fraction")
    frac = float(frac) if isinstance(frac, int | float) else 1.0
    other = 0 if c.get("data") in OTHER_DATA or c.get("task") == "other-domain" else 1
    comp = c.get("compute")
    return frac, other if frac > 0 else 0, float(comp) if isinstance(comp, int | float) else 0.0


def budget_text(c: dict[str, Any]) -> str:
    """``no data``, ``5% of the owner's data (other domain)``, then ``, 0.3× the owner's epochs``."""
    frac, comp = c.get("data_fraction"), c.get("compute")
    if not isinstance(frac, int | float):
        return "budget not recorded"
    data = "no data" if frac == 0 else (f"{100 * frac:.3g}% of the owner's data"
                                        + (" (other domain)" if c.get("data") in OTHER_DATA else ""))
    if isinstance(comp, int | float) and comp > 0:
        return f"{data}, {comp:.2g}× the owner's epochs"
    return data + ("" if frac == 0 else ", no training")


def removals(res: dict[str, Any], method: str) -> list[dict[str, Any]]:
    """``method``'s cells that removed its watermark, cheapest budget first."""
    cells = [c for c in res["cells"] if c["method"] == method and cell_kind(res, c) == REMOVED]
    return sorted(cells, key=budget_key)


def _point(c: dict[str, Any]) -> str:
    return f"{c['label']} @ {_strength_text(c['strength'])}"


def verdict_rows(res: dict[str, Any]) -> list[tuple[str | Cell, ...]]:
    """Per method: the cheapest removing cell (attack, strength, budget, accuracy cost, p-value), the cheapest that
    keeps the owner's task (when the cheapest moved the model to another task), the sweeps that remove it at some
    budget, and the attacked cells measured."""
    rows: list[tuple[str | Cell, ...]] = []
    for name, m in res["methods"].items():
        measured = [c for c in res["cells"] if c["method"] == name and cell_kind(res, c) is not None]
        gone = removals(res, name)
        if not measured or not gone:
            verdict = Cell("survives every attack measured", "ok") if measured else Cell("not measured", "err")
            rows.append((name, verdict, "", "", "", "", "", "0" if gone else str(len(measured))))
            continue
        c = gone[0]
        acc, marked = c.get("test_accuracy"), m.get("test_accuracy")
        cost = (number_text(100 * (marked - acc), ".1f", " pp") if isinstance(acc, int | float)
                and isinstance(marked, int | float) and c.get("task") == "same" else "other task")
        same = [x for x in gone if x.get("task") == "same"]
        own = ("(the same)" if c.get("task") == "same" else f"{_point(same[0])} ({budget_text(same[0])})" if same
               else "none: every removal moved the model to another task")
        labels = sorted({x["label"] for x in gone})
        rows.append((name, Cell(f"removed by {_point(c)}", "lost"),
                     budget_text(c), cost, number_text(c.get("p_value"), ".2g"), own,
                     f"{len(labels)}: {'; '.join(labels)}", str(len(measured))))
    return rows


def _schemes_removed(res: dict[str, Any], keep: Callable[[dict[str, Any]], bool]) -> str:
    names = sorted({c["method"] for c in res["cells"] if keep(c) and cell_kind(res, c) == REMOVED})
    return f"{len(names)} of {len(res['methods'])}" + (f" ({', '.join(names)})" if names else "")


#: the SoK's conclusions (as published) and how this evaluation's measurement of the same point is computed
SOK_POINTS: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
    ("“None of the surveyed watermarking schemes is robust in practice” (abstract): on CIFAR-10 and ImageNet, every "
     "scheme of the study was removed by some attack.",
     lambda res: f"schemes removed by at least one attack within the bound: {_schemes_removed(res, lambda c: True)}"),
    ("Schemes fail against “known methods for deriving surrogate models that have not been evaluated as removal "
     "attacks” (abstract): model extraction, distillation, transfer learning.",
     lambda res: "schemes removed by a surrogate attack (distillation, extraction, fine-tuning incl. another "
                 f"domain): {_schemes_removed(res, lambda c: c['attack'] in SURROGATE_ATTACKS)}"),
    ("“Schemes fail to withstand adaptive attacks” (abstract); “weight shifting and smooth retraining are novel "
     "removal attacks adapted to the DNN watermarking schemes” (abstract).",
     lambda res: "schemes removed by a data-free attack (no training: the cheapest thief): "
                 f"{_schemes_removed(res, lambda c: c.get('data_fraction') == 0)}"),
    ("The SoK counts a removal only when the surrogate keeps its accuracy within 5 percentage points of the marked "
     "model's; an attack that loses more did not remove the watermark, it destroyed the model.",
     lambda res: f"the same rule with a bound of {max_drop(res):g} points: "
                 f"{sum(1 for c in res['cells'] if cell_kind(res, c) == 'destroyed')} attacked cells destroyed the "
                 "model and count as survived attacks"),
)


def sok_rows(res: dict[str, Any]) -> list[tuple[str, str]]:
    """The SoK's points beside this evaluation's measurement of each (:data:`SOK_POINTS`)."""
    return [(point, measure(res)) for point, measure in SOK_POINTS]


def verdict_blocks(res: dict[str, Any]) -> list[Block]:
    """The report's "which scheme survives which thief" section and the SoK comparison."""
    if not any("data_fraction" in c for c in res["cells"]):
        return []  # results computed before budgets were recorded
    cfg = res.get("config", {})
    scale = f"{cfg.get('model')} on {cfg.get('dataset')}" if isinstance(cfg, dict) else "this evaluation's setup"
    return [
        Heading(2, "Which scheme survives which thief"),
        Para(("Per scheme, the cheapest attacker budget at which some attack removed the watermark (not detected, "
              f"the attacked model within {max_drop(res):g} accuracy points of the marked one): data first (none, "
              "then another domain's images, then the task's own, by share of the owner's training set), then "
              "compute (the attack's training epochs relative to the owner's). Sweeps: every sweep that removed "
              "it at some budget.",)),
        Table(("scheme", "verdict (cheapest removal)", "attacker budget", "accuracy cost", "p-value",
               "cheapest removal on the owner's task", "sweeps that remove it", "cells measured"),
              tuple(verdict_rows(res))),
        Heading(2, "Compared with the SoK (Lukas et al., S&P 2022)"),
        Para((f"Measured here on {scale} with netmark's implementations (the SoK: CIFAR-10 and ImageNet, its "
              "WRT toolbox of about 30 attacks); the right column is computed from this evaluation's cells.",)),
        Table(("the SoK found", "this evaluation measured"), tuple(sok_rows(res))),
    ]
