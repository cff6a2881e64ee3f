"""Forged keys and claims (``netmark.attacks.forgery``, issue 20 item 7) against the claim check, for every method.

A thief with the released model alone: his own claimed key with its free part fitted to the model, a universal
true-label trigger set, the owner's claim back-dated or re-signed. Without a claim the fitted key is "detected";
under one each forgery is rejected at the step that catches it. ``benchmarks/forgery_claims.py`` measures the same
on embedded owners; its finding: zhang-content (public stamp and target class) accepts a thief's fitted claim, which
only time order can settle (``netmark dispute`` with a registry, tests/test_registry.py).
"""

from __future__ import annotations

import pytest
import torch

from netmark.attacks.forgery import back_dated, fitted_key, re_signed, universal_key
from netmark.methods import METHODS, get_method, verify
from netmark.methods.examples import example
from netmark.methods.ownership import check_claim, claimed_key
from netmark.training import TrainConfig, train
from tests.conftest import fixed_identity, fixed_opening, make_cnn

#: methods whose claim binds their material (zhang-content: its stamp and target class are public, so a thief's own
#: claim re-derives the owner's triggers: time order decides)
BOUND = sorted(set(METHODS) - {"zhang-content"})


@pytest.fixture(scope="module")
def stolen(digits_train) -> torch.nn.Module:
    model = make_cnn(seed=0)
    train(model, digits_train, TrainConfig(epochs=3, lr=0.05, seed=0, progress=False))
    return model


def _failed(check) -> str:
    return next(n for n, p, _ in check.steps if not p)


@pytest.mark.parametrize("name", BOUND)
def test_fitted_and_universal_forgeries_fail_under_a_claim(name: str, stolen, digits_train, digits_test) -> None:
    method = get_method(name)(example(name))
    data = digits_train if method.traits().needs_data else None
    thief = fixed_identity(1)
    key, claim = claimed_key(method, stolen, thief, data=data, opening=fixed_opening(1))
    fitted = fitted_key(stolen, key)
    check = check_claim(stolen, fitted, claim, data=data)
    assert not check.ok and _failed(check) == "material", check.steps
    if method.traits().payload in ("bits", "labels") and name != "wang":  # the fit reads the model exactly
        assert verify(stolen, fitted).detected  # without the claim the forgery "verifies"
    if "inputs" in key.tensors:
        universal = universal_key(key, digits_test.x[:100], digits_test.y[:100])
        assert verify(stolen, universal).detected
        assert _failed(check_claim(stolen, universal, claim, data=data)) == "material"
    assert _failed(check_claim(stolen, fitted, back_dated(claim), data=data)) == "signature"
    assert _failed(check_claim(stolen, fitted, re_signed(claim, fixed_identity(2)), data=data)) == "opening"
