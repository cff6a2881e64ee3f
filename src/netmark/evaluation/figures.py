"""The evaluation report's figures: one per attack sweep and the summary (survival matrix, cost vs robustness).

* ``sweep-<i>-<label>.png`` — −log10 p per method against the attack strength (solid, left axis; the dashed black
  line is the detection threshold −log10 α) and the attacked model's task accuracy (lighter dashed line of the
  same colour, right axis; dotted grey: the unmarked model); a cross marks a point whose model the attack
  destroyed (accuracy more than the allowed drop below the marked model's, :mod:`netmark.evaluation.outcome`);
* ``summary.png`` — the survival matrix (methods × sweeps; a cell names the strongest strength still detected in
  a useful model, hatched where some strengths destroyed the model) and each method's accuracy cost against
  the share of its usable attacked cells still detected (hollow marker: the share counting destroyed models).
"""

from __future__ import annotations

import itertools
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from netmark.bench.report import figure
from netmark.evaluation.outcome import (
    _number,
    _skey,
    _strength_text,
    _strengths,
    by_strength,
    max_drop,
    naive_share,
    robustness_share,
    survival,
    usable,
)

#: −log10 p drawn for p = 0 (and the most any point is drawn at).
P_CAP = 300.0
#: above this −log10 p the sweep figures' left axis turns logarithmic (when a point goes past 3× it).
SYMLOG_FROM = 10.0

def neg_log10_p(p: Any) -> float:
    """−log10 p for a plot: NaN (a gap) for a missing p-value, capped at :data:`P_CAP` (p = 0)."""
    v = _number(p)
    if v is None:
        return math.nan
    if v <= 0:
        return P_CAP
    return min(max(-math.log10(min(v, 1.0)), 0.0), P_CAP)



def _colours(res: dict[str, Any]) -> dict[str, str]:
    return {m: f"C{i % 10}" for i, m in enumerate(res["methods"])}


def _x_positions(strengths: Sequence[Any]) -> tuple[list[float], str]:
    """x of each strength and the axis kind: ``category`` (names), ``log``, ``symlog`` or ``linear``."""
    nums = [_number(s) for s in strengths]
    if any(n is None for n in nums) or not nums:
        return [float(i) for i in range(len(strengths))], "category"
    xs = [float(n) for n in nums if n is not None]
    pos = [x for x in xs if x > 0]
    if pos and min(xs) >= 0 and max(pos) / min(pos) >= 100:
        return xs, "log" if len(pos) == len(xs) else "symlog"
    return xs, "linear"


def strength_axis(ax: Any, strengths: Sequence[Any], xs: list[float], kind: str) -> None:
    """The x axis of a sweep's panel (``xs``, ``kind`` from :func:`_x_positions`): the strengths as tick labels
    (up to 8; names rotated), log scales, and falling values (bits 8, 4, 2) inverted to read left to right."""
    if kind == "category" or len(xs) <= 8:
        ax.set_xticks(xs, [_strength_text(s) for s in strengths], rotation=30 if kind == "category" else 0)
    if kind in ("log", "symlog"):
        pos = min(x for x in xs if x > 0)
        ax.set_xscale(kind, **({"linthresh": pos} if kind == "symlog" else {}))
        if len(xs) <= 8:
            ax.set_xticks(xs, [_strength_text(s) for s in strengths])
            ax.minorticks_off()
    if kind == "category":
        ax.set_xlim(-0.4, len(xs) - 0.6)
    elif len(xs) > 1 and all(a > b for a, b in itertools.pairwise(xs)):
        ax.invert_xaxis()


