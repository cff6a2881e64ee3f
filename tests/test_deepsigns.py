"""DeepSigns (Rouhani et al. 2019), both modes, on digits with the tiny CNN: embedding, extraction, keys, errors."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import netmark.methods.deepsigns  # noqa: F401  (registers the method)
from netmark.errors import ArchitectureError, ConfigError, KeyFileError
from netmark.keys import WatermarkKey
from netmark.methods import verify
from netmark.methods.base import METHODS
from netmark.methods.deepsigns import (
    DeepSigns,
    DeepSignsConfig,
    activations,
    auto_layer,
    class_means,
    cluster_loss,
)
from netmark.methods.triggerset import model_predictor
from netmark.training import TrainConfig, evaluate, train
from tests.conftest import make_cnn

EPOCHS = TrainConfig(epochs=5, lr=0.05, batch_size=64, seed=0, progress=False)
WHITE = DeepSignsConfig(mode="white", layer="fc1", bits=24, target_classes=(0, 3), key_images=32)
BLACK = DeepSignsConfig(mode="black", size=20, candidates=3, per_batch=8, null_models=2, null_epochs=3)


@pytest.fixture(scope="module")
def unmarked(digits_train) -> torch.nn.Module:
    model = make_cnn(seed=0)
    train(model, digits_train, EPOCHS)
    return model


@pytest.fixture(scope="module")
def independent(digits_train) -> list[torch.nn.Module]:
    out = []
    for seed in (101, 102):
        m = make_cnn(seed=seed)
        train(m, digits_train, TrainConfig(epochs=3, lr=0.05, seed=seed, progress=False))
        out.append(m)
    return out


@pytest.fixture(scope="module")
def white(digits_train):
    method = DeepSigns(WHITE)
    model, key, run = method.embed(make_cnn(seed=0), digits_train, EPOCHS, seed=11)
    return method, model, key, run


@pytest.fixture(scope="module")
def black(digits_train):
    method = DeepSigns(BLACK)
    model, key, run = method.embed(make_cnn(seed=0), digits_train, EPOCHS, seed=11)
    return method, model, key, run


# ----------------------------------------------------------------------------- config and registry


def test_one_registered_name_and_defaults() -> None:
    assert METHODS["deepsigns"] is DeepSigns
    assert [n for n, c in METHODS.items() if c is DeepSigns] == ["deepsigns"]
    cfg = DeepSignsConfig()
    assert (cfg.mode, cfg.bits, cfg.target_classes, cfg.lambda1, cfg.lambda2) == ("white", 32, (0,), 0.01, 0.01)
    assert (cfg.size, cfg.candidates, cfg.key_images) == (20, 40, 64)
    assert DeepSignsConfig(target_classes=[2, 1]).target_classes == (2, 1)  # JSON lists come back as tuples


@pytest.mark.parametrize("bad", [
    {"mode": "grey"}, {"bits": 0}, {"bits": True}, {"target_classes": []}, {"target_classes": [1, 1]},
    {"target_classes": [-1]}, {"target_classes": 3}, {"lambda1": -0.1}, {"lambda2": float("nan")},
    {"candidates": 0}, {"key_images": 0}, {"layer": ""}, {"size": 0}, {"per_batch": 0},
])
def test_bad_config_is_a_config_error(bad: dict) -> None:
    with pytest.raises(ConfigError):
        DeepSignsConfig(**bad)


def test_auto_layer_is_the_second_to_last(cnn) -> None:
    assert auto_layer(cnn) == "fc1"  # conv1, conv2, fc1, fc2: the input of the output layer


# ----------------------------------------------------------------------------- white-box mode


def _fc1(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """simple-cnn's fc1 output, before its ReLU (the host activation deepsigns reads)."""
    h = model.pool(model.relu(model.conv2(model.pool(model.relu(model.conv1(x))))))
    return model.fc1(h.flatten(1))


def test_cluster_term_is_scatter_over_separation() -> None:
    act = torch.tensor([[0.0, 0.0], [0.0, 0.2], [5.0, 5.0], [5.0, 5.2], [9.0, 0.0]])
    y = torch.tensor([0, 0, 1, 1, 2])
    classes, w, mu = class_means(act, y)
    assert classes.tolist() == [0, 1, 2] and torch.allclose(mu[0], torch.tensor([0.0, 0.1]))
    within, between = 0.01, (50.0 + 81.01) / 2  # class 0: 0.1 from its mean; its mean to the other two means
    assert float(cluster_loss(act, w, mu, 0)) == pytest.approx(within / between, rel=1e-4)
    _, w2, mu2 = class_means(act[:2], y[:2])
    assert float(cluster_loss(act[:2], w2, mu2, 0)) == 0.0  # one class in the batch: nothing to separate


