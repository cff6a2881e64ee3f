"""A comparative evaluation's ``results.json`` → ``README.md``, ``index.html`` and PNG figures.

The evaluation asks *which watermarking method survives which attack, at what accuracy cost*. Its
``results.json`` (schema ``netmark-evaluation/1``) holds one record per method (task accuracy, fidelity,
capacity, overhead, false positives on independent models) and one cell per (method, attack sweep,
strength) with the ownership test's p-value, the detection decision and the attacked model's accuracy.
:func:`render_evaluation` rebuilds every derived file from that JSON alone:

* ``sweep-<i>-<label>.png`` and ``summary.png`` — :mod:`netmark.evaluation.figures`;
* ``README.md`` — the setup, the summary table and one section per sweep (figure and a ``p / acc%`` table);
* ``index.html`` — the same content as one self-contained page (inline CSS, the PNGs as data URIs).

The page is described once as a list of blocks (:class:`Heading`, :class:`Para`, :class:`Table`, ...)
and written twice, as markdown and as HTML, so both files always say the same thing. Every attacked cell is
classified when rendering (:mod:`netmark.evaluation.outcome`): *survived* (detected), *removed* (not detected in a
model still within ``max_accuracy_drop`` pp of the marked model's accuracy) or *destroyed* (not detected, but the
attack cost more accuracy than that): the summary counts robustness over the usable cells only.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from netmark._util import atomic_write_text
from netmark.bench.report import DASH, check_render_target, fmt, markdown_table, pct, read_results
from netmark.errors import ConfigError
from netmark.evaluation.blocks import Block, Bullets, Cell, Heading, Image, Inline, Para, Table, strength_table
from netmark.evaluation.figures import neg_log10_p, summary_figure, sweep_figure
from netmark.evaluation.forgery import forgery_blocks
from netmark.evaluation.outcome import (
    DESTROYED,
    MARKS,
    REMOVED,
    SURVIVED,
    _strength_text,
    _strengths,
    by_strength,
    cell_kind,
    counts,
    drop_is_stored,
    max_drop,
    number_text,
    robustness_share,
    rule_text,
    survival,
    survival_text,
    usable,
)
from netmark.evaluation.report_access import ACCESS_PNG, TRANSFORM_KEYS, access_blocks, access_figure, has_access
from netmark.evaluation.verdict import verdict_blocks

#: names other modules (and tests) import from here
__all__ = ["INDEX", "README", "SCHEMA", "SUMMARY_PNG", "load_evaluation", "neg_log10_p", "page_blocks",
           "render_evaluation", "robustness_share", "survival", "sweep_figure_names", "to_html", "to_markdown"]

SCHEMA = "netmark-evaluation/1"
README = "README.md"
INDEX = "index.html"
SUMMARY_PNG = "summary.png"
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
    pngs = {SUMMARY_PNG: summary_figure(out / SUMMARY_PNG, res)}
    if extra:
        pngs[ACCESS_PNG] = access_figure(out / ACCESS_PNG, res)
    for sweep in res["sweeps"]:
        name = names[sweep["label"]]
        pngs[name] = sweep_figure(out / name, res, sweep)
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
    for key, keys in (("config", _CONFIG_KEYS), ("baseline", ("test_accuracy", "seed")), ("timing", _TIMING_KEYS)):
        _need(p, res[key], keys, repr(key))
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
    for i, s in enumerate(_list(p, res, "sweeps", "")):
        _need(p, s, _SWEEP_KEYS, f"sweep {i}")
        _list(p, s, "strengths", f"sweep {s['label']!r}: ")
        if s["label"] in labels:
            raise ConfigError(f"{p}: two sweeps are labelled {s['label']!r}")
        labels.add(s["label"])
    for i, c in enumerate(_list(p, res, "cells", "")):
        _need(p, c, _CELL_KEYS, f"cell {i}")
        if c["method"] not in methods:
            raise ConfigError(f"{p}: cell {i} names method {c['method']!r}, which 'methods' lacks")
        if c["label"] not in labels:
            raise ConfigError(f"{p}: cell {i} names sweep {c['label']!r}, which 'sweeps' lacks")
    if res.get("access") is not None:  # absent: results written before the anti-piracy section
        _need(p, res["access"], ("transforms",), "'access'")
        _need(p, res["access"]["transforms"], (), "'access' 'transforms'")
        for kind, t in res["access"]["transforms"].items():
            _need(p, t, TRANSFORM_KEYS, f"anti-piracy transform {kind!r}")
            _list(p, t, "piracy", f"anti-piracy transform {kind!r}: ")
            _list(p, t, "cells", f"anti-piracy transform {kind!r}: ")
    return res


def _need(path: Path, obj: Any, keys: Sequence[str], where: str) -> None:
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: {where} is not a JSON object")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise ConfigError(f"{path}: {where} lacks the key{'s' if len(missing) > 1 else ''} "
                          f"{', '.join(repr(k) for k in missing)}")


def _list(path: Path, obj: dict[str, Any], key: str, where: str) -> list[Any]:
    if not isinstance(obj[key], list):
        raise ConfigError(f"{path}: {where}{key!r} is not a JSON list")
    return obj[key]


def sweep_figure_names(res: dict[str, Any]) -> dict[str, str]:
    """Sweep label → its PNG's file name (``sweep-<i>-<slug>.png``, unique by the index)."""
    names = {}
    for i, s in enumerate(res["sweeps"], 1):
        slug = re.sub(r"[^a-z0-9]+", "-", str(s["label"]).lower()).strip("-")[:40].strip("-")
        names[s["label"]] = f"sweep-{i}-{slug or 'attack'}.png"
    return names