def sweep_figure(path: Path, res: dict[str, Any], sweep: dict[str, Any]) -> Path:
    from matplotlib.lines import Line2D

    strengths = _strengths(res, sweep)
    xs, kind = _x_positions(strengths)
    colours = _colours(res)
    threshold = -math.log10(float(res["alpha"]))
    top = threshold
    capped = destroyed_any = False
    with figure(path, size=(8.6, 4.4)) as ax:
        acc_ax = ax.twinx()
        for m, colour in colours.items():
            row = by_strength(res["cells"], sweep["label"], m)
            cells = [row.get(_skey(s)) for s in strengths]
            ok = [c is not None and not c.get("error") for c in cells]
            ys = [neg_log10_p(c["p_value"]) if good and c else math.nan for c, good in zip(cells, ok, strict=True)]
            accs = [100 * a if good and c and (a := _number(c["test_accuracy"])) is not None else math.nan
                    for c, good in zip(cells, ok, strict=True)]
            finite = [y for y in ys if math.isfinite(y)]
            top = max([top, *finite])
            capped = capped or P_CAP in finite
            acc_ax.plot(xs, accs, linestyle=(0, (4, 3)), marker=".", color=colour, alpha=0.45, linewidth=1.4)
            ax.plot(xs, ys, "-", marker="o", color=colour, linewidth=2.2, markersize=6, zorder=3)
            dead = [(x, y) for x, y, c, good in zip(xs, ys, cells, ok, strict=True)
                    if good and c is not None and not usable(res, c) and math.isfinite(y)]
            destroyed_any = destroyed_any or bool(dead)
            if dead:
                ax.scatter([x for x, _ in dead], [y for _, y in dead], marker="x", color="black", s=55,
                           linewidths=1.6, zorder=4)
        ax.axhline(threshold, color="black", linestyle="--", linewidth=1.2, zorder=2)
        ax.annotate(f"detection threshold (α = {float(res['alpha']):g})", (0.01, threshold),
                    xycoords=("axes fraction", "data"), xytext=(0, 3), textcoords="offset points", fontsize=8)
        base = _number(res["baseline"]["test_accuracy"])
        if base is not None:
            acc_ax.axhline(100 * base, color="grey", linestyle=":", linewidth=1.2)
        if top > 3 * SYMLOG_FROM:  # a few huge −log10 p would flatten the rest onto the threshold
            ax.set_yscale("symlog", linthresh=SYMLOG_FROM, linscale=1.5)
            ax.set_ylim(0, top * 1.6)
            ticks = [t for t in (0, 1, 2, 5, 10, 30, 100, 300) if t <= top * 1.6]
            ax.set_yticks(ticks, [str(t) for t in ticks])
            ax.minorticks_off()
        else:
            ax.set_ylim(0, top * 1.12 + 0.5)
        ax.set_zorder(acc_ax.get_zorder() + 1)  # p-value lines above the accuracy lines
        ax.patch.set_visible(False)
        acc_ax.set_ylim(0, 102)
        acc_ax.set_ylabel("task accuracy (%), dashed")
        ax.set_ylabel("−log10 p (solid)" + (f", log above {SYMLOG_FROM:g}" if ax.get_yscale() == "symlog" else ""))
        unit = f" ({sweep['unit']})" if sweep["unit"] else ""
        ax.set_xlabel(f"{sweep['attack']} strength{unit}")
        strength_axis(ax, strengths, xs, kind)
        ax.grid(True, alpha=0.3)
        ax.set_title(str(sweep["label"]), fontweight="bold")
        handles = [Line2D([], [], color=c, marker="o", linewidth=2.2, label=str(m)) for m, c in colours.items()]
        p_label = "−log10 p (left" + (f"; p = 0 drawn at {P_CAP:g})" if capped else ")")
        handles += [Line2D([], [], color="dimgray", linewidth=2.2, label=p_label),
                    Line2D([], [], color="dimgray", linestyle=(0, (4, 3)), alpha=0.6, label="task accuracy (right)"),
                    Line2D([], [], color="black", linestyle="--", label="detection threshold"),
                    Line2D([], [], color="grey", linestyle=":", label="unmarked model's accuracy")]
        if destroyed_any:
            handles.append(Line2D([], [], color="black", marker="x", linestyle="", markersize=7,
                                  label=f"model destroyed (accuracy > {max_drop(res):g} pp\nbelow the marked model)"))
        acc_ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.13, 1.0), borderaxespad=0.0,
                      fontsize="small", frameon=False)
    return path



