"""Zhang et al. 2018 (content / noise / unrelated) and Le Merrer et al. frontier stitching on digits.

Every scheme is embedded once per module (12 epochs of digits; frontier stitching adds its fine-tuning
epochs) and its null calibrated on three reference models shared by all schemes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import netmark.methods.frontier as fr
import netmark.methods.zhang as zh
from netmark.data import ArrayDataset
from netmark.errors import ConfigError
from netmark.keys import WatermarkKey
from netmark.methods import method_from_key, verify
from netmark.methods.triggerset import TriggerSetMethod, model_predictor
from netmark.training import TrainConfig, evaluate, train
from tests.conftest import make_cnn

EMBED = TrainConfig(epochs=12, lr=0.05, batch_size=64, seed=0, progress=False)
# target 0 mirrors the paper's "airplane" (class 0 of CIFAR-10); on digits few independent models answer 0 for
# stamped, noisy or glyph images, which keeps the calibrated null tight
CASES: dict[str, TriggerSetMethod] = {
    "zhang-content": zh.ZhangContent(zh.ZhangContentConfig(per_batch=16, target_class=0)),
    "zhang-noise": zh.ZhangNoise(zh.ZhangNoiseConfig(per_batch=16, target_class=0)),
    "zhang-unrelated": zh.ZhangUnrelated(zh.ZhangUnrelatedConfig(per_batch=16, target_class=0)),
    "frontier-stitching": fr.FrontierStitching(fr.FrontierConfig(per_batch=16, finetune_epochs=8, eps=0.15)),
}


def _trained(seed: int, data) -> torch.nn.Module:
    m = make_cnn(seed)
    train(m, data, TrainConfig(**{**EMBED.to_dict(), "seed": seed}))
    return m


@pytest.fixture(scope="module")
def reference_models(digits_train) -> list[torch.nn.Module]:
    """Independent models that calibrate every key's null."""
    return [_trained(s, digits_train) for s in (201, 202, 203)]


@pytest.fixture(scope="module")
def independent_models(digits_train) -> list[torch.nn.Module]:
    """Two more independent models, never used for calibration: the false-positive check."""
    return [_trained(s, digits_train) for s in (101, 102)]


class _Runs(dict):
    """Each scheme embedded at most once per module, on first use."""

    def __init__(self, data, refs) -> None:
        super().__init__()
        self.data, self.refs = data, refs

    def __missing__(self, name: str):
        method = CASES[name]
        model, key, run = method.embed(make_cnn(seed=0), self.data, EMBED, seed=11, null_models=self.refs)
        self[name] = (name, method, model, key, run)
        return self[name]


@pytest.fixture(scope="module")
def runs(digits_train, reference_models) -> _Runs:
    return _Runs(digits_train, reference_models)


@pytest.fixture(params=sorted(CASES))
def embedded(request, runs):
    return runs[request.param]


def test_embedded_watermark_is_detected(embedded, digits_test) -> None:
    name, _, model, key, _ = embedded
    res = verify(model, key)
    assert res.method == name and key.method == name
    assert res.details["trigger_accuracy"] >= 0.95 and res.detected and res.p_value <= res.threshold
    assert res.details["calibrated"] and not key.message_random
    assert evaluate(model, digits_test)["accuracy"] > 0.9


def test_key_round_trips(embedded, tmp_path: Path) -> None:
    name, method, model, key, _ = embedded
    back = WatermarkKey.load(key.save(tmp_path / "k.key"))
    again = method_from_key(back)
    assert type(again) is type(method) and again.config == method.config
    for t in ("inputs", "labels", "null_counts", "null_rates"):
        assert torch.equal(back.tensors[t], key.tensors[t])
    a, b = verify(model, key), verify(model, back)
    assert (a.matched_bits, a.p_value, a.detected) == (b.matched_bits, b.p_value, b.detected)
    q = again.verify_query(model_predictor(model), back)  # query-only gives the same decision
    assert (q.matched_bits, q.p_value) == (a.matched_bits, a.p_value)


