"""Cached runs are keyed by explicit versions and configs, never by source text (issue 19, item 5).

A run's key (:func:`netmark.experiments.cache.fingerprint`) changes when a version of what it runs is bumped (the
method's or attack's ``VERSION``, the architecture's registry version, ``TRAINING_VERSION``) and only then: moving a
function between modules leaves every key unchanged, which the source-digest scheme it replaces could not do.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import netmark
from netmark import training
from netmark.attacks import ATTACKS
from netmark.bench.cache import attack_versions, method_part
from netmark.bench.runner import Runner
from netmark.evaluation.access import _protected_fp
from netmark.evaluation.cells import BASELINE, Context, Job, independent_run, marked_run
from netmark.evaluation.measure import attack_cell
from netmark.evaluation.presets import preset
from netmark.experiments.wang.runs import RUNS
from netmark.methods import METHODS
from netmark.models import MODELS
from tests.test_experiments_cache import TINY

REPO = Path(__file__).resolve().parents[1]


def _wang_fps() -> dict[str, str]:
    r = Runner(RUNS, TINY)
    return {n: r.fingerprint(n) for n in r.plan}


def _eval_fps(cache_dir: Path) -> dict[str, str]:
    ctx = Context(preset("tiny", methods=["uchida", "wang"]), cache_dir)
    runs = (BASELINE, independent_run(0), marked_run("uchida"), marked_run("wang"))
    return {**{r.name: ctx.run_fp(r) for r in runs},
            "protected-fixed": _protected_fp(ctx, "fixed")[0]}


def _uses(runner: Runner, name: str) -> tuple[str | None, str | None]:
    """``(method, attack)`` of run ``name``: the method that trained its root run, the attack of a derived run."""
    spec = runner.plan[name]
    root = spec
    while root.parent:
        root = runner.plan[root.parent]
    m = runner.runs.method(runner, root)
    part = None if m is None else method_part(m)
    return (part["name"] if part else None), spec.attack


def test_a_run_key_follows_the_versions_of_what_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = Runner(RUNS, TINY)
    before = _wang_fps()
    uses = {n: _uses(runner, n) for n in before}
    assert {m for m, _ in uses.values()} == {None, "uchida", "wang"} and {a for _, a in uses.values()} == {None,
                                                                                                          "finetune"}
    for method in ("uchida", "wang", "tartaglione"):  # tartaglione: a method this study does not run
        with monkeypatch.context() as m:
            m.setattr(METHODS[method], "VERSION", METHODS[method].VERSION + 1)
            after = _wang_fps()
        assert {n for n in before if after[n] != before[n]} == {n for n, (used, _) in uses.items() if used == method}
    for attack in ("finetune", "prune"):
        with monkeypatch.context() as m:
            m.setattr(ATTACKS[attack], "VERSION", ATTACKS[attack].VERSION + 1)
            after = _wang_fps()
        assert {n for n in before if after[n] != before[n]} == {n for n, (_, a) in uses.items() if a == attack}
    with monkeypatch.context() as m:  # the training loop and the architecture: every run
        m.setattr(training, "TRAINING_VERSION", training.TRAINING_VERSION + 1)
        assert all(v != before[n] for n, v in _wang_fps().items())
    with monkeypatch.context() as m:
        m.setitem(MODELS, TINY.model, dataclasses.replace(MODELS[TINY.model], version=MODELS[TINY.model].version + 1))
        assert all(v != before[n] for n, v in _wang_fps().items())
    assert _wang_fps() == before  # everything restored: the same keys again
    # a derived run's attack: "-new-head" is the registered attack; a name the registry lacks takes every attack's
    assert attack_versions("finetune-new-head") == {"finetune": ATTACKS["finetune"].VERSION}
    assert attack_versions("no-such-attack") == {n: c.VERSION for n, c in ATTACKS.items()}


def test_evaluation_keys_follow_the_versions_of_what_they_run(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    before = _eval_fps(tmp_path)
    assert len(set(before.values())) == len(before)
    with monkeypatch.context() as m:
        m.setattr(METHODS["uchida"], "VERSION", METHODS["uchida"].VERSION + 1)
        after = _eval_fps(tmp_path)
    assert {n for n in before if after[n] != before[n]} == {"marked-uchida"}
    with monkeypatch.context() as m:
        m.setattr("netmark.evaluation.access.PROTECT_VERSION", 99)
        after = _eval_fps(tmp_path)
    assert {n for n in before if after[n] != before[n]} == {"protected-fixed"}
    with monkeypatch.context() as m:
        name = preset("tiny").model
        m.setitem(MODELS, name, dataclasses.replace(MODELS[name], version=MODELS[name].version + 1))
        assert all(v != before[n] for n, v in _eval_fps(tmp_path).items())
    # an attack cell's key holds its attack's VERSION (the cell is not computed here: only its parts are read)
    cfg = preset("tiny", methods=["uchida"])
    ctx = Context(cfg, tmp_path)
    seen: list[dict] = []
    monkeypatch.setattr(ctx, "cell", lambda parts, compute: seen.append(parts) or {})
    attack = cfg.sweeps[0].attack
    attack_cell(ctx, Job("attack", cfg, str(tmp_path), "uchida", index=0, strength=cfg.sweeps[0].strengths[0]))
    monkeypatch.setattr(ATTACKS[attack], "VERSION", ATTACKS[attack].VERSION + 1)
    attack_cell(ctx, Job("attack", cfg, str(tmp_path), "uchida", index=0, strength=cfg.sweeps[0].strengths[0]))
    assert [p["attack_version"] for p in seen] == [ATTACKS[attack].VERSION - 1, ATTACKS[attack].VERSION]
    assert seen[0]["run"] == seen[1]["run"]


#: run in a fresh interpreter whose ``netmark`` is the copy under test: every key of the Wang study's runs and of
#: the evaluation's runs, and where ``netmark.training.train_step`` now lives
_KEYS_SCRIPT = """
import json, sys, tempfile
import netmark, netmark.training
from tests.test_cache_keys import _eval_fps, _wang_fps
with tempfile.TemporaryDirectory() as d:
    out = {"wang": _wang_fps(), "evaluation": _eval_fps(d)}
