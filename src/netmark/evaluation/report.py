"""A comparative evaluation's ``results.json`` → ``README.md``, ``index.html`` and PNG figures.

The evaluation asks *which watermarking method survives which attack, at what accuracy cost*. Its
``results.json`` (schema ``netmark-evaluation/1``) holds one record per method (task accuracy, fidelity,
capacity, overhead, false positives on independent models) and one cell per (method, attack sweep,
strength) with the ownership test's p-value, the detection decision and the attacked model's accuracy.
:func:`render_evaluation` rebuilds every derived file from that JSON alone:

* ``sweep-<i>-<label>.png`` — one per attack sweep: −log10 p per method against the attack strength
  (solid, left axis; the dashed black line is the detection threshold −log10 α) and the attacked model's
  task accuracy (lighter dashed line of the same colour, right axis; dotted grey: the unmarked model);
* ``summary.png`` — per method the accuracy cost of embedding (Δ pp vs the unmarked model) and the
  survival matrix (methods × sweeps; a cell names the strongest strength still detected, ``all`` or
  ``never``; green = survives the whole sweep, red = never detected);
* ``README.md`` — the setup, the summary table and one section per sweep (figure and a ``p / acc%`` table);
* ``index.html`` — the same content as one self-contained page (inline CSS, the PNGs as data URIs).

The page is described once as a list of blocks (:class:`Heading`, :class:`Para`, :class:`Table`, ...)
and written twice, as markdown and as HTML, so both files always say the same thing.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import math
import os
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netmark._util import atomic_write_text
from netmark.errors import ConfigError
from netmark.evaluation.report_access import ACCESS_PNG, access_blocks, access_figure, check_access, has_access
from netmark.experiments.report import (
    DASH,
    check_render_target,
    figure,
    fmt,
    markdown_table,
    pct,
    read_results,
)

SCHEMA = "netmark-evaluation/1"
README = "README.md"
INDEX = "index.html"
SUMMARY_PNG = "summary.png"
#: −log10 p drawn for p = 0 (and the most any point is drawn at).
P_CAP = 300.0
#: above this −log10 p the sweep figures' left axis turns logarithmic (when a point goes past 3× it).
SYMLOG_FROM = 10.0

_TOP_KEYS = ("schema", "generated", "netmark_version", "command", "config", "alpha", "baseline", "methods",
             "sweeps", "cells", "timing")
_CONFIG_KEYS = ("methods", "model", "dataset", "train", "train_size", "n_independent")
_METHOD_KEYS = ("black_box", "test_accuracy", "fidelity_pp", "capacity", "overhead_ratio", "embed_seconds",
                "false_positives")
_SWEEP_KEYS = ("attack", "label", "unit", "strengths")
_CELL_KEYS = ("method", "attack", "label", "strength", "test_accuracy", "p_value", "score", "detected",
              "seconds", "error")
_TIMING_KEYS = ("seconds", "cells", "cached_cells", "executor", "jobs")


# ----------------------------------------------------------------------------- entry point


def render_evaluation(results_json_path: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None, *,
                      force: bool = False) -> Path:
    """Write ``README.md``, ``index.html``, ``summary.png`` and one PNG per sweep from an evaluation's
    ``results.json`` alone; returns the path of ``index.html`` (the other files lie beside it).

    ``out_dir`` defaults to the directory of ``results.json``, whose derived files are rebuilt in place (as
    ``netmark report`` does for the reproductions); in another directory existing files are only overwritten
    with ``force`` (:class:`~netmark.errors.OutputExistsError` otherwise, before anything is written).
    ``results.json`` itself is never written. A file that is not an evaluation's results raises
    :class:`~netmark.errors.ConfigError` with one line naming the problem.
    """
    src = Path(results_json_path)
    res = load_evaluation(src)
    out = Path(out_dir) if out_dir is not None else src.parent
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output directory {out} is a file")
    names = sweep_figure_names(res)
    extra = (ACCESS_PNG,) if has_access(res) else ()
    check_render_target(src, out, (README, INDEX, SUMMARY_PNG, *names.values(), *extra), force)
    out.mkdir(parents=True, exist_ok=True)
    pngs = {SUMMARY_PNG: _summary_figure(out / SUMMARY_PNG, res)}
    if extra:
        pngs[ACCESS_PNG] = access_figure(out / ACCESS_PNG, res)
    for sweep in res["sweeps"]:
        name = names[sweep["label"]]
        pngs[name] = _sweep_figure(out / name, res, sweep)
    blocks = page_blocks(res, names)
    atomic_write_text(out / README, to_markdown(blocks), force=True)
    images = {n: p.read_bytes() for n, p in pngs.items()}
    return atomic_write_text(out / INDEX, to_html(blocks, images, title=_title(res)), force=True)


def load_evaluation(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check an evaluation's ``results.json`` (ConfigError naming the first problem)."""
    p = Path(path)
    res = read_results(p)
    if "schema" not in res:
        raise ConfigError(f"{p} is not a netmark evaluation's results (no 'schema' key)")
    if res["schema"] != SCHEMA:
        raise ConfigError(f"{p} has schema {res['schema']!r}; expected {SCHEMA!r}")
    _need(p, res, _TOP_KEYS, "the results")
    _need(p, res["config"], _CONFIG_KEYS, "'config'")
    _need(p, res["baseline"], ("test_accuracy", "seed"), "'baseline'")
    _need(p, res["timing"], _TIMING_KEYS, "'timing'")
    alpha = res["alpha"]
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise ConfigError(f"{p}: 'alpha' must be a number in (0, 1), got {alpha!r}")
    methods = res["methods"]
    if not isinstance(methods, dict) or not methods:
        raise ConfigError(f"{p}: 'methods' must be a non-empty JSON object")
    for name, m in methods.items():
        _need(p, m, _METHOD_KEYS, f"method {name!r}")
        _need(p, m["capacity"], ("value", "unit", "note"), f"the capacity of method {name!r}")
        _need(p, m["false_positives"], ("n", "detected", "min_p_value"), f"the false positives of method {name!r}")
    labels: set[str] = set()
    for i, s in enumerate(_list(p, res, "sweeps")):
        _need(p, s, _SWEEP_KEYS, f"sweep {i}")
        if not isinstance(s["strengths"], list):
            raise ConfigError(f"{p}: the strengths of sweep {s['label']!r} are not a list")
        if s["label"] in labels:
            raise ConfigError(f"{p}: two sweeps are labelled {s['label']!r}")
        labels.add(s["label"])
    for i, c in enumerate(_list(p, res, "cells")):
        _need(p, c, _CELL_KEYS, f"cell {i}")
        if c["method"] not in methods:
            raise ConfigError(f"{p}: cell {i} names method {c['method']!r}, which 'methods' lacks")
        if c["label"] not in labels:
            raise ConfigError(f"{p}: cell {i} names sweep {c['label']!r}, which 'sweeps' lacks")
    check_access(p, res)
    return res