def test_white_hook_weights_its_terms_and_cleans_up(digits_train) -> None:
    model = make_cnn(seed=2)
    cfg = DeepSignsConfig(layer="fc1", lambda1=2.0, lambda2=0.0, key_images=8)
    key = DeepSigns(cfg).create_key(model, seed=0, data=digits_train)
    hook = DeepSigns(cfg).hook(key)
    hook.on_train_start(model)
    x, y = hook.transform_batch(digits_train.x[:64], digits_train.y[:64])
    assert len(x) == 66 and set(y[64:].tolist()) == {0}  # per_batch key images of the target class
    terms = hook.extra_loss(model, x, y, model(x))
    hook.on_train_end(model)
    assert not model.fc1._forward_hooks
    with torch.no_grad():
        classes, w, mu = class_means(_fc1(model, x), y)
        expected = 2.0 * cluster_loss(_fc1(model, x), w, mu, classes.tolist().index(0))
    assert float(terms["bits_loss"].detach()) == 0.0
    assert float(terms["cluster_loss"].detach()) == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ArchitectureError, match="on_train_start"):
        hook.extra_loss(model, x, y, model(x))



def test_white_embeds_every_bit_and_keeps_the_task(white, unmarked, digits_test) -> None:
    method, model, key, run = white
    res = verify(model, key)
    assert res.method == "deepsigns" and res.detected and res.p_value <= res.threshold
    assert res.bit_error_rate == 0.0 and res.total_bits == 48 and res.details["null_exact"]
    assert run.final["bit_error_rate"] == 0.0 and not model.fc1._forward_hooks
    acc, base = evaluate(model, digits_test)["accuracy"], evaluate(unmarked, digits_test)["accuracy"]
    assert acc > base - 0.03


def test_white_extraction_is_the_projected_mean_activation(white) -> None:
    """Per target class: sign of A · (mean fc1 output, before its ReLU, over that class's key images)."""
    method, model, key, _ = white
    x, cls, A = key.tensors["images"], key.tensors["classes"], key.tensors["A"].double()
    with torch.no_grad():
        fc1 = _fc1(model, x).double()
    bits = torch.cat([(A @ fc1[cls == t].mean(0) > 0).long() for t in (0, 3)])
    assert torch.equal(method.extract(model, key).bits, bits)
    assert torch.equal(bits, key.bits)
    assert sorted(set(cls.tolist())) == [0, 3] and int((cls == 0).sum()) == 32
    assert A.shape == (24, 1024)


def test_white_extraction_ignores_the_order_of_the_key_images(white) -> None:
    method, model, key, _ = white
    perm = torch.randperm(len(key.tensors["classes"]), generator=torch.Generator().manual_seed(3))
    shuffled = copy.copy(key)
    shuffled.tensors = {**key.tensors, "images": key.tensors["images"][perm], "classes": key.tensors["classes"][perm]}
    a, b = method.extract(model, key), method.extract(model, shuffled)
    assert torch.equal(a.bits, b.bits)
    assert torch.allclose(a.scores, b.scores, atol=1e-6)


def test_white_key_round_trips(white, tmp_path: Path) -> None:
    method, model, key, _ = white
    back = WatermarkKey.load(key.save(tmp_path / "w.key"))
    assert DeepSigns.from_key(back).config == method.config
    assert back.layer == "fc1" and back.message_random
    r1, r2 = verify(model, back), method.verify(model, key)
    assert (r1.matched_bits, r1.p_value, r1.detected) == (r2.matched_bits, r2.p_value, r2.detected)


@pytest.mark.parametrize("mode", ["white", "black"])
def test_independent_models_are_not_detected(mode, request, independent) -> None:
    _, _, key, _ = request.getfixturevalue(mode)
    for other in independent:
        res = verify(other, key)
        assert not res.detected and res.p_value > 1e-3


def test_white_wrong_layer_or_model(white, digits_train, cnn) -> None:
    _, model, key, _ = white
    with pytest.raises(ArchitectureError, match="no layer 'nope'"):
        DeepSigns(DeepSignsConfig(layer="nope")).create_key(cnn, seed=0, data=digits_train)
    moved = copy.copy(key)
    moved.layer = "fc9"
    with pytest.raises(ArchitectureError):
        verify(model, moved)
    from netmark.models import build

    with pytest.raises(ArchitectureError):
        verify(build("mlp", in_channels=3, image_size=8, num_classes=10), key)
    moved.layer = "conv1"  # exists, but its output has 32·8·8 = 2048 features, not fc1's 1024
    with pytest.raises(ArchitectureError, match="2048"):
        verify(model, moved)
    with pytest.raises(ArchitectureError, match="2048"):
        DeepSigns(WHITE).hook(moved).on_train_start(make_cnn(1))


def test_white_key_creation_checks_its_inputs(cnn, digits_train) -> None:
    method = DeepSigns(WHITE)
    with pytest.raises(ConfigError, match="data="):
        method.create_key(cnn, seed=0)
    with pytest.raises(ConfigError, match="bits=48"):
        method.create_key(cnn, seed=0, message="01" * 12, data=digits_train)
    with pytest.raises(ConfigError, match="outside"):
        DeepSigns(DeepSignsConfig(target_classes=(10,))).create_key(cnn, seed=0, data=digits_train)
    key = method.create_key(cnn, seed=0, message="1" * 48, data=digits_train)
    assert not key.message_random and key.message == "1" * 48
    again = method.create_key(cnn, seed=0, message="1" * 48, data=digits_train)
    assert torch.equal(key.tensors["A"], again.tensors["A"]) and torch.equal(key.tensors["images"],
                                                                            again.tensors["images"])
    assert activations(cnn, "conv2", key.tensors["images"][:3]).shape == (3, 64 * 4 * 4)


