"""Claimed keys under a forger (issue 20, items 3 and 5): each step of :func:`check_claim` against the attack it stops.

The forger has read the code and holds the released model; he does not hold the owner's private identity or the
opening in the owner's key file.
"""

from __future__ import annotations

from dataclasses import asdict, replace

import pytest
import torch

from netmark.claims import Claim
from netmark.keys import WatermarkKey
from netmark.methods import METHODS, get_method
from netmark.methods.examples import example
from netmark.methods.ownership import check_claim, claimed_key
from netmark.methods.uchida import host_module, host_vector
from netmark.training import TrainConfig, train
from tests.conftest import fixed_identity, fixed_opening, make_cnn

EMBED = TrainConfig(epochs=12, lr=0.05, batch_size=64, seed=0, progress=False)
OWNER = fixed_identity(0)  # the owner's identity: its private half is the one thing a forger lacks


def _steps(check) -> dict[str, bool]:
    return {name: passed for name, passed, _ in check.steps}


@pytest.fixture(scope="module")
def trained(digits_train) -> torch.nn.Module:
    model = make_cnn(seed=0)
    train(model, digits_train, TrainConfig(epochs=3, lr=0.05, seed=0, progress=False))
    return model


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_makes_a_claimed_key_that_re_derives(name: str, digits_train, trained, tmp_path) -> None:
    """Every step up to the watermark holds for each method's claimed key on its own architecture (the model is not
    marked here, so the last step fails: the steps are independent of it)."""
    method = get_method(name)(example(name))
    data = digits_train if method.traits().needs_data else None
    model = trained if method.traits().needs_trained_model else make_cnn(seed=0)
    key, claim = claimed_key(method, model, OWNER, data=data, opening=fixed_opening(0))
    assert not key.seeded and key.opening is not None and claim.method == name
    again = WatermarkKey.load(key.save(tmp_path / "owner.key"))  # the opening survives the key file
    assert again.opening == key.opening and again.fingerprint == key.fingerprint
    check = check_claim(model, again, claim, data=data)
    steps = _steps(check)
    assert all(steps[s] for s in ("signature", "method", "opening", "root", "material")), check.steps
    if method.traits().needs_data:  # without the committed images the material cannot be checked: refused
        assert _steps(check_claim(model, key, claim))["material"] is False


@pytest.mark.parametrize("name", ["uchida", "adi", "tartaglione"])
def test_the_owners_claim_verifies_and_forgeries_do_not(name: str, digits_train) -> None:
    method = get_method(name)(example(name))
    model = make_cnn(seed=0)
    key, claim = claimed_key(method, model, OWNER, opening=fixed_opening(0))
    model, key, _ = method.embed(model, digits_train, EMBED, key=key)
    owner = check_claim(model, key, claim)
    assert owner.ok and owner.result is not None and owner.result.detected, owner.steps

    thief = fixed_identity(1)
    # a fresh claim of the thief's own on the stolen model: valid, but its random material is not in the model
    fresh, fresh_claim = claimed_key(method, model, thief, opening=fixed_opening(1))
    verdict = check_claim(model, fresh, fresh_claim)
    assert not verdict.ok and _steps(verdict) == {**{s: True for s in _steps(verdict)}, "watermark": False}
    # back-dating or editing the owner's claim breaks its signature
    assert _steps(check_claim(model, key, replace(claim, created="2019-01-01T00:00:00+00:00")))["signature"] is False
    # the owner's commitment re-signed by the thief: his signature holds, the owner's opening does not open it
    replayed = Claim(**{**asdict(claim), "owner": thief.public.raw.hex(), "signature": ""})
    replayed = replace(replayed, signature=thief.sign(replayed.body()).hex())
    assert _steps(check_claim(model, key, replayed)) == {"signature": True, "method": True, "opening": False}
    # a key made without a claim (what a forger fits freely) presented with any claim: no opening
    free = method.create_key(model)
    assert _steps(check_claim(model, free, fresh_claim))["opening"] is False


def test_fitted_message_and_self_labelled_triggers_fail_material(digits_train) -> None:
    """Fan et al.'s ambiguity attack under a claim: the forger makes his own claimed key, then fits the message to
    the stolen model (sign of X·w) or relabels the triggers with the model's own answers. The fitted key would be
    "detected"; its material no longer re-derives from its root."""
    owner_method = get_method("uchida")(example("uchida"))
    stolen, _, _ = owner_method.embed(make_cnn(seed=0), digits_train, EMBED, seed=11)
    thief = fixed_identity(1)
    key, claim = claimed_key(owner_method, stolen, thief, opening=fixed_opening(1))
    w = host_vector(host_module(stolen, key.layer or "").weight).detach()
    fitted = replace(key, message="".join("1" if v > 0 else "0" for v in key.tensors["X"] @ w), message_random=True)
    assert owner_method.verify(stolen, fitted).detected  # without a claim the forgery "verifies"
    check = check_claim(stolen, fitted, claim)
    assert not check.ok and _steps(check)["material"] is False
    adi = get_method("adi")(example("adi"))
    key, claim = claimed_key(adi, stolen, thief, opening=fixed_opening(2))
    answers = stolen(key.tensors["inputs"]).argmax(1)
    relabelled = replace(key, tensors={**key.tensors, "labels": answers})
    assert adi.verify(stolen, relabelled).detected
    check = check_claim(stolen, relabelled, claim)
    assert not check.ok and _steps(check)["material"] is False


def test_a_chosen_message_is_refused_and_a_payload_is_committed(digits_train) -> None:
    tart = get_method("tartaglione")(example("tartaglione"))
    model = make_cnn(seed=0)
    payload = torch.rand(3, 4, 5, generator=torch.Generator().manual_seed(0))
    key, claim = claimed_key(tart, model, OWNER, payload=payload, opening=fixed_opening(0))
    assert _steps(check_claim(model, key, claim))["material"] is True
    other = torch.rand(60, generator=torch.Generator().manual_seed(1))
    swapped = replace(key, tensors={**key.tensors, "payload": other})
    assert _steps(check_claim(model, swapped, claim))["material"] is False
    with pytest.raises(TypeError):  # under a claim the message is drawn, never chosen
        claimed_key(get_method("uchida")(example("uchida")), model, OWNER, message="01" * 32)  # type: ignore[call-arg]