def _need(path: Path, obj: Any, keys: Sequence[str], where: str) -> None:
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: {where} is not a JSON object")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise ConfigError(f"{path}: {where} lacks the key{'s' if len(missing) > 1 else ''} "
                          f"{', '.join(repr(k) for k in missing)}")


def _list(path: Path, res: dict[str, Any], key: str) -> list[Any]:
    if not isinstance(res[key], list):
        raise ConfigError(f"{path}: {key!r} is not a JSON list")
    return res[key]


def sweep_figure_names(res: dict[str, Any]) -> dict[str, str]:
    """Sweep label → its PNG's file name (``sweep-<i>-<slug>.png``, unique by the index)."""
    names = {}
    for i, s in enumerate(res["sweeps"], 1):
        slug = re.sub(r"[^a-z0-9]+", "-", str(s["label"]).lower()).strip("-")[:40].strip("-")
        names[s["label"]] = f"sweep-{i}-{slug or 'attack'}.png"
    return names


# ----------------------------------------------------------------------------- the measurements


def _skey(v: Any) -> tuple[str, Any]:
    """A strength as a lookup key (``1`` and ``1.0`` are the same strength, ``"int8"`` a name)."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return ("n", float(v))
    return ("s", str(v))


def _strength_text(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v)) if abs(v) < 1e15 else f"{v:g}"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _strengths(res: dict[str, Any], sweep: dict[str, Any]) -> list[Any]:
    """The sweep's strengths in its order, then any a cell names beyond them."""
    out = list(sweep["strengths"])
    seen = {_skey(v) for v in out}
    for c in res["cells"]:
        if c["label"] == sweep["label"] and _skey(c["strength"]) not in seen:
            seen.add(_skey(c["strength"]))
            out.append(c["strength"])
    return out


