"""Contract tests every registered watermarking method must pass (parametrised over METHODS; the checks themselves
are functions of one method in ``tests/method_contract.py``, which ``tests/test_extension.py`` runs on a method a
test registers).

A new method registers once and brings its own small config (``example_config``: one that embeds on digits with a
simple-cnn in a few epochs; :mod:`netmark.methods.examples`); ``test_every_method_has_a_test_config`` fails until it
does. Further variants of a method (``example_variants``) run too.
"""

from __future__ import annotations

import logging

import pytest
import torch

from netmark.methods import METHODS, MethodConfig, get_method
from netmark.methods.examples import example_cases
from netmark.methods.triggerset import train_reference_models
from netmark.methods.uchida import UchidaConfig
from netmark.training import TrainConfig, train
from tests import method_contract as contract
from tests.conftest import make_cnn

#: (case id, method name, config): every method's example config, then its variants (netmark.methods.examples)
CASES: list[tuple[str, str, MethodConfig]] = example_cases()
#: method name -> its example config
SMALL_CONFIGS: dict[str, MethodConfig] = {case: config for case, name, config in CASES if case == name}
EMBED = contract.EMBED


def test_every_method_has_a_test_config() -> None:
    assert set(METHODS) == set(SMALL_CONFIGS)


#: image-dependent trigger sets whose embed would train the same 2 reference models (seeds 1011, 1012 on EMBED):
#: trained once here and handed to each (TriggerSetMethod.ensure_null)
SHARED_NULL = ("zhang-content", "zhang-noise", "zhang-unrelated", "frontier-stitching")


@pytest.fixture(scope="module")
def shared_null_models(digits_train) -> list[torch.nn.Module]:
    return train_reference_models(make_cnn(seed=0), digits_train, EMBED, 2, seed=11)


@pytest.fixture(scope="module")
def loop_null_models(digits_train) -> list[torch.nn.Module]:
    """Independent models that calibrate the user-loop keys of image-dependent trigger sets."""
    others = [make_cnn(seed=s) for s in (301, 302)]
    for s, o in zip((301, 302), others, strict=True):
        train(o, digits_train, TrainConfig(epochs=12, lr=0.05, seed=s, progress=False))
    return others


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def embedded(request, digits_train) -> contract.Embedded:
    case, name, config = request.param
    null = request.getfixturevalue("shared_null_models") if case in SHARED_NULL else None
    return contract.embed_example(name, config, digits_train, null)


def test_embedded_watermark_is_detected(embedded, digits_test) -> None:
    contract.check_detected(embedded, digits_test)


def test_independent_models_are_not_detected(embedded, digits_train) -> None:
    contract.check_independent_not_detected(embedded, digits_train)


def test_key_round_trips_and_rebuilds_method(embedded, tmp_path) -> None:
    contract.check_key_round_trip(embedded, tmp_path)


def test_wrong_architecture_is_a_clear_error(embedded) -> None:
    contract.check_wrong_architecture(embedded)


def test_key_for_another_method_is_refused(embedded) -> None:
    contract.check_foreign_key_refused(embedded)


def test_hook_works_in_a_users_own_loop(embedded, digits_train, request) -> None:
    """The README's "your own training loop" recipe (:func:`tests.method_contract.check_users_own_loop`)."""
    contract.check_users_own_loop(embedded, digits_train, lambda: request.getfixturevalue("loop_null_models"))


def test_good_embedding_passes_its_check_without_a_warning(embedded) -> None:
    """WatermarkMethod.embed's check (netmark.methods.check): detected, above chance, nothing logged."""
    contract.check_good_embedding(embedded)


#: deliberately under-trained (tests.method_contract.UNDER_TRAINED / UNDER_OPTIONS): 1 epoch of digits, one trigger
#: a batch, one fine-tuning epoch (frontier), a hundredth of Uchida's regularizer weight. Tartaglione writes its
#: payload into the weights, so it is detected at once: it is under-trained through the paper's N(0, 0.01)
#: re-initialisation instead (the task stays at chance), as is DeepSigns' white box, whose first epoch already leaves
#: the task at chance (10.0%).
UNDER_TRAINED = contract.UNDER_TRAINED
#: Wang without its post-training hardening: those 200 extractor-only steps fit the extractor to the final weights,
#: so even this one epoch verifies with them (measured: detected) -- the under-trained case is the training alone.
UNDER_CASE_OPTIONS: dict[str, dict[str, object]] = {"uchida": {"strength": 1e-4}, "tartaglione": {"reinit": True},
                                                    "wang": {"harden_steps": 0}}
UNDER_AT_CHANCE = ("deepsigns", "tartaglione")


@pytest.mark.parametrize(("case", "name", "config"), CASES, ids=[c[0] for c in CASES])
def test_under_trained_embedding_warns_and_says_so(case, name, config, digits_train, digits_test, caplog) -> None:
    contract.check_under_trained(name, config, dict(UNDER_CASE_OPTIONS.get(case, {})), case in UNDER_AT_CHANCE,
                                 digits_train, digits_test, caplog)


def test_embed_warn_false_checks_but_logs_nothing(digits_train, caplog) -> None:
    method = get_method("uchida")(UchidaConfig(layer="conv2", bits=64, strength=1e-4))
    with caplog.at_level(logging.WARNING, logger="netmark.methods.base"):
        _, _, run = method.embed(make_cnn(seed=0), digits_train, UNDER_TRAINED, warn=False)
    assert run.check is not None and not run.check.detected
    assert not [r for r in caplog.records if r.name == "netmark.methods.base"]


def test_a_method_cannot_override_embed_and_skip_the_check() -> None:
    with pytest.raises(TypeError, match="_embed"):
        type("Sneaky", (get_method("uchida"),), {"embed": lambda self, *a, **k: None})
