"""Methods declare what they are (netmark.methods.traits) and share one create_key signature (cheap: no training)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from netmark.errors import ConfigError
from netmark.methods import METHODS, get_method
from netmark.methods.base import WatermarkMethod
from netmark.methods.deepsigns import DeepSigns, DeepSignsConfig
from netmark.methods.examples import example, example_cases, example_options
from netmark.methods.traits import MethodTraits
from netmark.verify import VerificationResult
from tests.conftest import make_cnn

#: what each shipped method is (its example config's mode); a new method needs no entry (its traits are checked by the
#: contract of tests/method_contract.py, which reads them)
EXPECTED = {
    "adi": ("labels", True), "zhang-content": ("labels", True), "zhang-noise": ("labels", True),
    "zhang-unrelated": ("labels", True), "frontier-stitching": ("labels", True), "deepsigns": ("bits", False),
    "uchida": ("bits", False), "wang": ("bits", False), "tartaglione": ("values", False),
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_traits_are_declared(name: str) -> None:
    method = get_method(name)(example(name))
    t = method.traits()
    assert isinstance(t, MethodTraits)
    if name in EXPECTED:
        assert (t.payload, t.query_verifiable) == EXPECTED[name]
    assert method.white_box is not t.query_verifiable


def test_deepsigns_traits_follow_its_mode() -> None:
    white, black = DeepSigns(DeepSignsConfig(mode="white")), DeepSigns(DeepSignsConfig(mode="black"))
    assert not white.query_verifiable() and white.white_box and white.traits().payload == "bits"
    assert black.query_verifiable() and not black.white_box and black.traits().payload == "labels"
    assert white.traits().needs_data and not black.traits().needs_data


def test_describe_says_what_was_reached() -> None:
    res = VerificationResult(detected=True, p_value=1e-9, score=0.9, threshold=1e-6, method="x", bit_error_rate=0.1,
                             matched_bits=90, total_bits=100, details={"pearson": 0.5, "size": 7})
    assert MethodTraits("labels").describe(res) == "90/100 triggers answered with the key's label"
    assert MethodTraits("bits").describe(res, with_ber=True) == "90/100 bits match (BER 0.1000)"
    assert MethodTraits("values").describe(res) == "Pearson r 0.5000 over 7 values"
    assert MethodTraits("values").score_name == "Pearson r" and MethodTraits("labels").score_name == "trigger accuracy"
    with pytest.raises(ValueError):
        MethodTraits("bits", needs_payload=True)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_one_create_key_signature_refuses_what_a_method_does_not_take(name: str, digits_train) -> None:
    method = get_method(name)(example(name))
    t, model = method.traits(), make_cnn(seed=0)
    if not t.takes_payload:
        with pytest.raises(ConfigError, match="payload="):
            method.create_key(model, seed=1, data=digits_train, payload=torch.rand(5))
    if not t.takes_message:
        with pytest.raises(ConfigError, match="no message"):
            method.create_key(model, seed=1, data=digits_train, message="01" * 16)
    if t.needs_data:
        with pytest.raises(ConfigError, match="data="):
            method.create_key(model, seed=1)


def test_a_payload_of_any_shape_is_recorded() -> None:
    method = get_method("tartaglione")(example("tartaglione"))
    image = torch.rand(3, 4, 5)
    key = method.create_key(make_cnn(seed=0), seed=1, payload=image)
    assert key.config["payload_shape"] == [3, 4, 5] and torch.equal(key.tensors["payload"], image.reshape(-1))


def test_a_method_cannot_override_create_key_or_embed_phases() -> None:
    base = get_method("uchida")
    with pytest.raises(TypeError, match="_create_key"):
        type("Sneaky", (base,), {"create_key": lambda self, *a, **k: None})
    with pytest.raises(TypeError, match="_embed"):
        type("Sneaky", (base,), {"_embed": lambda self, *a, **k: None})


def test_examples_cover_every_method_and_are_valid() -> None:
    cases = example_cases()
    assert {name for _, name, _ in cases} == set(METHODS)
    assert len({case for case, _, _ in cases}) == len(cases)
    for _, name, config in cases:
        assert isinstance(config, METHODS[name].config_cls)
        assert type(config).from_dict(config.to_dict()) == config
    assert example_options("adi") == {"per_batch": 16}  # only what differs from the defaults
    assert dataclasses.replace(example("deepsigns", "black"), size=16).mode == "black"


def test_a_method_without_an_example_says_so() -> None:
    with pytest.raises(NotImplementedError):
        WatermarkMethod.example_config()