def _grid(res: dict[str, Any], label: str) -> dict[tuple[str, tuple[str, Any]], dict[str, Any]]:
    """(method, strength key) → cell of one sweep."""
    return {(c["method"], _skey(c["strength"])): c for c in res["cells"] if c["label"] == label}


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def neg_log10_p(p: Any) -> float:
    """−log10 p for a plot: NaN (a gap) for a missing p-value, capped at :data:`P_CAP` (p = 0)."""
    v = _number(p)
    if v is None:
        return math.nan
    if v <= 0:
        return P_CAP
    return min(max(-math.log10(min(v, 1.0)), 0.0), P_CAP)


@dataclass(frozen=True)
class Survival:
    """How far into a sweep a method's watermark is still detected."""

    text: str  # "all", "never", "up to <strength>", "error", "no data"
    detected: int
    measured: int
    css: str  # ok | part | lost | err


def survival(res: dict[str, Any], method: str, sweep: dict[str, Any]) -> Survival:
    """The strongest strength of ``sweep`` (in its order) at which ``method`` is still detected.

    Cells that errored are left out; ``all``: detected at every other strength, ``never``: at none.
    """
    grid = _grid(res, sweep["label"])
    cells = [(s, grid.get((method, _skey(s)))) for s in _strengths(res, sweep)]
    done = [(s, c) for s, c in cells if c is not None and not c.get("error")]
    hit = [s for s, c in done if c["detected"] is True]
    if not done:
        errored = any(c is not None for _, c in cells)
        return Survival("error" if errored else "no data", 0, 0, "err")
    if len(hit) == len(done):
        return Survival("all", len(hit), len(done), "ok")
    if not hit:
        return Survival("never", 0, len(done), "lost")
    return Survival(f"up to {_strength_text(hit[-1])}", len(hit), len(done), "part")


# ----------------------------------------------------------------------------- figures


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


def _sweep_figure(path: Path, res: dict[str, Any], sweep: dict[str, Any]) -> Path:
    from matplotlib.lines import Line2D

    strengths = _strengths(res, sweep)
    xs, kind = _x_positions(strengths)
    grid = _grid(res, sweep["label"])
    colours = _colours(res)
    threshold = -math.log10(float(res["alpha"]))
    top = threshold
    capped = False
    with figure(path, size=(8.6, 4.4)) as ax:
        acc_ax = ax.twinx()
        for m, colour in colours.items():
            cells = [grid.get((m, _skey(s))) for s in strengths]
            ok = [c is not None and not c.get("error") for c in cells]
            ys = [neg_log10_p(c["p_value"]) if good and c else math.nan for c, good in zip(cells, ok, strict=True)]
            accs = [100 * a if good and c and (a := _number(c["test_accuracy"])) is not None else math.nan
                    for c, good in zip(cells, ok, strict=True)]
            finite = [y for y in ys if math.isfinite(y)]
            top = max([top, *finite])
            capped = capped or P_CAP in finite
            acc_ax.plot(xs, accs, linestyle=(0, (4, 3)), marker=".", color=colour, alpha=0.45, linewidth=1.4)
            ax.plot(xs, ys, "-", marker="o", color=colour, linewidth=2.2, markersize=6, zorder=3)
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
        acc_ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.13, 1.0), borderaxespad=0.0,
                      fontsize="small", frameon=False)
    return path


