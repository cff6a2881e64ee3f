"""Attacks: model in → new model out; the registry table checks every attack's contract."""

from __future__ import annotations

import pytest
import torch

from netmark.attacks import (
    ATTACKS,
    AttackConfig,
    FinetuneConfig,
    FixedPointConfig,
    Overwrite,
    OverwriteConfig,
    PruneConfig,
    QuantizeConfig,
    RoundTripConfig,
    finetune,
    prune,
    quantize,
    replace_head,
)
from netmark.attacks.distill import DistillConfig
from netmark.attacks.outlier import OutlierResetConfig
from netmark.attacks.prune import prune_tensor
from netmark.attacks.quantize import quantize_tensor
from netmark.data import ArrayDataset
from netmark.errors import ConfigError
from netmark.models import arch_of
from netmark.models.wrapped import QueryWrapper
from netmark.training import TrainConfig
from tests.conftest import make_cnn

QUICK = TrainConfig(epochs=1, lr=0.01, batch_size=32, progress=False)
SMALL_ATTACKS: dict[str, AttackConfig] = {
    "prune": PruneConfig(rate=0.5),
    "quantize": QuantizeConfig(bits=4),
    "fixed-point": FixedPointConfig(bits=6),
    "roundtrip": RoundTripConfig(dtype="int8"),
    "finetune": FinetuneConfig(train=QUICK),
    "distill": DistillConfig(epochs=1),
    "overwrite": OverwriteConfig(method_config={"layer": "conv2", "bits": 16}, train=QUICK),
    # a freshly initialised layer is uniform within ±1.73 std: k = 1.5 has weights to reset
    "outlier-reset": OutlierResetConfig(k=1.5),
}


def small_config(name: str) -> AttackConfig:
    """The small config the contract runs attack ``name`` with: the one above, else the attack's own
    :meth:`~netmark.attacks.base.Attack.example_config` (so that a new attack needs no entry here)."""
    return SMALL_ATTACKS.get(name) or ATTACKS[name].example_config()


def test_every_attack_has_a_test_config() -> None:
    assert set(SMALL_ATTACKS) <= set(ATTACKS)
    for name, cls in ATTACKS.items():
        assert isinstance(small_config(name), cls.config_cls)


