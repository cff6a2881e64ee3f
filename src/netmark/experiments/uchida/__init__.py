"""Reproduction of Uchida et al. 2017 (ICMR), "Embedding Watermarks into Deep Neural Networks".

Data + one runner: :mod:`.spec` declares the scales (``quick``/``cpu``/``paper``), the runs (each
model trained at most once per invocation) and the experiments (Tables 4, 6, 7, 8, Figs. 1, 2, 5,
§5.1 overwriting, and an acceptance block) with the paper's values; :func:`run` executes them and
writes ``results.json``, ``README.md`` and PNG figures; :func:`render` rebuilds README and figures
from ``results.json`` alone.

Example::

    from netmark.experiments.uchida import run
    results = run("reports/uchida", progress=print)          # Fashion-MNIST + LeNet5, ~20 min on 2 cores
    run("/tmp/uchida-quick", quick=True)                     # digits + simple-cnn, < 1 minute
"""

from __future__ import annotations

from .render import render
from .runs import RUNS, run
from .spec import EXPERIMENT_ID, EXPERIMENTS, SCALES, Experiment, RunSpec, Scale, get_scale, plan

__all__ = ["EXPERIMENTS", "EXPERIMENT_ID", "RUNS", "SCALES", "Experiment", "RunSpec", "Scale", "get_scale", "plan",
           "render", "run"]