def summary_figure(path: Path, res: dict[str, Any]) -> Path:
    """Top: the survival matrix (methods × sweeps) at full width, hatched where some strengths destroyed the model.
    Bottom: each method's accuracy cost against the share of its usable attacked cells still detected (filled),
    and the share counting the cells whose model the attack destroyed (hollow; top right is best)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    methods = list(res["methods"])
    sweeps = res["sweeps"]
    colours = _colours(res)
    drop = max_drop(res)
    width = max(9.0, 2.2 + 1.25 * len(sweeps))
    mat_h = 1.9 + 0.62 * len(methods)
    with figure(path, nrows=2, size=(width, mat_h)) as (mat_ax, sc_ax):
        mat_ax.get_subplotspec().get_gridspec().set_height_ratios([mat_h, 4.2])
        mat_ax.figure.set_size_inches(width, mat_h + 4.6)
        # matrix: 0 never, 1 partly, 2 all, 3 error / no data, 4 every strength destroyed the model
        codes = {"lost": 0, "part": 1, "ok": 2, "err": 3, "dead": 4}
        palette = ["#f4a6a6", "#ffe08a", "#9fdfa8", "#dddddd", "#b9b9c9"]
        surv = [[survival(res, m, s) for s in sweeps] for m in methods]
        ys = list(range(len(methods)))
        mat_ax.imshow([[codes[v.css] for v in row] for row in surv] if sweeps else [[3] for _ in methods],
                      cmap=ListedColormap(palette), vmin=-0.5, vmax=4.5, aspect="auto")
        for i, row in enumerate(surv):
            for j, v in enumerate(row):
                lines = [v.text]
                if v.measured:
                    lines.append(f"{v.detected}/{v.measured}")
                if v.destroyed:
                    lines.append(f"+{v.destroyed} destroyed")
                    mat_ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///",
                                               edgecolor="#6b6b80", linewidth=0))
                mat_ax.text(j, i, "\n".join(lines), ha="center", va="center", fontsize=9,
                            bbox={"boxstyle": "round,pad=0.15", "facecolor": palette[codes[v.css]],
                                  "edgecolor": "none", "alpha": 0.85} if v.destroyed else None)
        mat_ax.set_yticks(ys, methods, fontsize=10)
        mat_ax.set_xticks(range(len(sweeps)), [textwrap.fill(str(s["label"]), 14) for s in sweeps], fontsize=9)
        mat_ax.xaxis.tick_top()
        mat_ax.set_xticks([x - 0.5 for x in range(1, len(sweeps))], minor=True)
        mat_ax.set_yticks([y - 0.5 for y in range(1, len(methods))], minor=True)
        mat_ax.grid(True, which="minor", color="white", linewidth=2)
        mat_ax.tick_params(which="minor", length=0)
        mat_ax.set_xlabel("strongest attack strength at which the watermark is still detected in a useful model "
                          f"(task accuracy within {drop:g} pp of the marked model's)\n"
                          "n/m: useful strengths detected / measured; +k destroyed: strengths at which the attack "
                          "destroyed the model (not counted)")
        legend = [Patch(facecolor=palette[2], label="survived: detected at every useful strength"),
                  Patch(facecolor=palette[1], label="survived up to a strength, then removed"),
                  Patch(facecolor=palette[0], label="removed (never detected in a useful model)"),
                  Patch(facecolor="white", edgecolor="#6b6b80", hatch="///",
                        label=f"some strengths destroyed the model (> {drop:g} pp lost)"),
                  Patch(facecolor=palette[4], label="every strength destroyed the model")]
        mat_ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
                      frameon=False, borderaxespad=0.0)
        mat_ax.set_title("Which method survives which attack, at what cost", fontweight="bold", pad=12)
        points = [(fid, 100 * share, m) for m in methods
                  if (fid := _number(res["methods"][m]["fidelity_pp"])) is not None
                  and (share := robustness_share(res, m)) is not None]
        for i, (x, y, m) in enumerate(sorted(points)):  # neighbours' labels alternate above and below
            naive = naive_share(res, m)
            if naive is not None and abs(100 * naive - y) > 0.05:
                sc_ax.plot([x, x], [y, 100 * naive], color=colours[m], linewidth=1, alpha=0.6, zorder=2)
                sc_ax.scatter([x], [100 * naive], s=70, facecolor="white", edgecolor=colours[m], linewidth=1.4,
                              zorder=3)
            sc_ax.scatter([x], [y], s=90, color=colours[m], zorder=3, edgecolor="black", linewidth=0.6)
            sc_ax.annotate(str(m), (x, y), xytext=(6, 5 if i % 2 == 0 else -13), textcoords="offset points",
                           fontsize=9)
        sc_ax.axvline(0, color="grey", linewidth=0.9, linestyle=":")
        sc_ax.set_xlabel("accuracy cost of embedding: Δ task accuracy vs the unmarked model (pp; right is better)")
        sc_ax.set_ylabel("usable attacked cells still detected (%)")
        sc_ax.set_ylim(-5, 105)
        sc_ax.margins(x=0.25)
        sc_ax.grid(True, alpha=0.3)
        sc_ax.legend(handles=[
            Line2D([], [], marker="o", linestyle="", color="grey", markeredgecolor="black", markersize=9,
                   label=f"detected / usable cells (attacked model within {drop:g} pp)"),
            Line2D([], [], marker="o", linestyle="", markerfacecolor="white", markeredgecolor="grey", markersize=8,
                   label="detected / all cells (destroyed models counted as removals: without the rule)")],
            loc="lower left", fontsize="small")
        sc_ax.set_title("cost vs robustness (every sweep and strength counted once; top right is best)")
    return path
