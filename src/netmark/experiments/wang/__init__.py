"""Reproduction of Wang et al. 2020 (EI), "Watermarking in Deep Neural Networks via Error Back-propagation".

Data + one runner: :mod:`.spec` declares the scales (``quick``/``cpu``), the runs (each model trained
at most once per invocation) and the experiments (Tables 3, 4, 5, 7, Fig. 4 and an acceptance block,
issue 3) with the paper's values; :func:`run` executes them and writes ``results.json``,
``README.md`` and PNG figures; :func:`render` rebuilds README and figures from ``results.json`` alone.

Example::

    from netmark.experiments.wang import run
    results = run("reports/wang", progress=print)     # Fashion-MNIST + the 784-64-10 MLP, ~25 min on 2 cores
    run("/tmp/wang-quick", quick=True)                # digits + mlp, < 1 minute
"""

from __future__ import annotations

from .render import render
from .runs import RUNS, run
from .spec import EXPERIMENT_ID, EXPERIMENTS, SCALES, Experiment, RunSpec, Scale, get_scale, plan

__all__ = ["EXPERIMENTS", "EXPERIMENT_ID", "RUNS", "SCALES", "Experiment", "RunSpec", "Scale", "get_scale", "plan",
           "render", "run"]
