"""Forged keys and claims (``netmark.attacks.forgery``, issue 20 item 7) against the claim check, for every method.

A thief with the released model alone: his own claimed key with its free part fitted to the model, a universal
true-label trigger set, the owner's claim back-dated or re-signed. Without a claim the fitted key is "detected";
under one each forgery is rejected at the step that catches it. ``benchmarks/forgery_claims.py`` measures the same
on embedded owners; its finding: zhang-content (public stamp and target class) accepts a thief's fitted claim, which
only time order can settle (``netmark dispute`` with a registry, tests/test_registry.py). Under a claim the verifier
decides on the re-derived key with a null it measures itself (below), and single-target trigger sets must also pass
the specificity step.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from netmark.attacks.forgery import back_dated, declared_null, fitted_key, re_signed, selected_triggers, universal_key
from netmark.methods import METHODS, get_method, verify
from netmark.methods.examples import example
from netmark.methods.ownership import check_claim, claimed_key
from netmark.training import TrainConfig, train
from tests.conftest import fixed_identity, fixed_opening, make_cnn

#: methods whose fitted forgery fails at "material" on a plain model (zhang-content's fitted labels equal its public
#: target wherever the model answers it, so its forgery can pass that step: the specificity step rejects it below)
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


@pytest.fixture(scope="module")
def references(digits_train) -> list[torch.nn.Module]:
    """The verifier's own reference models (trained without any key)."""
    out = []
    for seed in (2, 3):
        out.append(make_cnn(seed=seed))
        train(out[-1], digits_train, TrainConfig(epochs=3, lr=0.05, seed=seed, progress=False))
    return out


def test_the_verifier_decides_with_its_own_null_and_config(stolen, digits_train, references) -> None:
    """Under a claim nothing the key declares about its null is believed: a trigger set whose labels depend on the
    images needs the verifier's reference models (none: not decided), its null is measured on them (not the key's
    forged calibration) and its class count is the re-derived one; Wang's null is measured again on the suspect."""
    method = get_method("zhang-noise")(example("zhang-noise"))
    key, claim = claimed_key(method, stolen, fixed_identity(1), data=digits_train, opening=fixed_opening(1))
    forged = declared_null(replace(key, config={**key.config, "num_classes": 1000}))
    check = check_claim(stolen, forged, claim, data=digits_train)
    assert _failed(check) == "watermark" and "--null-model" in check.steps[-1][2]
    check = check_claim(stolen, forged, claim, data=digits_train, null_models=references)
    assert check.result is not None and check.result.details["null_samples"] == len(references)
    assert check.result.details["num_classes"] == 10 and not check.ok
    wang = get_method("wang")(example("wang"))
    key, claim = claimed_key(wang, stolen, fixed_identity(1), opening=fixed_opening(1))
    check = check_claim(stolen, declared_null(key), claim)
    assert check.result is not None and check.result.details["null_samples"] == example("wang").null_samples


def test_a_claim_cannot_bind_a_key_crafted_on_the_model(stolen, digits_train) -> None:
    """frontier stitching: the claimed key's triggers have the committed form, and so do a thief's triggers selected
    to fit the stolen model; the claim cannot tell them apart, so the step "binding" fails for both."""
    method = get_method("frontier-stitching")(example("frontier-stitching"))
    key, claim = claimed_key(method, stolen, fixed_identity(1), data=digits_train, opening=fixed_opening(1))
    chosen = selected_triggers(stolen, key, digits_train, [make_cnn(seed=5)])
    for k in (key, chosen):
        steps = dict((n, p) for n, p, _ in check_claim(stolen, k, claim, data=digits_train).steps)
        assert steps["material"] is True and steps["binding"] is False


@pytest.mark.parametrize(("name", "specific"), [("zhang-noise", True), ("zhang-content", False)])
def test_single_target_marks_must_be_specific_to_the_claim(name: str, specific: bool, digits_train,
                                                           references) -> None:
    """A model marked with zhang-noise answers the target for its own noise pattern and not for patterns drawn from
    other roots: the owner's claim verifies. One marked with zhang-content answers it for any image with the public
    stamp, so a thief's claim of the same config would do as well: the owner's claim is rejected at "specificity"
    (the same for the thief's; time order would decide: tests/test_registry.py)."""
    method = get_method(name)(example(name))
    model = make_cnn(seed=0)
    key, claim = claimed_key(method, model, fixed_identity(0), data=digits_train, opening=fixed_opening(0))
    model, key, _ = method.embed(model, digits_train, TrainConfig(epochs=12, lr=0.05, seed=0, progress=False), key=key,
                                 null_models=references, warn=False)
    check = check_claim(model, key, claim, data=digits_train, null_models=references)
    steps = {n: p for n, p, _ in check.steps}
    assert steps["watermark"] is True and steps["specificity"] is specific and check.ok is specific, check.steps
    if not specific:
        thief = fitted_key(model, claimed_key(method, model, fixed_identity(1), data=digits_train,
                                              opening=fixed_opening(1))[0])
        tclaim = claimed_key(method, model, fixed_identity(1), data=digits_train, opening=fixed_opening(1))[1]
        assert _failed(check_claim(model, thief, tclaim, data=digits_train, null_models=references)) in (
            "material", "specificity")