def robustness_share(res: dict[str, Any], method: str) -> float | None:
    """The share of ``method``'s attacked cells (every sweep and strength, errored cells left out) in which the
    watermark was still detected; None without cells."""
    cells = [c for c in res["cells"] if c["method"] == method and not c.get("error")]
    return sum(c["detected"] is True for c in cells) / len(cells) if cells else None


def _summary_figure(path: Path, res: dict[str, Any]) -> Path:
    """Top: the survival matrix (methods × sweeps) at full width. Bottom: each method's accuracy cost against the
    share of attacked cells it survives (top right is best)."""
    from matplotlib.colors import ListedColormap

    methods = list(res["methods"])
    sweeps = res["sweeps"]
    colours = _colours(res)
    width = max(9.0, 2.2 + 1.25 * len(sweeps))
    mat_h = 1.4 + 0.5 * len(methods)
    with figure(path, nrows=2, size=(width, mat_h)) as (mat_ax, sc_ax):
        mat_ax.get_subplotspec().get_gridspec().set_height_ratios([mat_h, 4.2])
        mat_ax.figure.set_size_inches(width, mat_h + 4.6)
        # matrix: 0 never, 1 partly, 2 all, 3 error / no data
        codes = {"lost": 0, "part": 1, "ok": 2, "err": 3}
        cmap = ListedColormap(["#f4a6a6", "#ffe08a", "#9fdfa8", "#dddddd"])
        surv = [[survival(res, m, s) for s in sweeps] for m in methods]
        ys = list(range(len(methods)))
        mat_ax.imshow([[codes[v.css] for v in row] for row in surv] if sweeps else [[3] for _ in methods],
                      cmap=cmap, vmin=-0.5, vmax=3.5, aspect="auto")
        for i, row in enumerate(surv):
            for j, v in enumerate(row):
                frac = f"\n{v.detected}/{v.measured}" if v.measured else ""
                mat_ax.text(j, i, v.text + frac, ha="center", va="center", fontsize=9)
        mat_ax.set_yticks(ys, methods, fontsize=10)
        mat_ax.set_xticks(range(len(sweeps)), [textwrap.fill(str(s["label"]), 14) for s in sweeps], fontsize=9)
        mat_ax.xaxis.tick_top()
        mat_ax.set_xticks([x - 0.5 for x in range(1, len(sweeps))], minor=True)
        mat_ax.set_yticks([y - 0.5 for y in range(1, len(methods))], minor=True)
        mat_ax.grid(True, which="minor", color="white", linewidth=2)
        mat_ax.tick_params(which="minor", length=0)
        mat_ax.set_xlabel("strongest attack strength at which the watermark is still detected "
                          "(green: every strength, red: none; n/m: strengths detected / measured)")
        mat_ax.set_title("Which method survives which attack, at what cost", fontweight="bold", pad=12)
        points = [(fid, 100 * share, m) for m in methods
                  if (fid := _number(res["methods"][m]["fidelity_pp"])) is not None
                  and (share := robustness_share(res, m)) is not None]
        for i, (x, y, m) in enumerate(sorted(points)):  # neighbours' labels alternate above and below
            sc_ax.scatter([x], [y], s=90, color=colours[m], zorder=3, edgecolor="black", linewidth=0.6)
            sc_ax.annotate(str(m), (x, y), xytext=(6, 5 if i % 2 == 0 else -13), textcoords="offset points",
                           fontsize=9)
        sc_ax.axvline(0, color="grey", linewidth=0.9, linestyle=":")
        sc_ax.set_xlabel("accuracy cost of embedding: Δ task accuracy vs the unmarked model (pp; right is better)")
        sc_ax.set_ylabel("attacked cells still detected (%)")
        sc_ax.set_ylim(-5, 105)
        sc_ax.margins(x=0.25)
        sc_ax.grid(True, alpha=0.3)
        sc_ax.set_title("cost vs robustness (every sweep and strength counted once; top right is best)")
    return path


