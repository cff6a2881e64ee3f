"""The anti-piracy section of an evaluation's report (``results["access"]``, :mod:`netmark.evaluation.access`).

One table (per transform: authorized and unauthorized accuracy, the accuracy cost against the unmarked model, the
forged-transform attacks), one figure ``access.png`` (a panel per attack sweep: authorized accuracy solid,
unauthorized dashed, one colour per transform) and one table per sweep. Results written before the section
existed (no ``access`` key, or no transform in it) give no section.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netmark.bench.report import DASH, figure, pct
from netmark.evaluation.blocks import Heading, Image, Para, Table, strength_table
from netmark.evaluation.figures import _x_positions, strength_axis
from netmark.evaluation.outcome import _number, _skey, by_strength, number_text
from netmark.evaluation.spec import PiracyAttack

ACCESS_PNG = "access.png"
#: what each transform of ``results["access"]["transforms"]`` holds (checked by ``load_evaluation``)
TRANSFORM_KEYS = ("authorized", "unauthorized", "fidelity_pp", "piracy", "cells")


def has_access(res: dict[str, Any]) -> bool:
    a = res.get("access")
    return isinstance(a, dict) and bool(a.get("transforms"))


def _piracy_label(name: str) -> str:
    attack = PiracyAttack.named(name)
    return name if attack is None else attack.label


def _piracy_names(res: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for t in res["access"]["transforms"].values():
        names += [p["attack"] for p in t["piracy"] if p["attack"] not in names]
    return names


def _access_sweeps(res: dict[str, Any]) -> list[dict[str, Any]]:
    labels = {c["label"] for t in res["access"]["transforms"].values() for c in t["cells"]}
    return [s for s in res["sweeps"] if s["label"] in labels]


def access_figure(path: Path, res: dict[str, Any]) -> Path:
    """A panel per sweep: authorized (solid) and unauthorized (dashed) accuracy vs strength per transform."""
    from matplotlib.lines import Line2D

    transforms = res["access"]["transforms"]
    sweeps: list[dict[str, Any] | None] = [*_access_sweeps(res)] or [None]
    ncols = min(4, len(sweeps))
    nrows = math.ceil(len(sweeps) / ncols)
    colours = {k: f"C{i % 10}" for i, k in enumerate(transforms)}
    base = _number(res["baseline"]["test_accuracy"])
    with figure(path, ncols=ncols, nrows=nrows, size=(3.6, 3.0),
                title="Anti-piracy: authorized (solid) and unauthorized (dashed) accuracy under attack") as axes:
        axes = axes if isinstance(axes, list) else [axes]
        for ax, sweep in zip(axes, sweeps, strict=False):
            if sweep is None:
                ax.text(0.5, 0.5, "no attack sweeps", ha="center", va="center")
                continue
            strengths = list(sweep["strengths"])
            xs, kind = _x_positions(strengths)
            for k, t in transforms.items():
                by = by_strength(t["cells"], sweep["label"])
                for field, style in (("authorized", "-"), ("unauthorized", (0, (4, 3)))):
                    ys = [100 * v if (c := by.get(_skey(s))) and not c.get("error")
                          and (v := _number(c.get(field))) is not None else math.nan for s in strengths]
                    ax.plot(xs, ys, linestyle=style, marker="o" if field == "authorized" else ".",
                            color=colours[k], linewidth=2 if field == "authorized" else 1.4, markersize=4)
            if base is not None:
                ax.axhline(100 * base, color="grey", linestyle=":", linewidth=1.1)
            ax.set_ylim(0, 102)
            strength_axis(ax, strengths, xs, kind)
            ax.set_title(str(sweep["label"]), fontsize=10)
            ax.set_xlabel(f"{sweep['attack']} ({sweep['unit']})", fontsize=8)
            ax.set_ylabel("test accuracy (%)", fontsize=8)
            ax.grid(True, alpha=0.3)
        for ax in axes[len(sweeps):]:
            ax.axis("off")
        handles = [Line2D([], [], color=c, marker="o", linewidth=2, label=str(k)) for k, c in colours.items()]
        handles += [Line2D([], [], color="dimgray", linewidth=2, label="authorized (through G)"),
                    Line2D([], [], color="dimgray", linestyle=(0, (4, 3)), label="unauthorized (raw inputs)"),
                    Line2D([], [], color="grey", linestyle=":", label="unmarked model")]
        spare = axes[len(sweeps):]
        if spare:  # an empty panel holds the legend
            spare[0].legend(handles=handles, loc="center", fontsize="small", frameon=False)
        else:
            axes[ncols - 1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.03, 1.0), borderaxespad=0.0,
                                   fontsize="x-small", frameon=False)
    return path


def _measured(c: dict[str, Any] | None, text: Callable[[dict[str, Any]], str]) -> str:
    """A table cell: ``—`` when not measured, ``error`` when it failed, else ``text(c)``."""
    return DASH if c is None else "error" if c.get("error") else text(c)


def _pair_text(p: dict[str, Any]) -> str:
    mean, best = _number(p.get("mean")), _number(p.get("best"))
    if mean is None or best is None:
        return DASH
    return pct(mean) if p.get("trials") == 1 else f"{pct(mean)} / {pct(best)}"


def _access_text(c: dict[str, Any]) -> str:
    return f"{pct(c['authorized'], 1)} / {pct(c['unauthorized'], 1)}"


def access_blocks(res: dict[str, Any]) -> list[Any]:
    """The section's blocks (:mod:`netmark.evaluation.report` writes them as markdown and HTML)."""
    a = res["access"]
    transforms = a["transforms"]
    opts = a.get("options", {})
    topt = opts.get("transform", {})
    names = _piracy_names(res)
    blocks: list[Any] = [
        Heading(2, "Anti-piracy (Chen and Wu 2018)"),
        Para(("A protected model F is trained with a secret input transform G (Eq. 3: cross-entropy through G, the "
              "correct-class probability on raw inputs pushed down, the distortion ‖G(x) − x‖² kept small; "
              f"α = {opts.get('alpha', DASH)}, β = {opts.get('beta', DASH)}, γ = {opts.get('gamma', DASH)}, "
              f"σ = {topt.get('sigma', DASH)}, p = {topt.get('p', DASH)}) from the unmarked model's seed, data and "
              "schedule. Authorized: F's test accuracy through G; unauthorized: on raw inputs (direct piracy). "
              "Forged transforms (the thief holds F and the attacker's images, never G; mean / best of "
              f"{a.get('piracy_trials', DASH)} trials): input-only draws bipolar perturbations with the Fixed "
              "scheme's σ and p; one pair recovers δ = G(x) − x from one wiretapped pair; the pair attack fits a "
              "same-structure generator to G's outputs on a share of the attacker's images. The scheme is covered "
              "by US patent 11,687,623 B2.",)),
        Image(ACCESS_PNG, "authorized and unauthorized accuracy of the protected models under every attack"),
        Table(("transform", "authorized (%)", "Δ pp vs unmarked", "unauthorized (%)",
               *(f"{_piracy_label(n)} (%)" for n in names)),
              tuple((str(k), pct(t["authorized"]),
                     number_text(t["fidelity_pp"], "+.2f"),
                     pct(t["unauthorized"]),
                     *(_measured(next((p for p in t["piracy"] if p["attack"] == n), None), _pair_text) for n in names))
                    for k, t in transforms.items())),
    ]
    errors = [f"{k}: {t['error']}" for k, t in transforms.items() if t.get("error")]
    if errors:
        blocks.append(Para(("Not protected (training failed): " + "; ".join(errors),)))
    for s in _access_sweeps(res):
        blocks += [Heading(3, f"Anti-piracy: {s['label']}"),
                   Para((f"Attack {s['attack']} on the released model; cells: authorized / unauthorized accuracy "
                         "(%)" + (" (the thief trains on raw attacker images)" if s.get("data") == "attacker"
                                  else "") + ".",)),
                   strength_table("transform", {k: by_strength(t["cells"], s["label"]) for k, t in transforms.items()},
                                  s["strengths"], lambda c: _measured(c, _access_text))]
    return blocks
