"""Re-render any committed report from its ``results.json``: :func:`render`, what ``netmark report`` calls.

The one dispatcher over both kinds of study: a paper reproduction (by its ``experiment`` id, through
:data:`netmark.bench.report.REPRODUCTIONS`) or a ``netmark evaluate`` run (by its ``schema``,
:func:`netmark.evaluation.report.render_evaluation`). It sits above both packages, so neither imports the other's
renderer (:mod:`netmark.evaluation` uses the report helpers of :mod:`netmark.bench.report`: an import cycle
if the dispatcher lived there).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from netmark.bench.report import REPRODUCTIONS, read_results
from netmark.errors import ConfigError
from netmark.evaluation.report import render_evaluation


def render(results_json_path: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None, *,
           force: bool = False) -> list[Path]:
    """Regenerate README.md and the PNGs of any reproduction (or ``netmark evaluate`` run: also its HTML page)
    from its ``results.json``.

    ``out_dir`` defaults to the directory of ``results.json``. Returns the files written.
    """
    path = Path(results_json_path)
    results = read_results(path)
    if str(results.get("schema", "")).startswith("netmark-evaluation/"):  # `netmark evaluate`'s results
        return [render_evaluation(path, out_dir, force=force)]
    exp = results.get("experiment")
    if exp not in REPRODUCTIONS:
        known = ", ".join(sorted(REPRODUCTIONS))
        raise ConfigError(f"{path} is not a known reproduction (experiment={exp!r}; known: {known})")
    module = importlib.import_module(REPRODUCTIONS[exp])
    return module.render(path, out_dir, force=force)