# ------------------------------------------------- the page as blocks (their types: netmark.evaluation.blocks)


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


def _capacity_text(cap: dict[str, Any]) -> str:
    if cap["value"] is None:
        return DASH
    return f"{cap['value']} {cap['unit']}" if cap["unit"] else str(cap["value"])


def _cell_text(res: dict[str, Any], c: dict[str, Any] | None) -> Cell:
    if c is None:
        return Cell(DASH)
    kind = cell_kind(res, c)
    if kind is None:
        return Cell("error", "err")
    mark = " ✓ (model destroyed)" if kind == SURVIVED and not usable(res, c) else f" {MARKS[kind]}"
    acc = pct(c["test_accuracy"], 1)
    p = "0" if c["p_value"] == 0 else fmt(c["p_value"], 3)
    return Cell(f"{p} / {acc}{'%' if acc != DASH else ''}{mark}",
                {SURVIVED: "ok", REMOVED: "lost", DESTROYED: "dead"}[kind])


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
              f"from the cache) in {number_text(t['seconds'], '.0f')} s ({t['executor']}, {t['jobs']} "
              f"job{'s' if t['jobs'] != 1 else ''}).",)),
        Para(("Command: ", ("code", str(res["command"])),
              " — rebuild this page and its figures from results.json with ",
              ("code", "netmark.evaluation.report.render_evaluation"), ".")),
        Heading(2, "Summary"),
        Image(SUMMARY_PNG, "survival matrix and accuracy cost vs robustness per method"),
        Para((rule_text(res),)),
        Para((f"Detected: the method's ownership test finds its watermark at significance level α = {alpha:g} "
              f"(p-value below it, −log10 α = {-math.log10(alpha):.2f}). A sweep column names the strongest "
              "attack strength at which the watermark was still detected in a useful model (sweep order), “all” "
              "if detected at every strength, “never” if at none, “model destroyed” if no strength left one; "
              "“(k destroyed)”: strengths that destroyed the model. Attacked cells: survived / removed / destroyed "
              "over every sweep and strength; "
              "robust: the share of the usable cells (survived in a useful model, or removed) still detected. "
              "Δ pp: the method's fidelity, task accuracy against the "
              "unmarked model's "
              f"{pct(res['baseline']['test_accuracy'])}% in percentage points. False positives: independent "
              "models (not marked) in which the watermark was detected.",)),
        Table(("method", "box", "task acc. (%)", "Δ pp vs unmarked", "capacity", "overhead ×", "embed (s)",
               "false positives", "attacked cells ✓ / ✗ / destroyed", "robust (% of usable)",
               *(f"{s['label']}: survives" for s in sweeps)),
              tuple(_summary_row(res, name, m) for name, m in methods.items())),
    ]
    notes = tuple((("b", str(name)), f": {m['capacity']['note']}") for name, m in methods.items()
                  if m["capacity"].get("note"))
    if notes:
        blocks += [Para(("Capacity notes:",)), Bullets(notes)]
    blocks += verdict_blocks(res)
    blocks += [Heading(2, "Setup"), Table(("", "value"), tuple(_setup_rows(res)))]
    if any(s["attack"] in OBFUSCATIONS for s in sweeps):
        blocks += [Heading(2, "Function-preserving obfuscation"), Para((OBFUSCATION_TEXT,))]
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
    if res.get("forgery"):
        blocks += forgery_blocks(res)
    if has_access(res):
        blocks += access_blocks(res)
    return blocks


#: the sweeps of the obfuscation threat model (issue 21), and what the report says of it
OBFUSCATIONS = ("permute", "rescale", "dummy-neurons", "obfuscate")
OBFUSCATION_TEXT = (
    "A thief needs no data and no training to move every weight a white-box key indexes: permuting the hidden units "
    "of a layer (and the matching inputs of the next), rescaling a ReLU unit's incoming weights by c > 0 and its "
    "outgoing ones by 1/c, or adding dummy units whose outgoing weights are zero computes exactly the same function "
    "(Yan et al., USENIX Security 2023: neural structural obfuscation). The sweeps below apply netmark.attacks.permute "
    "and rescale to a fraction of the hidden unit spaces, dummy-neurons with a share of every hidden layer's width "
    "added, and the three (half the width added) followed by fine-tuning on the attacker's images; the attacked "
    "model's accuracy is the marked "
    "model's (up to float rounding) unless it was fine-tuned. A key with an alignment reference (netmark.methods."
    "alignment) maps the suspect's units back onto the owner's before extracting; black-box keys read only the "
    "function, which these attacks keep.")


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
            ("max. accuracy drop of a useful attacked model",
             f"{max_drop(res):g} pp" + ("" if drop_is_stored(res) else " (default; not stored in these results)")),
            ("unmarked model", f"task accuracy {pct(base['test_accuracy'])}%, seed {base['seed']}")]
    shown = {*_CONFIG_KEYS, "sweeps", "alpha", "max_accuracy_drop"}  # own sections / rows above
    rows += [(str(k).replace("_", " "), _value_text(v)) for k, v in cfg.items() if k not in shown]
    return rows


