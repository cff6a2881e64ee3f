"""Anti-piracy access control (Chen & Wu 2018): transforms, the joint loss and protection on digits."""

from __future__ import annotations

import pytest
import torch

from netmark._util import seeded
from netmark.access import (
    KINDS,
    AntiPiracyHook,
    ProtectConfig,
    Protected,
    TransformConfig,
    access_accuracy,
    bipolar,
    build_transform,
    paper_train,
    protect,
    recover_universal,
)
from netmark.data import load
from netmark.errors import ConfigError
from netmark.models import build
from netmark.training import TrainConfig


def test_bipolar_pattern_has_the_papers_distribution() -> None:
    d = bipolar((1, 200, 200), sigma=0.1, p=0.2, root=3)
    vals, counts = torch.unique(d, return_counts=True)
    assert torch.allclose(vals, torch.tensor([-0.1, 0.0, 0.1]))
    share = counts.float() / d.numel()
    assert share[0] == pytest.approx(0.2, abs=0.01) and share[1] == pytest.approx(0.6, abs=0.01)
    assert torch.equal(d, bipolar((1, 200, 200), 0.1, 0.2, 3))
    assert not torch.equal(d, bipolar((1, 200, 200), 0.1, 0.2, 4))


@pytest.mark.parametrize("kind", KINDS)
def test_transforms_shape_seed_and_trainability(kind: str) -> None:
    cfg = TransformConfig(kind, seed=5)  # type: ignore[arg-type]
    g = build_transform(cfg, (1, 8, 8))
    x = torch.rand(6, 1, 8, 8)
    xp = g(x)
    assert xp.shape == x.shape and not torch.equal(xp, x)
    again = build_transform(cfg, (1, 8, 8))
    assert torch.equal(again(x), xp)  # the seed alone rebuilds the same G
    assert (sum(p.numel() for p in g.parameters()) > 0) == (kind != "fixed")
    delta = g.perturbation(x)
    universal = kind != "generator"
    assert torch.allclose(delta[0], delta[1]) == universal
    if kind == "generator":
        assert delta.abs().max() <= 1.0  # tanh output
    with pytest.raises(ConfigError, match="shape"):
        g(torch.rand(2, 3, 8, 8))


def test_one_pair_reveals_a_universal_perturbation_but_not_the_generator() -> None:
    x = torch.rand(2, 1, 8, 8)
    for kind in ("fixed", "learned"):
        g = build_transform(TransformConfig(kind, seed=1), (1, 8, 8))  # type: ignore[arg-type]
        delta = recover_universal(x[:1], g(x[:1]))
        assert torch.allclose(x[1:] + delta, g(x[1:]), atol=1e-6)  # a second input is now "authorized"
    gen = build_transform(TransformConfig("generator", seed=1), (1, 8, 8))
    delta = recover_universal(x[:1], gen(x[:1]))
    assert not torch.allclose(x[1:] + delta, gen(x[1:]), atol=1e-3)


@pytest.mark.parametrize("bad", [{"kind": "rot13"}, {"sigma": 0.0}, {"p": 0.6}, {"p": 0.0}, {"hidden": 0}])
def test_transform_config_validates(bad: dict) -> None:
    with pytest.raises(ConfigError):
        TransformConfig(**bad)


@pytest.mark.parametrize("bad", [{"alpha": 0.0}, {"beta": -1.0}, {"gamma": float("nan")}, {"raw_pass": "both"}])
def test_protect_config_validates(bad: dict) -> None:
    with pytest.raises(ConfigError):
        ProtectConfig(**bad)


def test_paper_schedule_in_epochs() -> None:
    cfg = paper_train(60000)  # Fashion-MNIST: 469 iterations per epoch
    assert (cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size) == ("sgd", 0.1, 0.9, 5e-4, 128)
    assert cfg.epochs == 85 and cfg.milestones == (21, 43, 64) and cfg.gamma == 0.1
    assert paper_train(60000, iterations=2000, epochs=3).epochs == 3


def test_hook_terms_follow_eq3() -> None:
    torch.manual_seed(0)
    g = build_transform(TransformConfig("fixed"), (1, 8, 8))
    f = build("simple-cnn", in_channels=1, image_size=8, num_classes=10)
    pipe = Protected(g, f).eval()  # no dropout: the terms are compared with a second forward pass
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    terms = AntiPiracyHook(ProtectConfig(alpha=2.0, beta=0.5, gamma=0.1)).extra_loss(pipe, x, y, pipe(x))
    q = torch.softmax(f(x), 1)[torch.arange(4), y].mean()
    assert terms["raw_correct_prob"].item() == pytest.approx(0.5 * q.item(), rel=1e-5)
    assert terms["distortion"].item() == pytest.approx(0.1 * g.delta.pow(2).sum().item(), rel=1e-5)
    assert terms["processed_extra"].item() == pytest.approx(
        torch.nn.functional.cross_entropy(pipe(x), y).item(), rel=1e-5)
    assert set(AntiPiracyHook(ProtectConfig()).extra_loss(pipe, x, y, pipe(x))) == {"raw_correct_prob", "distortion"}


