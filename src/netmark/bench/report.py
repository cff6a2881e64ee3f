"""Shared rendering of paper reproductions: ``results.json`` → markdown tables and PNG plots.

Every reproduction (``netmark.experiments.<paper>``) writes one ``results.json`` whose top-level
``"experiment"`` names it, and exposes ``render(results_json_path, out_dir)`` that rebuilds
``README.md`` and the PNGs from that file alone. :func:`netmark.reports.render` (what ``netmark report`` calls)
dispatches on that name through :data:`REPRODUCTIONS`.

The helpers below are deliberately small and paper-agnostic:

* :func:`fmt`, :func:`pct`, :func:`markdown_table` — tables with a paper column beside the
  measured one (``None``/NaN render as ``—``);
* :func:`page_head`, :func:`scale_table`, :func:`schedule_text` — the skeleton every reproduction's README shares
  (title, provenance and command, the ``## Scale`` table);
* :func:`write_json` / :func:`read_results` — strict JSON (NaN/Inf become ``null``), atomic writes;
* :func:`figure` — a matplotlib (Agg) figure saved atomically as PNG; :func:`plot_lines` and
  :func:`plot_hist` draw onto its axes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from netmark._util import atomic_write, atomic_write_text
from netmark.errors import ConfigError, OutputExistsError

#: experiment id (``results["experiment"]``) → module exposing ``render(results_json_path, out_dir)``.
REPRODUCTIONS: dict[str, str] = {
    "uchida2017": "netmark.experiments.uchida",
    "wang2020": "netmark.experiments.wang",
    "tartaglione2021": "netmark.experiments.tartaglione",
    "tartaglione-variants": "netmark.experiments.tartaglione.variants",  # issue 18: paper vs official-code embedding
    "chen-wu2018": "netmark.experiments.chen_wu",
    "fkirin2022": "netmark.experiments.fkirin",
}

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DASH = "—"


# ----------------------------------------------------------------------------- formatting


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and not math.isfinite(v))


def fmt(v: Any, digits: int = 3) -> str:
    """A table cell: floats with ``digits`` decimals (scientific when tiny), ints as is, None → —."""
    if _missing(v):
        return DASH
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != 0 and abs(v) < 10 ** (-digits):
            return f"{v:.2e}"
        return f"{v:.{digits}f}"
    return str(v)


def pct(v: Any, digits: int = 2) -> str:
    """A fraction shown in percent (``0.0797`` → ``7.97``)."""
    return DASH if _missing(v) else f"{100.0 * float(v):.{digits}f}"


def run_how(spec: Mapping[str, Any]) -> str:
    """How a run of a ``results["runs"]`` record was made: ``train``, or its attack and parent."""
    return f"{spec['attack']} `{spec['parent']}`" if spec["parent"] else "train"


def run_seconds(run: Mapping[str, Any]) -> str:
    """A run record's training seconds, ``(cached)`` when it was read back from the run cache."""
    return fmt(run["seconds"], 1) + (" (cached)" if run.get("from_cache") else "")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; cells that are not strings go through :func:`fmt`."""
    def cell(c: Any) -> str:
        return (c if isinstance(c, str) else fmt(c)).replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def criterion(value: Any, threshold: str, passed: Any) -> dict[str, Any]:
    """One acceptance criterion of a results block (rendered by :func:`criteria_table`)."""
    return {"value": value, "threshold": threshold, "passed": bool(passed)}


def criteria_table(criteria: dict[str, dict[str, Any]], digits: int = 4) -> str:
    """The acceptance table of a reproduction: criterion, measured value, required, PASS/FAIL (``passed`` None:
    a figure the issue asks to report, with no threshold)."""
    rows = [[name.replace("_", " "), fmt(c["value"], digits), c["threshold"],
             "reported" if c["passed"] is None else "PASS" if c["passed"] else "FAIL"]
            for name, c in criteria.items()]
    return markdown_table(["criterion", "measured", "required", ""], rows)


def by_epoch_table(series: Mapping[str, Sequence[Any]]) -> str:
    """A table with one row per epoch and one column of values (4 decimals) per ``name → values``; — past a
    series' end."""
    n = max(len(v) for v in series.values())
    rows = [[str(i), *(fmt(v[i], 4) if i < len(v) else DASH for v in series.values())] for i in range(n)]
    return markdown_table(["epoch", *(f"`{k}`" for k in series)], rows)


# ----------------------------------------------------------------------------- page skeleton


def page_head(res: Mapping[str, Any], title: str, *, notice: str | None = None, extra: str | None = None,
              quick: str | None = None, figures: bool = True, ran: str = "", tail: str = "") -> list[str]:
    """The first paragraphs of a reproduction's README: ``# title``; the paper, then which netmark and torch wrote
    the results, when, and the wall-clock (``extra`` closes the parenthesis after the training seconds; default:
    the scale's CPU threads); the command (``ran``: how the run differed from it; ``quick``: the reproduction in
    ``netmark reproduce NAME --quick``) and how to regenerate the page (``figures``: and its PNGs). With a
    ``notice`` (appended to the paper's name), the timing and the command share the third paragraph."""
    t, extra = res["timing"], f"{res['scale']['torch_threads']} CPU threads" if extra is None else extra
    made = (f"Generated by netmark {res['netmark_version']} (torch {res['torch_version']}) on {res['created']}; "
            f"wall-clock **{t['total_seconds']:.0f} s** ({t['train_seconds']:.0f} s training, {extra}).")
    quick_mode = f" (quick mode: `netmark reproduce {quick} --quick`)" if quick else ""
    cmd = (f"Command: `{res['command']}`{ran}{quick_mode} — regenerate this page{' and the figures' * figures} "
           f"from `results.json` with `netmark report <dir>`{tail}.")
    if notice is None:
        return [f"# {title}", f"*{res['paper']}.* {made}", cmd]
    return [f"# {title}", f"*{res['paper']}.*{notice}", f"{made} {cmd}"]


