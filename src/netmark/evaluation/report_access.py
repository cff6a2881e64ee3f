"""The anti-piracy section of an evaluation's report (``results["access"]``, :mod:`netmark.evaluation.access`).

One table (per transform: authorized and unauthorized accuracy, the accuracy cost against the unmarked model, the
forged-transform attacks), one figure ``access.png`` (a panel per attack sweep: authorized accuracy solid,
unauthorized dashed, one colour per transform) and one table per sweep. Results written before the section
existed (no ``access`` key, or no transform in it) give no section.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from netmark.bench.report import DASH, figure, pct
from netmark.errors import ConfigError
from netmark.evaluation.blocks import Heading, Image, Para, Table
from netmark.evaluation.figures import _x_positions, strength_axis
from netmark.evaluation.outcome import _number, _skey, _strength_text

ACCESS_PNG = "access.png"
_TRANSFORM_KEYS = ("authorized", "unauthorized", "fidelity_pp", "piracy", "cells")
_PIRACY_TEXT = {"input-only": "input-only", "one-pair": "one pair"}


def has_access(res: dict[str, Any]) -> bool:
    a = res.get("access")
    return isinstance(a, dict) and bool(a.get("transforms"))


def check_access(path: Path, res: dict[str, Any]) -> None:
    """ConfigError naming the first problem of ``res["access"]`` (absent is fine)."""
    if res.get("access") is None:
        return
    a = res["access"]
    if not isinstance(a, dict) or not isinstance(a.get("transforms"), dict):
        raise ConfigError(f"{path}: 'access' must be an object with a 'transforms' object")
    for kind, t in a["transforms"].items():
        missing = [k for k in _TRANSFORM_KEYS if not isinstance(t, dict) or k not in t]
        if missing:
            raise ConfigError(f"{path}: anti-piracy transform {kind!r} lacks {', '.join(missing)}")
        if not isinstance(t["piracy"], list) or not isinstance(t["cells"], list):
            raise ConfigError(f"{path}: the piracy and cells of anti-piracy transform {kind!r} must be lists")


def _piracy_label(name: str) -> str:
    if name.startswith("pair@"):
        return f"pair attack, {float(name.removeprefix('pair@')):.0%} of the images"
    return _PIRACY_TEXT.get(name, name)


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
                by = {_skey(c["strength"]): c for c in t["cells"] if c["label"] == sweep["label"]}
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


def _pair_text(p: dict[str, Any] | None) -> str:
    if p is None:
        return DASH
    if p.get("error"):
        return "error"
    mean, best = _number(p.get("mean")), _number(p.get("best"))
    if mean is None or best is None:
        return DASH
    if p.get("trials") == 1:
        return f"{pct(mean)}"
    return f"{pct(mean)} / {pct(best)}"


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
                     DASH if (f := _number(t["fidelity_pp"])) is None else f"{f:+.2f}",
                     pct(t["unauthorized"]),
                     *(_pair_text(next((p for p in t["piracy"] if p["attack"] == n), None)) for n in names))
                    for k, t in transforms.items())),
    ]
    errors = [f"{k}: {t['error']}" for k, t in transforms.items() if t.get("error")]
    if errors:
        blocks.append(Para(("Not protected (training failed): " + "; ".join(errors),)))
    for s in _access_sweeps(res):
        rows = []
        for k, t in transforms.items():
            by = {_skey(c["strength"]): c for c in t["cells"] if c["label"] == s["label"]}
            row: list[str] = [str(k)]
            for v in s["strengths"]:
                c = by.get(_skey(v))
                if c is None:
                    row.append(DASH)
                elif c.get("error"):
                    row.append("error")
                else:
                    row.append(f"{pct(c['authorized'], 1)} / {pct(c['unauthorized'], 1)}")
            rows.append(tuple(row))
        blocks += [Heading(3, f"Anti-piracy: {s['label']}"),
                   Para((f"Attack {s['attack']} on the released model; cells: authorized / unauthorized accuracy "
                         "(%)" + (" (the thief trains on raw attacker images)" if s.get("data") == "attacker"
                                  else "") + ".",)),
                   Table(("transform", *(_strength_text(v) for v in s["strengths"])), tuple(rows))]
    return blocks
