"""A study declared as data (:class:`Study`, :class:`ExperimentBase`, :class:`MeasureRegistry`) and its
``render(...)`` (``results.json`` -> README and figures); its ``run(...)`` is :mod:`netmark.bench.reproduce`.

A paper's package declares its study as data and functions: ``spec`` (``STUDY``, a :class:`Study`: presets, the
run plan and schedule, ``EXPERIMENTS`` of :class:`ExperimentBase`), ``runs`` (``RUNS``, a
:class:`netmark.bench.runner.Runs`: its data roles, the method that embeds a run, what a run's record holds),
``measure`` (``MEASURES``, a :class:`MeasureRegistry`) and ``render`` (:func:`make_render`); the one
:class:`netmark.bench.runner.Runner` trains every paper's runs, each at most once per invocation, shared
between the experiments (an experiment's measurement: ``measure.MEASURES[experiment.name]``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netmark._util import atomic_write_text
from netmark.bench.report import check_render_target, read_results
from netmark.errors import ConfigError

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Study:
    """A reproduction declared as data (its ``spec.STUDY``).

    Attributes:
        id / paper: ``results["experiment"]`` and ``results["paper"]``.
        title: the start of the progress lines; part of every cached run's fingerprint (keep it).
        scales / default_scale: the presets (a ``Scale`` each, one class) and the one used by default.
        plan: ``plan(scale) -> {name: RunSpec}``, every run of a scale.
        schedule: ``schedule(scale, spec) -> TrainConfig``, the run's training (or attack) schedule.
        experiments: the tables and figures (:class:`ExperimentBase`).
    """

    id: str
    paper: str
    title: str
    scales: Mapping[str, Any]
    default_scale: str
    plan: Callable[[Any], dict[str, Any]]
    schedule: Callable[[Any, Any], Any]
    experiments: Sequence[Any]

    def get_scale(self, scale: Any = None, quick: bool = False) -> Any:
        """A preset by name (``None``: ``quick`` if ``quick`` else the default) or a custom ``Scale``."""
        if isinstance(scale, type(self.scales[self.default_scale])):
            return scale
        name = scale if scale is not None else ("quick" if quick else self.default_scale)
        if name not in self.scales:
            raise ConfigError(f"unknown scale {name!r}; choose one of {', '.join(self.scales)}")
        return self.scales[name]


class MeasureRegistry(dict[str, Callable[[Any, Any], dict[str, Any]]]):
    """A paper's measurements by experiment name (``measure.MEASURES``): decorating a function
    ``(runner, experiment) -> dict`` with the registry registers it under its own name."""

    def __call__(self, fn: Callable[[Any, Any], dict[str, Any]]) -> Callable[[Any, Any], dict[str, Any]]:
        self[fn.__name__] = fn
        return fn


@dataclass(frozen=True)
class ExperimentBase:
    """One table or figure of a paper (a paper's ``Experiment`` adds its ``groups``).

    Attributes:
        name: key of ``results["experiments"]`` and of ``measure.MEASURES``.
        paper_ref: where it is in the paper ("Table 4", "Fig. 5", "§5.1").
        title: one line.
        runs: run names needed (an ``@group`` expands to the runs of :meth:`groups` at a scale).
        paper: the paper's values.
        notes: how our measurement maps onto the paper's.
    """

    name: str
    paper_ref: str
    title: str
    runs: tuple[str, ...]
    paper: dict[str, Any] = field(default_factory=dict)
    notes: str = ""

    def groups(self, scale: Any) -> dict[str, list[str]]:
        """The runs each ``@group`` of ``runs`` stands for at ``scale`` (a paper's groups)."""
        return {}

    def resolve_runs(self, scale: Any) -> list[str]:
        """``runs`` with every ``@group`` expanded at ``scale``, each run once, in order."""
        groups = self.groups(scale)
        return list(dict.fromkeys(n for r in self.runs for n in groups.get(r, [r])))


def make_render(module: str, what: str) -> Callable[..., list[Path]]:
    """The ``render(results_json_path, out_dir=None, *, force=False)`` of the paper module ``module``: its
    ``FIGURES``, ``_figures(out, results)`` and ``markdown(results)`` (looked up when called)."""

    def render(results_json_path: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None, *,
               force: bool = False) -> list[Path]:
        m = sys.modules[module]
        return render_reproduction(results_json_path, out_dir, force=force, figures=m.FIGURES, draw=m._figures,
                                   markdown=m.markdown)

    render.__doc__ = (f"Write README.md and the PNGs of {what} reproduction from its ``results.json`` alone.\n\n"
                      "    ``out_dir`` defaults to the directory of ``results.json`` (whose README/PNGs are "
                      "overwritten);\n    another directory's existing files are only overwritten with ``force``.")
    render.__module__ = module
    return render


def render_reproduction(results_json_path: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None, *,
                        force: bool,
                        figures: Sequence[str], draw: Callable[[Path, dict[str, Any]], list[Path]],
                        markdown: Callable[[dict[str, Any]], str]) -> list[Path]:
    """The body of a paper's ``render(...)``: ``draw(out, results)`` writes ``figures``."""
    src = Path(results_json_path)
    res = read_results(src)
    out = Path(out_dir) if out_dir is not None else src.parent
    check_render_target(src, out, ("README.md", *figures), force)
    out.mkdir(parents=True, exist_ok=True)
    written = draw(out, res)
    written.append(atomic_write_text(out / "README.md", markdown(res), force=True))
    return written
