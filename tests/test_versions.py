"""A method's or attack's numerical output does not change without a ``VERSION`` bump (issue 19, item 5).

Cached study runs are keyed by versions, not by source text (:mod:`netmark.experiments.cache`), so a behaviour
change that keeps its ``VERSION`` would silently reuse stale runs. This test catches it: every shipped method embeds
on a tiny fixed run (256 digits, a simple-cnn, one epoch of 8 steps, fixed seeds) and every shipped attack attacks a
fixed tiny model; a handful of summary numbers (per-tensor sums of the weights, key tensors, extraction scores, the
verification score) are compared with ``tests/data/method_outputs.json``, whose entries are keyed by the name and the
versions the run depends on (the class's ``VERSION``, :data:`netmark.training.TRAINING_VERSION`, the architecture's
registry version). The comparison has a tolerance (relative 1e-3, absolute 1e-4): float reductions may differ in
the last bits on another CPU (AVX2 vs AVX-512), so no exact hash of float bytes is compared.

After a deliberate behaviour change: bump the ``VERSION`` (or ``TRAINING_VERSION`` / the model's registry version),
then regenerate the golden file, single-process::

    NETMARK_UPDATE_GOLDEN=1 .venv/bin/python -m pytest -p no:xdist tests/test_versions.py

The regeneration writes the entries whose versions changed (or are new) and refuses, failing, to overwrite an entry
whose versions did not change: the only way to make this test pass after a behaviour change is a version bump.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from netmark import training
from netmark._util import atomic_write_text
from netmark.attacks import ATTACKS
from netmark.data import ArrayDataset
from netmark.methods import METHODS, get_method
from netmark.models.registry import model_version
from netmark.models.wrapped import QueryWrapper
from netmark.training import TrainConfig, train
from tests.conftest import make_cnn
from tests.test_determinism import SMALL_ATTACKS
from tests.test_methods import SMALL_CONFIGS

GOLDEN = Path(__file__).parent / "data" / "method_outputs.json"
UPDATE_ENV = "NETMARK_UPDATE_GOLDEN"
REGENERATE = f"{UPDATE_ENV}=1 .venv/bin/python -m pytest -p no:xdist tests/test_versions.py"
REL_TOL, ABS_TOL = 1e-3, 1e-4
MODEL = "simple-cnn"  # tests.conftest.make_cnn
TRAIN = TrainConfig(epochs=1, lr=0.05, batch_size=32, seed=3, progress=False)
#: changes to a method's SMALL_CONFIGS entry that keep its tiny run well under a second (fewer triggers, steps)
FAST: dict[str, dict[str, Any]] = {
    "deepsigns": {"key_images": 16},
    "frontier-stitching": {"finetune_epochs": 1, "size": 20},
    "tartaglione": {"size": 50},
    "wang": {"harden_steps": 5, "null_samples": 64},
}


def _shipped(registry: dict[str, type]) -> list[str]:
    """The names of the classes netmark ships (an example a test registers is not in the golden file)."""
    return sorted(n for n, cls in registry.items() if cls.__module__.startswith("netmark."))


@pytest.fixture(scope="module")
def tiny(digits_train: ArrayDataset) -> ArrayDataset:
    idx = torch.randperm(len(digits_train), generator=torch.Generator().manual_seed(0))[:256]
    return ArrayDataset(digits_train.x[idx], digits_train.y[idx], name="digits", num_classes=10)


def _numbers(t: torch.Tensor) -> list[float]:
    """Sum, sum of squares, first and last value of a tensor (float64)."""
    v = t.detach().double().reshape(-1)
    if v.numel() == 0:
        return [0.0, 0.0]
    return [float(v.sum()), float((v * v).sum()), float(v[0]), float(v[-1])]


def _model_summary(model: torch.nn.Module) -> dict[str, list[float]]:
    return {k: _numbers(v) for k, v in sorted(model.state_dict().items())}


def method_outputs(name: str, data: ArrayDataset, **changes: Any) -> dict[str, Any]:
    """The summary of method ``name``'s tiny run (its test config, with ``changes``), through the public API."""
    config = dataclasses.replace(SMALL_CONFIGS[name], **{**FAST.get(name, {}), **changes})
    method = get_method(name)(config)
    model, key, _ = method.embed(make_cnn(seed=0), data, TRAIN, seed=11)
    extraction = method.extract(model, key)
    scores = extraction.scores.detach().double().reshape(-1)
    return {"model": _model_summary(model),
            "key": {**{k: _numbers(v) for k, v in sorted(key.tensors.items())}, "message": key.message},
            "extraction": [float(scores.mean()), *(float(s) for s in scores[:3])],
            "verification": float(method.verify(model, key).score)}