# ----------------------------------------------------------------------------- the page as blocks

#: inline text: a plain string, or ``("code", text)`` / ``("b", text)``.
Inline = str | tuple[str, str]


@dataclass(frozen=True)
class Cell:
    """A table cell with a CSS class (``ok`` detected, ``lost`` not detected, ``part``, ``err``)."""

    text: str
    css: str = ""


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    parts: tuple[Inline, ...]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str | Cell, ...], ...]


@dataclass(frozen=True)
class Image:
    name: str
    alt: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[tuple[Inline, ...], ...]


Block = Heading | Para | Table | Image | Bullets


def _title(res: dict[str, Any]) -> str:
    cfg = res["config"]
    return f"Watermark evaluation: {cfg['model']} on {cfg['dataset']}"


def _schedule_text(train: Any) -> str:
    if not isinstance(train, dict):
        return DASH if train is None else str(train)
    first = ("optimizer", "lr", "epochs", "batch_size")
    head = [f"{str(train.get('optimizer', '')).upper()} lr {_value_text(train.get('lr'))}".strip(),
            f"{train.get('epochs', DASH)} epochs", f"batch {train.get('batch_size', DASH)}"]
    rest = [f"{str(k).replace('_', ' ')} {_value_text(v)}" for k, v in train.items()
            if k not in (*first, "progress", "device") and v not in (None, (), [], False)]
    return ", ".join(head + rest)


def _value_text(v: Any) -> str:
    if isinstance(v, dict | list):
        return json.dumps(v, separators=(", ", ": "), default=str)
    if isinstance(v, float) and math.isfinite(v):
        return f"{v:.4g}"
    return fmt(v)


def _seconds(v: Any, digits: int) -> str:
    n = _number(v)
    return DASH if n is None else f"{n:.{digits}f}"


def _capacity_text(cap: dict[str, Any]) -> str:
    if cap["value"] is None:
        return DASH
    return f"{cap['value']} {cap['unit']}" if cap["unit"] else str(cap["value"])


def _sweep_header(sweep: dict[str, Any]) -> str:
    return f"{sweep['label']}: survives"


def _cell_text(c: dict[str, Any] | None) -> Cell:
    if c is None:
        return Cell(DASH)
    if c.get("error"):
        return Cell("error", "err")
    mark = " ✓" if c["detected"] is True else " ✗"
    acc = pct(c["test_accuracy"], 1)
    p = "0" if c["p_value"] == 0 else fmt(c["p_value"], 3)
    return Cell(f"{p} / {acc}{'%' if acc != DASH else ''}{mark}",
                "ok" if c["detected"] is True else "lost")


