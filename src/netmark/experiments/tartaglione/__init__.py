"""Reproduction of Tartaglione et al. 2021, "Delving in the loss landscape to embed robust watermarks into
neural networks".

Data + one runner: :mod:`.spec` declares the scales (``quick``/``cpu``), the runs (each model trained at
most once per invocation: plain, R = 0/1/4(/16) with the split fast path, R4 with the paper's full-batch
replicas, their fine-tuned copies and ≥ 20 independent models) and the experiments (Table I, Figs. 3, 4a,
4b, the replicas' step cost and an acceptance block, issue 4) with the paper's values; :func:`run` executes
them and writes ``results.json``, ``README.md`` and PNG figures; :func:`render` rebuilds README and figures
from ``results.json`` alone. :mod:`.variants` compares the paper's embedding with the authors' public code's
(``netmark reproduce tartaglione-variants``, issue 18) on the same runner and cache.

Example::

    from netmark.experiments.tartaglione import run
    run("/tmp/tartaglione-quick", quick=True)            # digits + simple-cnn, < 1 minute
    run("reports/tartaglione", progress=print)           # Fashion-MNIST + LeNet5-caffe (cpu scale)
"""

from __future__ import annotations

from .render import render
from .runs import RUNS, run
from .spec import EXPERIMENT_ID, EXPERIMENTS, SCALES, Experiment, RunSpec, Scale, get_scale, plan

__all__ = ["EXPERIMENTS", "EXPERIMENT_ID", "RUNS", "SCALES", "Experiment", "RunSpec", "Scale", "get_scale", "plan",
           "render", "run"]
