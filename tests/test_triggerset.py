"""The shared black-box protocol (netmark.methods.triggerset): queries, the null, calibration, mixing."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import binom

from netmark.errors import ConfigError, KeyFileError
from netmark.keys import WatermarkKey
from netmark.methods.adi import Adi, AdiConfig
from netmark.methods.triggerset import (
    QueryError,
    TriggerSetHook,
    abstract_images,
    model_predictor,
    query,
    trigger_result,
)
from netmark.training import TrainConfig
from tests.conftest import make_cnn


def _key(labels: list[int], *, random: bool, classes: int = 10) -> WatermarkKey:
    n = len(labels)
    return WatermarkKey(method="adi", layer=None, message="", seed=1, message_random=random,
                        tensors={"inputs": torch.rand(n, 1, 8, 8), "labels": torch.tensor(labels)},
                        config={**AdiConfig().to_dict(), "num_classes": classes, "input_shape": [1, 8, 8]})


def test_random_label_null_is_the_exact_binomial_tail() -> None:
    key = _key([i % 10 for i in range(100)], random=True)
    pred = key.tensors["labels"].clone()
    pred[:70] = (pred[:70] + 1) % 10  # 30 of 100 right
    res = trigger_result(pred, key, method="adi")
    assert res.matched_bits == 30 and res.score == pytest.approx(0.30)
    assert res.p_value == pytest.approx(binom.sf(29, 100, 0.1), rel=1e-6)
    assert res.details["null_exact"] and not res.details["calibrated"]


def test_image_dependent_labels_need_a_measured_null() -> None:
    key = _key([0] * 50, random=False)  # a constant target class (zhang-style)
    with pytest.raises(KeyFileError, match="calibrate"):
        trigger_result(torch.zeros(50, dtype=torch.int64), key, method="adi")


def test_calibrated_null_absorbs_independent_agreement() -> None:
    """A suspect that answers class 0 for everything matches a constant-0 trigger set perfectly; so do the
    independent models, so that is no evidence: not detected. Against 1/C it would be p = 1e-50."""
    key = _key([0] * 50, random=False)
    always0 = lambda x: torch.zeros(len(x), dtype=torch.int64)  # noqa: E731
    mostly0 = lambda x: torch.where(torch.arange(len(x)) % 10 == 0, 1, 0)  # noqa: E731
    cal = Adi(AdiConfig()).calibrate(key, [always0, mostly0, always0])
    assert cal.tensors["null_counts"].tolist() == [50, 45, 50]
    res = trigger_result(torch.zeros(50, dtype=torch.int64), cal, method="adi")
    assert res.details["calibrated"] and not res.detected and res.p_value > 0.1
    with pytest.raises(ConfigError):
        Adi(AdiConfig()).calibrate(key, [always0])


def test_calibrated_null_still_detects_a_marked_model() -> None:
    labels = [i % 10 for i in range(100)]
    key = _key(labels, random=False)
    shuffled = [lambda x, s=s: torch.randint(0, 10, (len(x),), generator=torch.Generator().manual_seed(s))
                for s in range(4)]
    cal = Adi(AdiConfig()).calibrate(key, shuffled)
    res = trigger_result(torch.tensor(labels), cal, method="adi")
    assert res.detected and res.p_value < 1e-20


@pytest.mark.parametrize("answer, msg", [
    (lambda x: torch.zeros(len(x) - 1, dtype=torch.int64), "labels for"),
    (lambda x: torch.full((len(x),), 10), "outside"),
    (lambda x: torch.full((len(x),), 0.5), "non-integer"),
    (lambda x: "garbage", "not a list"),
])
def test_malformed_answers_are_query_errors(answer, msg) -> None:
    with pytest.raises(QueryError, match=msg):
        query(answer, torch.rand(4, 1, 8, 8), 10)


def test_plain_callables_and_lists_are_predictors() -> None:
    assert query(lambda x: [1] * len(x), torch.rand(3, 1, 8, 8), 10).tolist() == [1, 1, 1]
    assert query(lambda x: torch.tensor([2.0, 3.0]), torch.rand(2, 1, 8, 8), 10).dtype == torch.int64


def test_verify_query_agrees_with_verify_on_the_model(digits_train) -> None:
    method = Adi(AdiConfig(per_batch=16))
    model, key, _ = method.embed(make_cnn(0), digits_train, TrainConfig(epochs=6, lr=0.05, seed=0, progress=False),
                                 seed=3)
    direct = method.verify(model, key)
    queried = method.verify_query(model_predictor(model, batch_size=7), key)
    assert direct.matched_bits == queried.matched_bits and direct.p_value == queried.p_value
    assert model.training is False


def test_hook_cycles_through_every_trigger() -> None:
    x, y = torch.rand(10, 1, 8, 8), torch.arange(10)
    hook = TriggerSetHook(x, y, per_batch=3, root=0)
    seen = []
    for _ in range(10):  # 30 samples: each trigger exactly 3 times
        bx, by = hook.transform_batch(torch.zeros(5, 1, 8, 8), torch.full((5,), -1))
        assert bx.shape == (8, 1, 8, 8) and (by[:5] == -1).all()
        assert torch.equal(bx[5:], x[by[5:]])
        seen += by[5:].tolist()
    assert sorted(seen) == sorted(list(range(10)) * 3)


def test_abstract_images_are_reproducible_per_seed() -> None:
    a, b, c = abstract_images(5, (1, 8, 8), 1), abstract_images(5, (1, 8, 8), 1), abstract_images(5, (1, 8, 8), 2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1 and a.std() > 0.05


@pytest.mark.parametrize("edit, msg", [
    (lambda t, c: t.pop("labels"), "lacks"),
    (lambda t, c: t.update(labels=torch.full((4,), 12)), "outside"),
    (lambda t, c: t.update(labels=torch.zeros(3, dtype=torch.int64)), "malformed"),
    (lambda t, c: t.update(null_counts=torch.zeros(2, dtype=torch.int64)), "half"),
    (lambda t, c: c.update(per_batch=0), "invalid"),
])
def test_malformed_trigger_keys_are_refused(edit, msg) -> None:
    tensors = {"inputs": torch.rand(4, 1, 8, 8), "labels": torch.tensor([0, 1, 2, 3])}
    config = {**AdiConfig().to_dict(), "num_classes": 10, "input_shape": [1, 8, 8]}
    edit(tensors, config)
    with pytest.raises(KeyFileError, match=msg):
        Adi.from_key(WatermarkKey(method="adi", layer=None, message="", tensors=tensors, config=config))


@pytest.mark.parametrize("kwargs", [{"size": 0}, {"per_batch": 0}, {"null_models": -1}, {"null_epochs": 0},
                                    {"size": True}])
def test_bad_trigger_configs_are_refused(kwargs) -> None:
    with pytest.raises(ConfigError):
        AdiConfig(**kwargs)


def test_distillation_is_refused(digits_train) -> None:
    with pytest.raises(ConfigError, match="distill"):
        Adi(AdiConfig()).embed(make_cnn(0), digits_train, TrainConfig(epochs=1, progress=False), teacher=make_cnn(1))