def check_attack_contract(name: str, config: AttackConfig, data: ArrayDataset) -> None:
    """The input model is untouched, the output is a new eval-mode model that differs from it."""
    model = make_cnn(num_classes=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    out = ATTACKS[name](config)(model, data)
    assert out is not model and not out.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    if isinstance(out, QueryWrapper):  # a query-time filter (preprocessing, capsulation) changes answers, not weights
        probe = torch.cat([data.x, 1 - data.x])
        with torch.no_grad():
            assert not torch.allclose(out(probe), model.eval()(probe))
    else:
        assert any(not torch.equal(before[k], v) for k, v in out.state_dict().items())
    assert arch_of(out)["name"] == "simple-cnn"


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_contract(name: str, tiny_data) -> None:
    """The input model is untouched, the output is a new eval-mode model that differs from it."""
    check_attack_contract(name, small_config(name), tiny_data)


@pytest.mark.parametrize("name", ["finetune", "overwrite"])
def test_data_attacks_need_data(name: str) -> None:
    with pytest.raises(ConfigError, match="needs training data"):
        ATTACKS[name](SMALL_ATTACKS[name])(make_cnn())


def test_prune_orders() -> None:
    w = torch.tensor([0.1, -5.0, 0.3, 2.0, -0.2, 1.0, 4.0, -0.05, 0.7, -3.0])
    asc = prune_tensor(w, 0.3, "ascending")
    assert torch.equal(asc == 0, torch.tensor([1, 0, 0, 0, 1, 0, 0, 1, 0, 0], dtype=torch.bool))
    desc = prune_tensor(w, 0.3, "descending")
    assert set(torch.nonzero(desc == 0).flatten().tolist()) == {1, 6, 9}
    rnd = prune_tensor(w, 0.5, "random", torch.Generator().manual_seed(0))
    assert int((rnd == 0).sum()) == 5
    assert torch.equal(prune_tensor(w, 0.0, "ascending"), w)
    assert int((prune_tensor(w, 1.0, "random", torch.Generator()) == 0).sum()) == 10


def test_prune_one_layer_or_all(cnn) -> None:
    one = prune(cnn, PruneConfig(rate=0.65, layer="conv2"))
    frac = float((one.conv2.weight == 0).float().mean())
    assert abs(frac - 0.65) < 0.01
    assert torch.equal(one.conv1.weight, cnn.conv1.weight)
    every = prune(cnn, PruneConfig(rate=0.4))
    for name in ("conv1", "conv2", "fc1", "fc2"):
        assert abs(float((getattr(every, name).weight == 0).float().mean()) - 0.4) < 0.02


@pytest.mark.parametrize("bad", [{"rate": 1.5}, {"rate": -0.1}, {"order": "biggest"}])
def test_prune_bad_config(bad) -> None:
    with pytest.raises(ConfigError):
        PruneConfig(**bad)


def test_finetune_different_domain_replaces_head(digits_train) -> None:
    model = make_cnn()
    sub = digits_train.select_classes([5, 6, 7])
    out = finetune(model, sub, FinetuneConfig(train=QUICK))
    assert out.fc2.out_features == 3 and arch_of(out)["args"]["num_classes"] == 3
    assert model.fc2.out_features == 10
    # everything below the head started from the victim's weights
    same = replace_head(model, 3)
    assert torch.equal(same.conv2.weight, model.conv2.weight)
    assert not torch.equal(same.fc2.weight[:3], model.fc2.weight[:3]) or same.fc2.weight.shape != model.fc2.weight.shape


@pytest.mark.parametrize("arch", ["mlp", "lenet5", "all-cnn-c"])
def test_new_head_is_fresh_even_with_the_same_class_count(arch) -> None:
    from netmark.attacks.finetune import output_layer
    from netmark.models import build

    model = build(arch, num_classes=10)
    head = output_layer(model)
    fresh = replace_head(model, 10)
    old, new = model.state_dict(), fresh.state_dict()
    assert not torch.equal(old[f"{head}.weight"], new[f"{head}.weight"])
    assert all(torch.equal(v, new[k]) for k, v in old.items() if not k.startswith(head + "."))


def test_overwrite_keeps_attacker_key(tiny_data) -> None:
    atk = Overwrite(SMALL_ATTACKS["overwrite"])
    out = atk(make_cnn(num_classes=4), tiny_data)
    assert atk.attacker_key is not None and atk.attacker_key.layer == "conv2"
    from netmark.methods import verify

    assert verify(out, atk.attacker_key).total_bits == 16


def test_overwrite_config_validates_method() -> None:
    with pytest.raises(ConfigError, match="unknown watermark method"):
        OverwriteConfig(method="nope")
    with pytest.raises(ConfigError):
        OverwriteConfig(method_config={"bits": -1})


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_quantize_levels(bits: int) -> None:
    w = torch.randn(6, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    q = quantize_tensor(w, bits)
    for ch in range(6):
        assert len(torch.unique(q[ch])) <= max(2, 2**bits - 1)
    err = float((q - w).abs().max())
    assert err <= float(w.abs().max()) * (1.0 if bits == 1 else 1.0 / (2 ** (bits - 1) - 1))


def test_quantize_8bit_barely_changes_predictions(digits_train) -> None:
    model = make_cnn()
    q = quantize(model, QuantizeConfig(bits=8))
    model.eval()
    with torch.no_grad():
        agree = (q(digits_train.x[:200]).argmax(1) == model(digits_train.x[:200]).argmax(1)).float().mean()
    assert agree > 0.97
    with pytest.raises(ConfigError):
        QuantizeConfig(bits=0)


def test_overwrite_with_a_key_made_from_training_images(tiny_data) -> None:
    """Methods whose keys are crafted from data (zhang-content stamps training images) get the attacker's images."""
    cfg = OverwriteConfig(method="zhang-content", method_config={"size": 8, "per_batch": 4, "null_models": 0},
                          train=QUICK)
    atk = Overwrite(cfg)
    atk(make_cnn(num_classes=4), tiny_data)
    stamped = atk.attacker_key.tensors["inputs"]
    assert stamped.shape == (8, 1, 8, 8)
    same = (stamped.flatten(1)[:, None] == tiny_data.x.flatten(1)[None]).float().mean(2)  # pixel agreement
    assert bool((same.max(1).values >= 0.5).all())  # each is an attacker image outside the stamp