def page_blocks(res: dict[str, Any], figure_names: dict[str, str] | None = None) -> list[Block]:
    """The content of ``README.md`` and ``index.html``."""
    names = figure_names if figure_names is not None else sweep_figure_names(res)
    methods, sweeps = res["methods"], res["sweeps"]
    alpha = float(res["alpha"])
    t = res["timing"]
    blocks: list[Block] = [
        Heading(1, _title(res)),
        Para(("Which watermarking method survives which attack, and at what cost in task accuracy. Generated by "
              f"netmark {res['netmark_version']} on {res['generated']}; {t['cells']} cells ({t['cached_cells']} "
              f"from the cache) in {_seconds(t['seconds'], 0)} s ({t['executor']}, {t['jobs']} "
              f"job{'s' if t['jobs'] != 1 else ''}).",)),
        Para(("Command: ", ("code", str(res["command"])),
              " — rebuild this page and its figures from results.json with ",
              ("code", "netmark.evaluation.report.render_evaluation"), ".")),
        Heading(2, "Summary"),
        Image(SUMMARY_PNG, "survival matrix and accuracy cost vs robustness per method"),
        Para((f"Detected: the method's ownership test finds its watermark at significance level α = {alpha:g} "
              f"(p-value below it, −log10 α = {-math.log10(alpha):.2f}). A sweep column names the strongest "
              "attack strength at which the watermark was still detected (sweep order), “all” if detected at "
              "every strength, “never” if at none. Δ pp: the method's fidelity, task accuracy against the "
              "unmarked model's "
              f"{pct(res['baseline']['test_accuracy'])}% in percentage points. False positives: independent "
              "models (not marked) in which the watermark was detected.",)),
        Table(("method", "box", "task acc. (%)", "Δ pp vs unmarked", "capacity", "overhead ×", "embed (s)",
               "false positives", *(_sweep_header(s) for s in sweeps)),
              tuple(_summary_row(res, name, m) for name, m in methods.items())),
    ]
    notes = tuple((("b", str(name)), f": {m['capacity']['note']}") for name, m in methods.items()
                  if m["capacity"].get("note"))
    if notes:
        blocks += [Para(("Capacity notes:",)), Bullets(notes)]
    blocks += [Heading(2, "Setup"), Table(("", "value"), tuple(_setup_rows(res)))]
    for s in sweeps:
        blocks += _sweep_blocks(res, s, names[s["label"]])
    errors = [c for c in res["cells"] if c.get("error")]
    if errors:
        blocks += [Heading(2, "Errors"),
                   Para((f"{len(errors)} cell{'s' if len(errors) != 1 else ''} failed and "
                         f"{'is' if len(errors) == 1 else 'are'} left out of the figures and the survival summary.",)),
                   Bullets(tuple((("b", str(c["method"])), f" / {c['label']} / strength "
                                  f"{_strength_text(c['strength'])}: ", ("code", str(c["error"])))
                                 for c in errors))]
    if has_access(res):
        blocks += access_blocks(res)
    return blocks


def _setup_rows(res: dict[str, Any]) -> list[tuple[str, str]]:
    cfg = res["config"]
    base = res["baseline"]
    rows = [("model", str(cfg["model"])), ("dataset", str(cfg["dataset"])),
            ("training schedule", _schedule_text(cfg["train"])),
            ("training images", "all" if cfg["train_size"] is None else str(cfg["train_size"])),
            ("independent models (false positives)", str(cfg["n_independent"])),
            ("methods", ", ".join(str(m) for m in res["methods"])),
            ("attack sweeps", ", ".join(str(s["label"]) for s in res["sweeps"])),
            ("significance level α", f"{float(res['alpha']):g}"),
            ("unmarked model", f"task accuracy {pct(base['test_accuracy'])}%, seed {base['seed']}")]
    shown = {*_CONFIG_KEYS, "sweeps", "alpha"}  # the sweeps have their own sections; alpha is a row above
    rows += [(str(k).replace("_", " "), _value_text(v)) for k, v in cfg.items() if k not in shown]
    return rows


def _summary_row(res: dict[str, Any], name: str, m: dict[str, Any]) -> tuple[str | Cell, ...]:
    fid = _number(m["fidelity_pp"])
    fp = m["false_positives"]
    ratio = _number(m["overhead_ratio"])
    cells: list[str | Cell] = [
        str(name), "black" if m["black_box"] else "white", pct(m["test_accuracy"]),
        DASH if fid is None else f"{fid:+.2f}", _capacity_text(m["capacity"]),
        DASH if ratio is None else f"{ratio:.2f}×", _seconds(m["embed_seconds"], 1),
        Cell(f"{fp['detected']} of {fp['n']}", "ok" if fp["detected"] == 0 else "lost")]
    for s in res["sweeps"]:
        v = survival(res, name, s)
        cells.append(Cell(v.text, v.css))
    return tuple(cells)


def _sweep_blocks(res: dict[str, Any], sweep: dict[str, Any], png: str) -> list[Block]:
    strengths = _strengths(res, sweep)
    grid = _grid(res, sweep["label"])
    unit = f" ({sweep['unit']})" if sweep["unit"] else ""
    rows = tuple((str(m), *(_cell_text(grid.get((m, _skey(s)))) for s in strengths)) for m in res["methods"])
    return [Heading(2, str(sweep["label"])),
            Para(("Attack ", ("code", str(sweep["attack"])), f", strength{unit}: "
                  f"{', '.join(_strength_text(s) for s in strengths)}. Cells: p-value / task accuracy of the "
                  "attacked model; ✓ detected, ✗ not detected.",)),
            Image(png, f"{sweep['label']}: -log10 p and task accuracy per method"),
            Table(("method", *(_strength_text(s) for s in strengths)), rows)]