def test_separate_raw_pass_uses_and_keeps_the_batchnorm_running_statistics() -> None:
    """raw_pass="separate": E_r's raw pass sees BatchNorm as deployed (running statistics, no update);
    the layer stays in train mode."""
    from torch import nn

    with seeded(0):
        net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10))
    pipe = Protected(build_transform(TransformConfig("fixed"), (1, 8, 8)), net).train()
    bn = net[1]
    bn.running_mean.fill_(0.3)
    bn.running_var.fill_(2.0)
    before = (bn.running_mean.clone(), bn.running_var.clone())
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    terms = AntiPiracyHook(ProtectConfig(raw_pass="separate")).extra_loss(pipe, x, y, torch.zeros(16, 10))
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert bn.training and net.training
    net.eval()
    expected = torch.softmax(net(x), 1).gather(1, y.view(-1, 1)).mean()
    assert terms["raw_correct_prob"].item() == pytest.approx(expected.item(), rel=1e-5)
    terms["raw_correct_prob"].backward()  # gradients still flow through the raw pass
    assert net[0].weight.grad is not None and float(net[0].weight.grad.abs().sum()) > 0


def test_joint_raw_pass_is_one_batchnorm_batch() -> None:
    """raw_pass="joint" (default): F sees [G(x); x] as one batch, E_r reads the raw half's logits, and the
    running statistics take one update from the mixture (what deployment then normalises by)."""
    from torch import nn

    with seeded(0):
        net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10))
    g = build_transform(TransformConfig("fixed"), (1, 8, 8))
    pipe = Protected(g, net).train()
    hook = AntiPiracyHook(ProtectConfig())
    hook.on_train_start(pipe)
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    logits = pipe(x)
    terms = hook.extra_loss(pipe, x, y, logits)
    assert int(net[1].num_batches_tracked) == 1 and pipe.raw_logits is None  # consumed by E_r
    with seeded(0):
        ref = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10))
    both = ref.train()(torch.cat([g(x), x]))
    assert torch.allclose(logits, both[:16], atol=1e-6)
    expected = torch.softmax(both[16:], 1).gather(1, y.view(-1, 1)).mean()
    assert terms["raw_correct_prob"].item() == pytest.approx(expected.item(), rel=1e-5)
    hook.on_train_end(pipe)
    assert not pipe.joint_raw and torch.allclose(pipe.eval()(x), net(g(x)))  # evaluation: processed only


def test_joint_and_separate_raw_pass_agree_without_batchnorm() -> None:
    g = build_transform(TransformConfig("fixed"), (1, 8, 8))
    with seeded(0):
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    out = {}
    for mode in ("joint", "separate"):
        pipe, hook = Protected(g, net).train(), AntiPiracyHook(ProtectConfig(raw_pass=mode))  # type: ignore[arg-type]
        hook.on_train_start(pipe)
        out[mode] = hook.extra_loss(pipe, x, y, pipe(x))["raw_correct_prob"].item()
        hook.on_train_end(pipe)
    assert out["joint"] == pytest.approx(out["separate"], rel=1e-6)


def test_protecting_a_batchnorm_network_keeps_its_authorized_accuracy() -> None:
    """Regression: a ResNet protected with E_r's raw pass outside the processed batch (train-mode BatchNorm,
    then eval-mode BatchNorm) lost most of its authorized accuracy (GPU run of the gpu scale: 10%).

    The learning rate falls ÷10 at epochs 5 and 7: at a constant 0.05 the eval-mode (running-statistics) accuracy
    swings between epochs and ends anywhere in 0.09-0.99 (`benchmarks/access_bounds.py --seeds 0-7 --cases
    resnet8/generator-constant-lr`: 0.089 and 0.728 at seeds 4 and 5, train accuracy 0.996), while with the step
    schedule the same 8 seeds give authorized 0.972-0.994, unauthorized 0.000-0.097 (`--cases resnet8/generator`)."""
    train_set, test_set = load("digits", "train"), load("digits", "test")
    with seeded(0):
        model = build("resnet", in_channels=1, image_size=8, num_classes=10, depth=8)
    res = protect(model, train_set, ProtectConfig(TransformConfig("generator", seed=11)),
                  TrainConfig(epochs=8, batch_size=64, lr=0.05, momentum=0.9, milestones=(5, 7), progress=False,
                              seed=0))
    acc = access_accuracy(res.model, res.transform, test_set)
    assert acc["authorized"] > 0.85, acc
    assert acc["unauthorized"] < 0.15, acc


#: epochs per transform. The bounds below come from `benchmarks/access_bounds.py --seeds 0-7` (8 seeds of model,
#: shuffling and transform; one thread): authorized / unauthorized test accuracy fixed (24 epochs) 0.975-0.992 /
#: 0.097-0.108, learned 0.956-0.978 / 0.100-0.103, generator 0.975-0.989 / 0.000-0.119. At 12 epochs the fixed
#: pattern is not always learned apart from raw inputs: unauthorized 0.10-0.74 over the same 8 seeds (0.41 and 0.74
#: at seeds 3 and 4; 0.136 at seed 0, 0.186 on another machine in CI: issue 18's flake), hence 24 epochs.
PROTECT_EPOCHS = {"fixed": 24, "learned": 12, "generator": 12}