def _summary_row(res: dict[str, Any], name: str, m: dict[str, Any]) -> tuple[str | Cell, ...]:
    fp = m["false_positives"]
    cells: list[str | Cell] = [
        str(name), "black" if m["black_box"] else "white", pct(m["test_accuracy"]),
        number_text(m["fidelity_pp"], "+.2f"), _capacity_text(m["capacity"]),
        number_text(m["overhead_ratio"], ".2f", "×"), number_text(m["embed_seconds"], ".1f"),
        Cell(f"{fp['detected']} of {fp['n']}", "ok" if fp["detected"] == 0 else "lost")]
    k = counts(res, name)
    share = robustness_share(res, name)
    cells += [f"{k.survived} / {k.removed} / {k.destroyed}",
              DASH if share is None else f"{100 * share:.0f} ({k.usable - k.removed} of {k.usable})"]
    for s in res["sweeps"]:
        v = survival(res, name, s)
        cells.append(Cell(survival_text(v), v.css))
    return tuple(cells)


def _sweep_blocks(res: dict[str, Any], sweep: dict[str, Any], png: str) -> list[Block]:
    strengths = _strengths(res, sweep)
    unit = f" ({sweep['unit']})" if sweep["unit"] else ""
    return [Heading(2, str(sweep["label"])),
            Para(("Attack ", ("code", str(sweep["attack"])), f", strength{unit}: "
                  f"{', '.join(_strength_text(s) for s in strengths)}. Cells: p-value / task accuracy of the "
                  "attacked model; ✓ detected (survived), ✗ not detected in a useful model (removed), ✗ destroyed: not "
                  f"detected, but the attacked model lost more than {max_drop(res):g} pp of the marked model's task "
                  "accuracy (the attack destroyed it).",)),
            Image(png, f"{sweep['label']}: -log10 p and task accuracy per method"),
            strength_table("method", {m: by_strength(res["cells"], sweep["label"], m) for m in res["methods"]},
                           strengths, lambda c: _cell_text(res, c))]


# ----------------------------------------------------------------------------- writers


def _md_text(s: str) -> str:
    """Plain markdown text: no raw HTML from the JSON reaches a markdown renderer."""
    return html.escape(s, quote=False)


def _inline(parts: Sequence[Inline], *, md: bool) -> str:
    """Inline parts as markdown (``md``) or HTML: plain text escaped, code spans, bold."""
    out = []
    for p in parts:
        if isinstance(p, str):
            out.append(_md_text(p) if md else html.escape(p))
        elif not md:
            tag = "code" if p[0] == "code" else "strong"
            out.append(f"<{tag}>{html.escape(p[1])}</{tag}>")
        elif p[0] == "code":
            out.append(f"`` {p[1]} ``" if "`" in p[1] else f"`{p[1]}`")
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
            parts.append(_inline(b.parts, md=True))
        elif isinstance(b, Table):
            parts.append(markdown_table([_md_text(h) for h in b.headers],
                                        [[_md_text(c.text if isinstance(c, Cell) else c) for c in r]
                                         for r in b.rows]))
        elif isinstance(b, Image):
            parts.append(f"![{_md_text(b.alt)}]({b.name})")
        else:
            parts.append("\n".join(f"- {_inline(item, md=True)}" for item in b.items))
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
td.dead{background:repeating-linear-gradient(45deg,#e4e4ee,#e4e4ee 6px,#f4f4fa 6px,#f4f4fa 12px)}
img{max-width:100%;height:auto;display:block;margin:.6rem 0;border:1px solid #eaeef2}
""".strip()


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
            body.append(f"<p>{_inline(b.parts, md=False)}</p>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b.headers)
            rows = "".join("<tr>" + "".join(_html_cell(c) for c in r) + "</tr>" for r in b.rows)
            body.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>'
                        "</table></div>")
        elif isinstance(b, Image):
            data = base64.b64encode(images[b.name]).decode("ascii")
            body.append(f'<img alt="{html.escape(b.alt)}" src="data:image/png;base64,{data}">')
        else:
            body.append("<ul>" + "".join(f"<li>{_inline(i, md=False)}</li>" for i in b.items) + "</ul>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
