"""Uchida et al. 2017 specifics: key matrices (§3.3), Eq. 2-4, layer choice, §4.2 baseline."""

from __future__ import annotations

import pytest
import torch

from netmark.draws import draw
from netmark.errors import ArchitectureError, ConfigError
from netmark.methods.uchida import (
    PAPER_TRAIN,
    Uchida,
    UchidaConfig,
    auto_layer,
    embed_without_training,
    embedding_loss,
    host_vector,
    make_matrix,
    paper_config,
)
from netmark.models import build


def test_paper_defaults() -> None:
    cfg = UchidaConfig()
    assert (cfg.bits, cfg.key_type, cfg.strength, cfg.reduction) == (256, "random", 0.01, "sum")
    assert paper_config().layer == "conv2.0.conv2"
    p = PAPER_TRAIN
    assert (p.epochs, p.lr, p.batch_size, p.weight_decay) == (200, 0.1, 64, 5e-4)
    assert PAPER_TRAIN.nesterov and PAPER_TRAIN.milestones == (60, 120, 160) and PAPER_TRAIN.gamma == 0.2
    wrn = build("wrn", in_channels=3, image_size=32, num_classes=10, widen=4)
    assert host_vector(wrn.get_submodule("conv2.0.conv2").weight).numel() == 576  # paper: conv 2 group M = 576


@pytest.mark.parametrize("kind", ["direct", "diff", "random"])
def test_key_matrices(kind: str) -> None:
    X = make_matrix(kind, 32, 100, draw(0))
    assert X.shape == (32, 100)
    if kind == "direct":
        assert torch.equal((X == 1).sum(1), torch.ones(32, dtype=torch.long)) and (X != 0).sum() == 32
        assert len(set(X.argmax(1).tolist())) == 32  # distinct positions while T <= M
    elif kind == "diff":
        assert torch.equal((X == 1).sum(1), torch.ones(32, dtype=torch.long))
        assert torch.equal((X == -1).sum(1), torch.ones(32, dtype=torch.long))
    else:
        assert abs(float(X.mean())) < 0.1 and abs(float(X.std()) - 1) < 0.1


def test_host_vector_averages_over_filters() -> None:
    conv = torch.nn.Conv2d(3, 5, 2)
    w = host_vector(conv.weight)
    assert w.shape == (3 * 2 * 2,)
    assert torch.allclose(w, conv.weight.mean(0).flatten())
    lin = torch.nn.Linear(7, 4)
    assert torch.allclose(host_vector(lin.weight), lin.weight.mean(0))


def test_extraction_follows_eq_2_and_loss_eq_4(cnn) -> None:
    meth = Uchida(UchidaConfig(layer="conv2", bits=32))
    key = meth.create_key(cnn, seed=0)
    ex = meth.extract(cnn, key)
    proj = key.tensors["X"] @ host_vector(cnn.conv2.weight).detach()
    assert torch.equal(ex.bits, (proj >= 0).long())
    b = key.bits.float()
    p = torch.sigmoid(proj)
    manual = -(b * p.log() + (1 - b) * (1 - p).log()).sum()
    assert ex.details["embed_loss"] == pytest.approx(float(manual), rel=1e-4)
    mean = embedding_loss(host_vector(cnn.conv2.weight.detach()), key.tensors["X"], key.bits, "mean")
    assert float(mean) == pytest.approx(float(manual) / 32, rel=1e-4)


def test_auto_layer_and_capacity(cnn) -> None:
    assert auto_layer(cnn, 256) == "conv2"  # conv1: M = 9, conv2: M = 288
    assert auto_layer(cnn, 1000) == "fc2"  # no conv fits; fc1 has M = 256, fc2 has M = 1024
    with pytest.raises(ConfigError, match="no layer can hold"):
        auto_layer(cnn, 10**6)


def test_user_message_and_validation(cnn) -> None:
    msg = "1" * 16
    key = Uchida(UchidaConfig(layer="conv2", bits=16)).create_key(cnn, seed=0, message=msg)
    assert key.message == msg and key.message_random is False
    with pytest.raises(ConfigError, match="16 bits"):
        Uchida(UchidaConfig(layer="conv2", bits=8)).create_key(cnn, seed=0, message=msg)
    with pytest.raises(ArchitectureError, match="no layer"):
        Uchida(UchidaConfig(layer="conv9", bits=8)).create_key(cnn, seed=0)
    with pytest.raises(ArchitectureError, match="such layers: conv1, conv2"):
        Uchida(UchidaConfig(layer="pool", bits=8)).create_key(cnn, seed=0)


@pytest.mark.parametrize("bad", [{"bits": 0}, {"bits": True}, {"key_type": "hex"}, {"strength": -1.0},
                                 {"strength": float("inf")}, {"reduction": "max"}, {"layer": ""}])
def test_bad_configs(bad) -> None:
    with pytest.raises(ConfigError):
        UchidaConfig(**bad)


def test_embedding_without_training_table7_shape(cnn) -> None:
    """λ = 0 leaves W unchanged; growing λ lowers E_R and moves W further (Uchida Table 7)."""
    key = Uchida(UchidaConfig(layer="conv2", bits=64)).create_key(cnn, seed=0)
    import copy

    out = {}
    for lam in (0.0, 1.0, 100.0):
        m = copy.deepcopy(cnn)
        out[lam] = embed_without_training(m, key, lam=lam, steps=300, lr=1e-2)
        if lam == 0.0:
            assert torch.equal(m.conv2.weight, cnn.conv2.weight)
    assert out[0.0]["weight_distance"] == 0.0
    assert out[100.0]["embed_loss"] < out[1.0]["embed_loss"] < out[0.0]["embed_loss"]
    assert out[100.0]["weight_distance"] > out[1.0]["weight_distance"] > 0