@pytest.mark.parametrize("kind", KINDS)
def test_protect_on_digits_works_only_through_the_transform(kind: str) -> None:
    train_set, test_set = load("digits", "train"), load("digits", "test")
    with seeded(0):  # the model's initialisation, like everything else in the run, from a seed
        model = build("simple-cnn", in_channels=1, image_size=8, num_classes=10)
    res = protect(model, train_set, ProtectConfig(TransformConfig(kind, seed=11)),  # type: ignore[arg-type]
                  TrainConfig(epochs=PROTECT_EPOCHS[kind], batch_size=64, lr=0.05, momentum=0.9, progress=False,
                              seed=0))
    acc = access_accuracy(res.model, res.transform, test_set)
    assert acc["authorized"] > 0.85, acc
    assert acc["unauthorized"] < 0.15, acc
    assert res.model is model and "raw_correct_prob" in res.history.history[-1]
    wrong = build_transform(TransformConfig(kind, seed=12), (1, 8, 8))  # type: ignore[arg-type]
    if kind == "fixed":  # another owner's pattern is no key to this model
        assert access_accuracy(res.model, wrong, test_set)["authorized"] < acc["authorized"] - 0.3


def test_docstring_examples_run() -> None:
    import doctest
    import importlib

    for name in ("netmark.access.transforms", "netmark.access.protect"):
        res = doctest.testmod(importlib.import_module(name))
        assert res.attempted > 0 and res.failed == 0, name


@pytest.mark.parametrize("kind", KINDS)
def test_transform_key_round_trip(kind: str, tmp_path) -> None:
    from netmark.access import transform_from_key, transform_key
    from netmark.keys import WatermarkKey

    g = build_transform(TransformConfig(kind, seed=2), (1, 8, 8))  # type: ignore[arg-type]
    with torch.no_grad():  # trained state, not only the seed's: the file must carry the tensors
        for p in g.parameters():
            p.add_(0.01)
    path = transform_key(g).save(tmp_path / "g.key")
    assert path.stat().st_mode & 0o077 == 0  # a secret
    back = transform_from_key(WatermarkKey.load(path))
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(back(x), g(x)) and back.config == g.config


def test_transform_key_rejects_other_and_malformed_keys() -> None:
    from netmark.access import transform_from_key, transform_key
    from netmark.errors import KeyFileError
    from netmark.keys import WatermarkKey

    good = transform_key(build_transform(TransformConfig("generator"), (1, 8, 8)))
    bad_keys = [
        WatermarkKey(method="uchida", layer="fc2", message="01", tensors={"X": torch.zeros(2, 3)}),
        WatermarkKey(method="chen-wu", layer=None, message="", tensors=good.tensors,
                     config={**good.config, "transform": {**good.config["transform"], "kind": "rot13"}}),
        WatermarkKey(method="chen-wu", layer=None, message="", tensors=good.tensors, config={"shape": [1, 8, 8]}),
        WatermarkKey(method="chen-wu", layer=None, message="", tensors={}, config=good.config),
        WatermarkKey(method="chen-wu", layer=None, message="", tensors=good.tensors,
                     config={**good.config, "shape": [3, 8, 8]}),
    ]
    for key in bad_keys:
        with pytest.raises(KeyFileError):
            transform_from_key(key)


def test_transforms_without_a_seed_are_secret_and_never_repeat(tmp_path) -> None:
    """Issue 20, item 1: the transform's secret starts from the OS CSPRNG unless a research seed is given; a seed
    draws what it always drew."""
    from netmark._util import generator
    from netmark.access import TransformConfig, build_transform, transform_from_key, transform_key
    from netmark.keys import WatermarkKey

    for kind in ("fixed", "generator"):
        a, b = (build_transform(TransformConfig(kind), (1, 8, 8)) for _ in range(2))
        sa, sb = a.state_dict(), b.state_dict()
        assert any(not torch.equal(sa[k], sb[k]) for k in sa), kind
        key = transform_key(a)
        assert not key.seeded and key.seed is None and key.root == a.root.hex()  # type: ignore[union-attr]
        back = transform_from_key(WatermarkKey.load(key.save(tmp_path / f"{kind}.key")))
        x = torch.rand(2, 1, 8, 8, generator=generator(0))
        assert torch.equal(back(x), a(x))  # the key file restores the secret transform exactly
        seeded_a, seeded_b = (build_transform(TransformConfig(kind, seed=3), (1, 8, 8)) for _ in range(2))
        assert all(torch.equal(v, seeded_b.state_dict()[k]) for k, v in seeded_a.state_dict().items())
        assert transform_key(seeded_a).seeded
    u = torch.rand(1, 8, 8, generator=generator(3))  # the old draw of seed 3: sigma * (+1 below p, -1 above 1 - p)
    old = 0.1 * ((u < 0.2).float() - (u >= 0.8).float())
    assert torch.equal(build_transform(TransformConfig("fixed", seed=3), (1, 8, 8)).state_dict()["delta"], old)
