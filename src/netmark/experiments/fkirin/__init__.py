"""Reproduction of Fkirin et al. 2022 (the optimizer study of its §5) with issue 6's checks of every
black-box scheme: fidelity, trigger accuracy, fine-tuning, false positives through files and HTTP.

Data + one runner: :mod:`.spec` declares the scales (``quick``/``cpu``), the runs and the experiments;
:func:`run` executes them and writes ``results.json``, ``README.md`` and PNG figures; :func:`render`
rebuilds README and figures from ``results.json`` alone.

Example::

    from netmark.experiments.fkirin import run
    run("/tmp/fkirin-quick", quick=True)                               # digits, about a minute
    run("reports/fkirin", progress=print, jobs=2, cache_dir=".cache/fkirin")
"""

from __future__ import annotations

from .render import render
from .runs import RUNS, run
from .spec import EXPERIMENT_ID, EXPERIMENTS, SCALES, Experiment, RunSpec, Scale, get_scale, plan

__all__ = ["EXPERIMENTS", "EXPERIMENT_ID", "RUNS", "SCALES", "Experiment", "RunSpec", "Scale", "get_scale", "plan",
           "render", "run"]