# ----------------------------------------------------------------------------- writers


def _md_text(s: str) -> str:
    """Plain markdown text: no raw HTML from the JSON reaches a markdown renderer."""
    return html.escape(s, quote=False)


def _md_inline(parts: Sequence[Inline]) -> str:
    out = []
    for p in parts:
        if isinstance(p, str):
            out.append(_md_text(p))
        elif p[0] == "code":
            fence = "``" if "`" in p[1] else "`"
            out.append(f"{fence}{p[1]}{fence}" if fence == "`" else f"{fence} {p[1]} {fence}")
        else:
            out.append(f"**{_md_text(p[1])}**")
    return "".join(out)


def to_markdown(blocks: Sequence[Block]) -> str:
    """The blocks as GitHub markdown."""
    parts: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            parts.append(f"{'#' * b.level} {_md_text(b.text)}")
        elif isinstance(b, Para):
            parts.append(_md_inline(b.parts))
        elif isinstance(b, Table):
            parts.append(markdown_table([_md_text(h) for h in b.headers],
                                        [[_md_text(c.text if isinstance(c, Cell) else c) for c in r]
                                         for r in b.rows]))
        elif isinstance(b, Image):
            parts.append(f"![{_md_text(b.alt)}]({b.name})")
        else:
            parts.append("\n".join(f"- {_md_inline(item)}" for item in b.items))
    return "\n\n".join(parts) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;line-height:1.45;color:#1f2328;
margin:0 auto;padding:1rem 1.25rem 3rem;max-width:1200px}
h1{font-size:1.6rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
h2{font-size:1.3rem;margin-top:2rem;border-bottom:1px solid #eaeef2;padding-bottom:.2rem}
code{background:#f6f8fa;padding:.1rem .3rem;border-radius:4px;font-size:.9em;word-break:break-word}
.scroll{overflow-x:auto;margin:.6rem 0}
table{border-collapse:collapse;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.3rem .55rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}
tbody tr:nth-child(even) td:not([class]){background:#fbfcfd}
td.ok{background:#d3f5dc}td.lost{background:#fbd5d5}td.part{background:#fff1b8}td.err{background:#e4e6e8}
img{max-width:100%;height:auto;display:block;margin:.6rem 0;border:1px solid #eaeef2}
""".strip()


def _html_inline(parts: Sequence[Inline]) -> str:
    out = []
    for p in parts:
        if isinstance(p, str):
            out.append(html.escape(p))
        else:
            tag = "code" if p[0] == "code" else "strong"
            out.append(f"<{tag}>{html.escape(p[1])}</{tag}>")
    return "".join(out)


def _html_cell(c: str | Cell) -> str:
    if isinstance(c, Cell):
        cls = f' class="{html.escape(c.css)}"' if c.css else ""
        return f"<td{cls}>{html.escape(c.text)}</td>"
    return f"<td>{html.escape(c)}</td>"


def to_html(blocks: Sequence[Block], images: dict[str, bytes], *, title: str) -> str:
    """The blocks as one self-contained HTML page; ``images`` maps an :class:`Image`'s name to its PNG bytes."""
    body: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            body.append(f"<p>{_html_inline(b.parts)}</p>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b.headers)
            rows = "".join("<tr>" + "".join(_html_cell(c) for c in r) + "</tr>" for r in b.rows)
            body.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>'
                        "</table></div>")
        elif isinstance(b, Image):
            data = base64.b64encode(images[b.name]).decode("ascii")
            body.append(f'<img alt="{html.escape(b.alt)}" src="data:image/png;base64,{data}">')
        else:
            body.append("<ul>" + "".join(f"<li>{_html_inline(i)}</li>" for i in b.items) + "</ul>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