def _versions(version: int) -> dict[str, Any]:
    return {"version": version, "training": training.TRAINING_VERSION, "model": model_version(MODEL)}


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        return {k: v for key, sub in d.items() for k, v in _flat(sub, f"{prefix}{key}.").items()}
    if isinstance(d, list):
        return {k: v for i, sub in enumerate(d) for k, v in _flat(sub, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): d}


def mismatches(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """Where ``got`` differs from ``want``: a missing or extra number, a string, a float beyond the tolerance."""
    g, w = _flat(got), _flat(want)
    out = [f"{k}: missing" for k in sorted(w.keys() - g.keys())] + [f"{k}: new" for k in sorted(g.keys() - w.keys())]
    for k in sorted(g.keys() & w.keys()):
        a, b = g[k], w[k]
        same = (a == b if isinstance(a, str) or isinstance(b, str)
                else math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=ABS_TOL))
        if not same:
            out.append(f"{k}: {a!r} (golden {b!r})")
    return out


def _check(section: str, name: str, cls: type, outputs: dict[str, Any]) -> None:
    """Compare with the golden entry of ``section``/``name`` at the current versions, or (``NETMARK_UPDATE_GOLDEN=1``)
    write it, only where the versions changed."""
    golden = json.loads(GOLDEN.read_text(encoding="utf-8")) if GOLDEN.is_file() else {}
    versions = _versions(cls.VERSION)
    entry = golden.get(section, {}).get(name)
    if entry is not None and entry["versions"] == versions:
        bad = mismatches(outputs, entry["outputs"])
        assert not bad, (f"{section[:-1]} {name!r} gives other numbers at the same versions {versions}: bump "
                         f"{cls.__name__}.VERSION (or TRAINING_VERSION / the model's version) for a behaviour "
                         f"change, then run {REGENERATE}; differences: {bad[:6]}")
        return
    if os.environ.get(UPDATE_ENV) != "1":
        pytest.fail(f"no golden output for {section[:-1]} {name!r} at versions {versions} (the file has "
                    f"{entry['versions'] if entry else 'none'}): run {REGENERATE}")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.fail(f"regenerate the golden file in one process: {REGENERATE}")
    golden.setdefault(section, {})[name] = {"versions": versions, "outputs": outputs}
    golden["torch"] = torch.__version__  # informative: the version the last entry was written with
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(GOLDEN, json.dumps(golden, indent=1, sort_keys=True) + "\n", force=True)


@pytest.mark.parametrize("name", _shipped(METHODS))
def test_method_output_is_unchanged_at_its_version(name: str, tiny: ArrayDataset) -> None:
    _check("methods", name, METHODS[name], method_outputs(name, tiny))


@pytest.fixture(scope="module")
def victim(tiny: ArrayDataset) -> torch.nn.Module:
    model = make_cnn(seed=0)
    train(model, tiny, TRAIN)
    return model


@pytest.mark.parametrize("name", _shipped(ATTACKS))
def test_attack_output_is_unchanged_at_its_version(name: str, tiny: ArrayDataset, victim: torch.nn.Module) -> None:
    cls = ATTACKS[name]
    attacked = cls(cls.config_cls(seed=5, **SMALL_ATTACKS.get(name, {})))(victim, tiny if cls.needs_data else None)
    outputs: dict[str, Any] = {"model": _model_summary(attacked)}
    if isinstance(attacked, QueryWrapper):  # a query-time filter: its answers are its behaviour, not its weights
        with torch.no_grad():
            outputs["answers"] = _numbers(attacked(tiny.x[:64]))
    _check("attacks", name, cls, outputs)


def test_the_comparison_catches_a_changed_output(tiny: ArrayDataset) -> None:
    """The check can fail: Uchida with twice its embedding strength (what a changed loss would do) differs from its
    golden entry; the same run at the test config matches it, and a float moved past the tolerance is caught."""
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))["methods"]["uchida"]["outputs"]
    assert not mismatches(method_outputs("uchida", tiny), golden)
    strength = SMALL_CONFIGS["uchida"].strength
    assert mismatches(method_outputs("uchida", tiny, strength=2 * strength), golden)
    moved = json.loads(json.dumps(golden))
    moved["model"]["conv2.weight"][0] *= 1 + 3 * REL_TOL
    assert mismatches(moved, golden) and not mismatches(golden, json.loads(json.dumps(golden)))