print(json.dumps({**out, "netmark": netmark.__file__, "train_step": netmark.training.train_step.__module__}))
"""


def _move_function(package: Path, module: str, function: str, new_module: str) -> None:
    """Move top-level ``function`` out of ``package/module.py`` into a new module ``package/new_module.py`` (which
    takes the old module's imports), and import it back: a clean-up that changes no behaviour."""
    src = package / f"{module}.py"
    text = src.read_text(encoding="utf-8")
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function)
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
    body = "".join(lines[first:node.end_lineno])
    imports = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    header = "".join("".join(lines[n.lineno - 1:n.end_lineno]) for n in imports)
    (package / f"{new_module}.py").write_text(f'"""Moved out of {module}."""\n\n{header}\n\n{body}', encoding="utf-8")
    last_import = max(n.end_lineno or n.lineno for n in imports)
    kept = [*lines[:last_import], f"from netmark.{new_module} import {function}  # noqa: F401\n",
            *lines[last_import:first], *lines[node.end_lineno:]]
    src.write_text("".join(kept), encoding="utf-8")


def _keys_of(package_root: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(package_root), str(REPO)]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _KEYS_SCRIPT], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_moving_a_function_between_modules_keeps_every_cached_run_key(tmp_path: Path) -> None:
    """A copy of the netmark package in which ``netmark.training.train_step`` (the step every run takes) lives in a
    new module ``netmark._moved``: the keys of every Wang study run and of the evaluation's runs are the keys of
    this tree. Under the source-digest scheme that this replaces (``code_digest``: sha256 of the source text of
    the import closure of ``netmark.training``, ``netmark.models``, ``netmark.io`` and the method's module, part of
    every key) this test failed: ``training.py`` has other bytes in the copy, so every key differed."""
    copy = tmp_path / "src" / "netmark"
    shutil.copytree(Path(netmark.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    _move_function(copy, "training", "train_step", "_moved")
    assert "def train_step" not in (copy / "training.py").read_text()
    moved = _keys_of(tmp_path / "src")
    assert Path(moved["netmark"]).resolve() == (copy / "__init__.py").resolve()  # the copy ran, not this tree
    assert moved["train_step"] == "netmark._moved"
    assert moved["wang"] == _wang_fps()
    assert moved["evaluation"] == _eval_fps(tmp_path / "cache")