def test_white_key_is_not_a_query_key(white) -> None:
    method, model, key, _ = white
    with pytest.raises(ConfigError, match="queries"):
        method.verify_query(model_predictor(model), key)
    with pytest.raises(ConfigError):
        method.calibrate(key, [model, model])


def test_malformed_keys_are_refused(white, black) -> None:
    _, _, wkey, _ = white
    _, _, bkey, _ = black

    def forged(key: WatermarkKey, **changes) -> WatermarkKey:
        out = copy.copy(key)
        for k, v in changes.items():
            setattr(out, k, v)
        return out

    bad = [
        forged(wkey, method="uchida"),
        forged(wkey, tensors={k: v for k, v in wkey.tensors.items() if k != "A"}),
        forged(wkey, tensors={**wkey.tensors, "A": wkey.tensors["A"][:5]}),
        forged(wkey, tensors={**wkey.tensors, "classes": wkey.tensors["classes"][:3]}),
        forged(wkey, tensors={**wkey.tensors, "classes": torch.zeros_like(wkey.tensors["classes"])}),
        forged(wkey, message=wkey.message[:-1]),
        forged(wkey, config={**wkey.config, "bits": "many"}),
        forged(wkey, config={**wkey.config, "colour": "red"}),
        forged(bkey, tensors={**bkey.tensors, "labels": bkey.tensors["labels"] + 10}),
        forged(bkey, tensors={"labels": bkey.tensors["labels"]}),
    ]
    for key in bad:
        with pytest.raises(KeyFileError):
            DeepSigns.from_key(key)
    with pytest.raises(KeyFileError, match="mode"):  # a black-mode method given a white key
        DeepSigns(BLACK).verify(torch.nn.Linear(1, 1), wkey)


# ----------------------------------------------------------------------------- black-box mode


def test_black_candidates_are_random_noise_with_random_labels(cnn, digits_train) -> None:
    method = DeepSigns(BLACK)
    key = method.create_key(cnn, seed=4, data=digits_train)
    x, y = key.tensors["inputs"], key.tensors["labels"]
    assert key.message_random and x.shape == (60, 1, 8, 8) and y.shape == (60,)
    assert float(x.min()) >= 0 and float(x.max()) <= 1 and len(set(y.tolist())) > 3
    assert torch.equal(method.create_key(cnn, seed=4).tensors["inputs"], x)  # data is optional: arch gives the shape
    with pytest.raises(ConfigError, match="no message"):
        method.create_key(cnn, seed=4, message="0101")


def test_black_keeps_keys_the_marked_model_learnt_and_the_unmarked_missed(black, unmarked, digits_test) -> None:
    method, model, key, _ = black
    x, y = key.tensors["inputs"], key.tensors["labels"]
    assert len(y) == 20 and not key.message_random and "null_counts" in key.tensors
    assert torch.equal(model_predictor(model)(x), y)
    assert not bool((model_predictor(make_cnn(seed=0))(x) == y).any())  # the model before embedding
    res = verify(model, key)
    assert res.detected and res.score == 1.0 and res.details["calibrated"]
    assert method.verify_query(model_predictor(model), key).p_value == res.p_value
    acc, base = evaluate(model, digits_test)["accuracy"], evaluate(unmarked, digits_test)["accuracy"]
    assert acc > base - 0.03


def test_black_key_round_trips(black, tmp_path: Path) -> None:
    method, model, key, _ = black
    back = WatermarkKey.load(key.save(tmp_path / "b.key"))
    assert DeepSigns.from_key(back).config == method.config
    r1, r2 = verify(model, back), method.verify_query(model_predictor(model), key)
    assert (r1.matched_bits, r1.p_value, r1.detected) == (r2.matched_bits, r2.p_value, r2.detected)


def test_black_selection_needs_a_learnt_key(black, cnn, digits_train) -> None:
    method = DeepSigns(BLACK)
    key = method.create_key(cnn, seed=4, data=digits_train)
    same = lambda x: key.tensors["labels"]  # noqa: E731  (the "unmarked" model already answers every label)
    with pytest.raises(ConfigError, match="none of the 60"):
        method.select_keys(key, marked=same, unmarked=same)
    with pytest.raises(ConfigError, match="null_models"):
        DeepSigns(WHITE).embed(cnn, digits_train, EPOCHS, null_models=[cnn])  # white: >= 2 (the aligned null)
    from netmark.models import build

    with pytest.raises(ArchitectureError):
        verify(build("mlp", in_channels=3, image_size=8, num_classes=10), black[2])
