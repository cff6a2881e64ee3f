"""Piracy attacks on anti-piracy models (Chen & Wu 2018, §4): forged transforms, scored on digits."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch

from netmark._util import seeded
from netmark.access import ProtectConfig, TransformConfig, access_accuracy, protect
from netmark.access.piracy import (
    InputOnlyConfig,
    PairAttackConfig,
    direct_piracy,
    fit_generator,
    input_only_attack,
    one_pair_attack,
    pair_attack,
    processed_pairs,
)
from netmark.data import load
from netmark.errors import ConfigError
from netmark.models import build
from netmark.training import TrainConfig


@pytest.fixture(scope="module")
def digits():
    return load("digits", "train"), load("digits", "test")


@pytest.fixture(scope="module")
def protected(digits):
    """A fixed- and a generator-protected simple CNN on digits (10 epochs each)."""
    tr, _ = digits
    out = {}
    for kind in ("fixed", "generator"):
        with seeded(0):
            model = build("simple-cnn", in_channels=1, image_size=8, num_classes=10)
        out[kind] = protect(model, tr, ProtectConfig(TransformConfig(kind, seed=5)),  # type: ignore[arg-type]
                            TrainConfig(epochs=10, batch_size=64, lr=0.05, progress=False))
    return out


def test_direct_piracy_is_raw_accuracy(protected, digits) -> None:
    res = protected["generator"]
    r = direct_piracy(res.model, digits[1])
    assert r.attack == "direct" and r.accuracies == [access_accuracy(res.model, None, digits[1])["unauthorized"]]
    assert r.mean == r.best < 0.2


def test_input_only_attack_trials_are_seeded_and_summarised(protected, digits) -> None:
    model = protected["generator"].model
    a = input_only_attack(model, digits[1], InputOnlyConfig(trials=4, seed=1))
    b = input_only_attack(model, digits[1], InputOnlyConfig(trials=4, seed=1))
    assert a.accuracies == b.accuracies and len(a.accuracies) == 4
    assert min(a.accuracies) <= a.mean <= a.best == max(a.accuracies)
    d = a.to_dict()
    assert d["trials"] == 4 and d["config"]["sigma"] == 0.1 and d["config"]["p"] == 0.2
    # the owner's own Fixed pattern is one of the "input-only" draws only if the adversary guesses its seed
    owner = protected["fixed"]
    guessed = input_only_attack(owner.model, digits[1], InputOnlyConfig(trials=1, seed=5))
    assert guessed.best == pytest.approx(access_accuracy(owner.model, owner.transform, digits[1])["authorized"])


def test_one_pair_breaks_a_universal_transform_not_the_generator(protected, digits) -> None:
    tr, te = digits
    fixed = protected["fixed"]
    r = one_pair_attack(fixed.model, fixed.transform, tr, te)
    assert r.mean == pytest.approx(access_accuracy(fixed.model, fixed.transform, te)["authorized"])
    assert r.details["max_abs_error"] < 1e-6
    gen = protected["generator"]
    assert one_pair_attack(gen.model, gen.transform, tr, te).details["max_abs_error"] > 1e-3


def test_pair_attack_fits_the_generator_better_with_more_pairs(protected, digits) -> None:
    tr, te = digits
    gen = protected["generator"]
    x = tr.x
    target = processed_pairs(gen.transform, x)
    cfg = PairAttackConfig(epochs=6, lr=1e-2)
    fitted = fit_generator(x, target, gen.transform.config, cfg, seed=0)
    untrained = fit_generator(x, target, gen.transform.config, PairAttackConfig(epochs=1, lr=1e-9), seed=0)
    mse = torch.nn.functional.mse_loss
    with torch.no_grad():
        assert mse(fitted(x), target) < 0.5 * mse(untrained(x), target)
    res = pair_attack(gen.model, gen.transform, tr, te, PairAttackConfig(fraction=0.5, trials=2, epochs=2))
    assert len(res.accuracies) == 2 and res.details["pairs"] == round(0.5 * len(tr))
    assert len(res.details["test_mse"]) == 2
    with pytest.raises(ConfigError, match="one_pair_attack"):
        pair_attack(protected["fixed"].model, protected["fixed"].transform, tr, te)


@pytest.mark.parametrize("cls,bad", [
    (InputOnlyConfig, {"trials": 0}), (InputOnlyConfig, {"sigma": -1.0}), (InputOnlyConfig, {"p": 0.7}),
    (InputOnlyConfig, {"trials": True}), (PairAttackConfig, {"fraction": 0.0}), (PairAttackConfig, {"fraction": 1.5}),
    (PairAttackConfig, {"trials": 0}), (PairAttackConfig, {"epochs": 0}), (PairAttackConfig, {"lr": float("nan")}),
])
def test_attack_configs_validate(cls, bad) -> None:
    with pytest.raises(ConfigError):
        cls(**bad)


def test_docstring_example_runs() -> None:
    res = doctest.testmod(importlib.import_module("netmark.access.piracy"))
    assert res.attempted > 0 and res.failed == 0
