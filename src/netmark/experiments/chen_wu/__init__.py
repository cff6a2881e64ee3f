"""Reproduction of Chen & Wu 2018, "Protect your deep neural networks from piracy" (anti-piracy transform).

**Patent notice.** The scheme is covered by US patent 11,687,623 B2 (University of Maryland); commercial
use may need a licence.

Data + one runner: :mod:`.spec` declares the scales (``quick``/``cpu``), the runs (per architecture an
unprotected baseline and one protected model per transform: Fixed, Learned, Generator) and the
experiments (Table 2, Fig. 2, Table 3's attacks and an acceptance block, issue 5) with the paper's values;
:func:`run` executes them and writes ``results.json``, ``README.md`` and PNG figures; :func:`render`
rebuilds README and figures from ``results.json`` alone.

Example::

    from netmark.experiments.chen_wu import run
    run("/tmp/chen-wu-quick", quick=True)                 # digits, under two minutes
    run("reports/chen-wu", progress=print)                # Fashion-MNIST, simple CNN + ResNet-20 (cpu scale)
"""

from __future__ import annotations

from .render import render
from .runs import RUNS, run
from .spec import EXPERIMENT_ID, EXPERIMENTS, SCALES, Experiment, RunSpec, Scale, get_scale, plan

__all__ = ["EXPERIMENTS", "EXPERIMENT_ID", "RUNS", "SCALES", "Experiment", "RunSpec", "Scale", "get_scale", "plan",
           "render", "run"]