def scale_table(rows: Sequence[Sequence[Any]], paper: str | None) -> str:
    """The ``## Scale`` section: this run's setting beside the paper's (column ``paper``; None: no paper column)."""
    return "## Scale\n\n" + markdown_table(["", "this run", paper] if paper else ["", ""], rows)


def schedule_text(t: Mapping[str, Any], optimizer: str | None = None) -> str:
    """A training schedule (a ``TrainConfig`` as a dict) in words; ``optimizer`` replaces its optimizer's name."""
    return (f"{optimizer or t['optimizer']} lr {t['lr']:g}, momentum {t['momentum']:g}, weight decay "
            f"{t['weight_decay']:g}, batch {t['batch_size']}, {t['epochs']} epochs")


# ----------------------------------------------------------------------------- JSON


def _clean(obj: Any) -> Any:
    """Make ``obj`` strict-JSON serialisable (NaN/Inf → None, tuples → lists, Paths → str)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def write_json(path: str | os.PathLike[str], obj: Any, *, force: bool = False) -> Path:
    """Write ``obj`` as indented strict JSON, atomically; refuses to overwrite unless ``force``."""
    text = json.dumps(_clean(obj), indent=2, sort_keys=False, allow_nan=False) + "\n"
    return atomic_write_text(path, text, force=force)


def read_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a ``results.json`` (ConfigError if missing or not a JSON object)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"results file {p} does not exist")
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"results file {p} is not valid JSON ({e.msg if hasattr(e, 'msg') else e})") from None
    if not isinstance(d, dict):
        raise ConfigError(f"results file {p} does not hold a JSON object")
    return d


# ----------------------------------------------------------------------------- plots


@contextlib.contextmanager
def figure(path: str | os.PathLike[str], *, ncols: int = 1, nrows: int = 1, size: tuple[float, float] = (5.0, 3.6),
           title: str | None = None) -> Iterator[Any]:
    """Yield the axes of a new figure (a flat list if more than one) and save it as PNG on exit."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    try:
        yield flat[0] if len(flat) == 1 else flat
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110), force=True)
    finally:
        plt.close(fig)


def plot_lines(ax: Any, series: Mapping[str, tuple[Sequence[float], Sequence[float | None]]], *,
               xlabel: str = "", ylabel: str = "", title: str = "", style: str = "-", marker: str | None = "o",
               logy: bool = False, legend: bool = True, integer_x: bool = False) -> None:
    """One line per ``label → (x, y)``; ``None`` y values are skipped; ``integer_x`` for epochs."""
    for label, (xs, ys) in series.items():
        pts = [(x, y) for x, y in zip(xs, ys, strict=True) if not _missing(y)]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker=marker, markersize=3, label=label)
    if logy:
        ax.set_yscale("log")
    if integer_x:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if legend and series:
        ax.legend(fontsize="small")


def plot_hist(ax: Any, groups: Mapping[str, Sequence[float]], *, bins: int = 40,
              value_range: tuple[float, float] | None = (0.0, 1.0), xlabel: str = "", title: str = "",
              vline: float | None = None) -> None:
    """Overlaid histograms, one per ``label → values``."""
    for label, values in groups.items():
        if len(values):
            ax.hist(list(values), bins=bins, range=value_range, alpha=0.55, label=label)
    if vline is not None:
        ax.axvline(vline, color="k", linestyle=":", linewidth=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    if title:
        ax.set_title(title)
    if groups:
        ax.legend(fontsize="small")


def is_png(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` starts with the PNG signature."""
    p = Path(path)
    return p.is_file() and p.read_bytes()[:8] == PNG_MAGIC


# ----------------------------------------------------------------------------- old results


def not_measured(exp: str, title: str) -> str:
    """The section of an experiment that a ``results.json`` does not hold (written before it existed)."""
    return (f"## {title} — not measured\n\nThese results hold no `{exp}` measurement (they were written by an "
            "earlier netmark, before this experiment existed): re-run the command above to measure it.")


def section(ex: Mapping[str, Any], exp: str, title: str, fn: Any) -> str:
    """``fn(ex[exp])``, or the :func:`not_measured` section of ``exp`` when the results lack it."""
    return fn(ex[exp]) if isinstance(ex.get(exp), Mapping) else not_measured(exp, title)


# ----------------------------------------------------------------------------- dispatch


def check_render_target(results_json: Path, out_dir: Path, names: Sequence[str], force: bool) -> None:
    """Rendering next to ``results.json`` may overwrite the derived files (README, PNGs);
    rendering into another directory refuses to overwrite them unless ``force``."""
    if force or out_dir.resolve() == results_json.resolve().parent:
        return
    taken = [n for n in names if (out_dir / n).exists()]
    if taken:
        raise OutputExistsError(f"{out_dir / taken[0]} already exists; pass --force (force=True) to overwrite it")