def test_independent_models_are_not_detected(embedded, independent_models) -> None:
    _, _, _, key, _ = embedded
    for other in independent_models:
        res = verify(other, key)
        assert not res.detected and res.p_value > 1e-3, res.details["trigger_accuracy"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_triggers_depend_on_the_seed_and_are_reproducible(name, digits_train, reference_models) -> None:
    method = CASES[name]
    model = reference_models[0]  # frontier stitching crafts on a trained model; Zhang's keys ignore the weights
    k1, k1b, k2 = (method.create_key(model, seed=s, data=digits_train) for s in (5, 5, 6))
    assert torch.equal(k1.tensors["inputs"], k1b.tensors["inputs"])
    assert torch.equal(k1.tensors["labels"], k1b.tensors["labels"])
    assert not torch.equal(k1.tensors["inputs"], k2.tensors["inputs"])
    x = k1.tensors["inputs"]
    assert x.shape == (100, 1, 8, 8) and float(x.min()) >= 0 and float(x.max()) <= 1


def test_zhang_labels_are_one_target_and_sources_avoid_it(digits_train) -> None:
    model = make_cnn(0)
    for method in (zh.ZhangContent(zh.ZhangContentConfig()), zh.ZhangNoise(zh.ZhangNoiseConfig()),
                   zh.ZhangUnrelated(zh.ZhangUnrelatedConfig())):
        targets = {int(method.create_key(model, seed=s, data=digits_train).tensors["labels"].unique().item())
                   for s in range(12)}
        assert len(targets) > 1  # drawn from the seed when not configured
    content = zh.ZhangContent(zh.ZhangContentConfig(target_class=3, source_class=5)).create_key(
        model, seed=1, data=digits_train)
    assert set(content.tensors["labels"].tolist()) == {3}
    pool = digits_train.x[digits_train.y == 5]
    unstamped = content.tensors["inputs"][:, :, :5]  # the text band is the bottom 3 of 8 rows
    assert all(bool((pool[:, :, :5] == img).flatten(1).all(1).any()) for img in unstamped)


def test_content_stamp_and_noise_pattern() -> None:
    x = torch.zeros(2, 1, 28, 28)
    out = zh.stamp_text(x, "TEST", 0.3, 1.0)
    rows = out[0, 0].amax(1) > 0
    assert not bool(rows[:18].any()) and bool(rows[20:27].any()) and torch.equal(out[0], out[1])
    assert zh.text_mask("TEST").shape == (5, 15) and zh.text_mask("T")[0].tolist() == [1.0, 1.0, 1.0]
    # on flat grey images every trigger shows the pattern alone: one fixed stamp / one fixed noise per key
    grey = ArrayDataset(torch.full((200, 1, 8, 8), 0.5), torch.arange(200) % 10, name="grey", num_classes=10)
    content = zh.ZhangContent(zh.ZhangContentConfig(target_class=0)).create_key(make_cnn(0), seed=2, data=grey)
    c = content.tensors["inputs"]
    assert bool((c == c[0]).all()) and bool((c[0, :, :5] == 0.5).all()) and bool((c[0, :, 5:] > 0.5).any())
    for seed in (2, 3):
        noisy = zh.ZhangNoise(zh.ZhangNoiseConfig(noise_std=0.2)).create_key(make_cnn(0), seed=seed, data=grey)
        n = noisy.tensors["inputs"]
        assert bool((n == n[0]).all()) and float((n[0] - 0.5).std()) == pytest.approx(0.2, abs=0.06)


def test_unrelated_images_need_no_data_and_are_not_training_images(digits_train) -> None:
    key = zh.ZhangUnrelated(zh.ZhangUnrelatedConfig()).create_key(make_cnn(0), seed=4)
    x = key.tensors["inputs"]
    d = torch.cdist(x.flatten(1), digits_train.x.flatten(1))
    assert float(d.min()) > 0.5
    assert float(x.flatten(1).std(1).min()) > 0.05  # strokes, not blank images


def test_frontier_key_is_half_true_half_false_adversaries(digits_train, reference_models) -> None:
    model = reference_models[1]
    x, y, true_adv = fr.frontier_adversaries(model, digits_train, 40, 0.1, root=3)
    assert int(true_adv.sum()) == 20 and len(y) == 40
    pred = model_predictor(model)(x)
    assert torch.equal(pred != y, true_adv)  # true adversaries fooled, false ones still right, all true labels
    linf = (x.flatten(1)[:, None] - digits_train.x.flatten(1)[None]).abs().amax(2)  # each is a training image
    near = linf <= 0.1 + 1e-6                                                       # moved by at most eps
    assert bool((near & (digits_train.y[None] == y[:, None])).any(1).all())


def test_frontier_schedule_fresh_and_pretrained(runs, digits_train, reference_models) -> None:
    _, _, _, _, run = runs["frontier-stitching"]
    flags = [h["finetune"] for h in run.history]
    k = len(flags) - 12  # fine-tuning stops after the first epoch that classifies every adversary (cap 8)
    assert flags == [0.0] * 12 + [1.0] * k and 1 <= k <= 8 and run.history[-1]["epoch"] == 12.0 + k
    key_acc = [h["trigger_accuracy"] for h in run.history[12:]]
    assert all(a < 1.0 for a in key_acc[:-1]) and (key_acc[-1] == 1.0 or k == 8)
    trained = copy.deepcopy(reference_models[2])
    cfg = fr.FrontierConfig(per_batch=16, finetune_epochs=6, key_target=None, pretrained=True, null_models=0)
    model, k2, run2 = fr.FrontierStitching(cfg).embed(trained, digits_train, EMBED, seed=4,
                                                      null_models=reference_models[:2])
    assert len(run2.history) == 6 and all(h["finetune"] == 1.0 for h in run2.history)  # no target: every epoch
    assert verify(model, k2).details["trigger_accuracy"] >= 0.95
    # a key passed in: no plain training either, and it is used as is
    again = copy.deepcopy(reference_models[2])
    _, k3, run3 = fr.FrontierStitching(fr.FrontierConfig(finetune_epochs=1)).embed(again, digits_train, EMBED,
                                                                                   key=k2)
    assert len(run3.history) == 1 and torch.equal(k3.tensors["inputs"], k2.tensors["inputs"])


def test_finetune_rate_follows_the_schedule() -> None:
    m = fr.FrontierStitching(fr.FrontierConfig(finetune_epochs=3))
    cfg = m.finetune_config(TrainConfig(epochs=10, lr=0.1, milestones=(4, 8, 12), gamma=0.5, progress=False))
    assert cfg.epochs == 3 and cfg.milestones == () and cfg.lr == pytest.approx(0.025)
    cfg = fr.FrontierStitching(fr.FrontierConfig(finetune_lr=0.003)).finetune_config(EMBED)
    assert cfg.lr == 0.003 and cfg.epochs == 5


BAD: list[Callable[[], object]] = [
    lambda: zh.ZhangContentConfig(text=""),
    lambda: zh.ZhangContentConfig(text="tést"),
    lambda: zh.ZhangContentConfig(text=3),
    lambda: zh.ZhangContentConfig(text_height=0),
    lambda: zh.ZhangContentConfig(strength=1.5),
    lambda: zh.ZhangContentConfig(target_class=-1),
    lambda: zh.ZhangContentConfig(target_class=2, source_class=2),
    lambda: zh.ZhangContentConfig(source_class=1.5),
    lambda: zh.ZhangNoiseConfig(noise_std=0),
    lambda: zh.ZhangNoiseConfig(noise_std=float("nan")),
    lambda: zh.ZhangUnrelatedConfig(source_class=1),
    lambda: zh.ZhangUnrelatedConfig(size=0),
    lambda: zh.ZhangUnrelatedConfig(per_batch=True),
    lambda: fr.FrontierConfig(eps=0),
    lambda: fr.FrontierConfig(eps=2.0),
    lambda: fr.FrontierConfig(finetune_epochs=0),
    lambda: fr.FrontierConfig(pretrained="yes"),
    lambda: fr.FrontierConfig(finetune_lr=-0.1),
    lambda: fr.FrontierConfig(key_target=0),
    lambda: fr.FrontierConfig(key_target=1.5),
    lambda: fr.FrontierConfig(key_target=True),
    lambda: fr.FrontierConfig(null_models=-1),
]


@pytest.mark.parametrize("make", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_config_values_raise(make: Callable[[], object]) -> None:
    with pytest.raises(ConfigError):
        make()


def test_bad_runtime_inputs_raise(digits_train, reference_models) -> None:
    model = make_cnn(0)
    with pytest.raises(ConfigError, match="only 10 classes"):
        zh.ZhangUnrelated(zh.ZhangUnrelatedConfig(target_class=10)).create_key(model, seed=1)
    for method in (CASES["zhang-content"], CASES["zhang-noise"], CASES["frontier-stitching"]):
        with pytest.raises(ConfigError, match="data="):
            method.create_key(model, seed=1)
    with pytest.raises(ConfigError, match="true and"):  # a step too small to fool anything
        fr.FrontierStitching(fr.FrontierConfig(eps=1e-4)).create_key(reference_models[0], seed=1, data=digits_train)
    with pytest.raises(ConfigError, match="message"):
        CASES["zhang-noise"].create_key(model, seed=1, message="0101", data=digits_train)
    with pytest.raises(ConfigError, match="message"):  # refused before the plain training
        CASES["frontier-stitching"].embed(model, digits_train, EMBED, message="0101")
