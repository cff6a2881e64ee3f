"""``netmark evaluate``: fidelity, capacity, overhead, false positives and robustness of watermark methods.

>>> from netmark.evaluation import evaluate, preset
>>> results = evaluate(preset("tiny", methods=["uchida", "adi"]), "out/eval", executor="serial")  # doctest: +SKIP

The grid is a set of independent, cached jobs (:mod:`netmark.evaluation.cells`) run by an executor
(:mod:`netmark.bench.executors`); :func:`evaluate` (:mod:`netmark.evaluation.runner`) writes ``results.json``
(schema ``netmark-evaluation/1``). What is measured, on which data and with which sweeps:
:mod:`netmark.evaluation.spec`.
"""

from __future__ import annotations

from netmark.bench.executors import EXECUTORS, Executor, ProcessExecutor, SerialExecutor, get_executor
from netmark.evaluation.presets import preset
from netmark.evaluation.runner import evaluate
from netmark.evaluation.spec import SCHEMA, EvaluationConfig, Sweep, default_sweeps

__all__ = [
    "EXECUTORS", "SCHEMA", "EvaluationConfig", "Executor", "ProcessExecutor", "SerialExecutor", "Sweep",
    "default_sweeps", "evaluate", "get_executor", "preset",
]
