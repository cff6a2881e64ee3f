"""Key material from the OS CSPRNG, never from a default seed (issue 20, item 1).

The adversary of the issue: every owner who embeds with default flags gets the same key (seed 0), so owner C's
independently trained model "verifies" under owner A's key, and a released model's seed is found by trying seeds.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from netmark._util import generator
from netmark.draws import ROOT_BYTES, derived_seed, draw, new_root
from netmark.errors import ConfigError
from netmark.keys import WatermarkKey
from netmark.methods import METHODS, get_method, verify
from netmark.methods.examples import example
from tests.conftest import make_cnn


def test_a_seed_draws_exactly_what_netmark_always_drew() -> None:
    for seed, k in ((0, 0), (7, 3), (11, 104_729)):
        g = generator(seed + k)
        d = draw(seed, k)
        assert torch.equal(d.rand(3, 4), torch.rand(3, 4, generator=g))
        assert torch.equal(d.randn(5), torch.randn(5, generator=g))
        assert torch.equal(d.randint(0, 9, (6,)), torch.randint(0, 9, (6,), generator=g))
        assert torch.equal(d.randperm(10), torch.randperm(10, generator=g))
        assert derived_seed(seed, k) == seed + k


def test_a_secret_root_draws_independent_streams() -> None:
    assert len(new_root()) == ROOT_BYTES and new_root() != new_root()
    root = bytes(range(32))  # a fixed secret root: the statistics below are a function of the test's inputs
    a = draw(root, 0).randn(4096)
    assert torch.equal(a, draw(root, 0).randn(4096))  # a function of (root, stream) only
    assert not torch.equal(a, draw(root, 1).randn(4096)) and not torch.equal(a, draw(bytes(32), 0).randn(4096))
    assert abs(float(a.mean())) < 0.1 and abs(float(a.std()) - 1) < 0.05  # N(0, 1)
    u = draw(root, 2).rand(4096, dtype=torch.float64)
    assert u.dtype == torch.float64 and float(u.min()) >= 0 and float(u.max()) < 1
    assert sorted(draw(root, 3).randperm(50).tolist()) == list(range(50))
    assert 0 <= derived_seed(root, 0) < 2**62 and derived_seed(root, 0) != derived_seed(root, 1)
    for bad in (b"short", 1.5, True, "00" * 32):
        with pytest.raises(ConfigError):
            draw(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_keys_without_a_seed_are_secret_and_never_repeat(name: str, digits_train, tmp_path: Path) -> None:
    """Two keys made with identical arguments and no seed share no material; each records its secret root, not a
    seed, survives its key file, and keeps the root out of its repr."""
    method = get_method(name)(example(name))
    data = digits_train if method.traits().needs_data else None
    model = make_cnn(seed=0)
    if name == "frontier-stitching":  # crafts its key on a trained model
        from netmark.training import TrainConfig, train

        train(model, digits_train, TrainConfig(epochs=3, lr=0.05, seed=0, progress=False))
    a, b = (method.create_key(model, data=data) for _ in range(2))
    assert a.root is not None and a.seed is None and not a.seeded and a.root != b.root
    differs = [n for n in a.tensors if not torch.equal(a.tensors[n], b.tensors[n])]
    assert differs or a.message != b.message, f"{name}: two secret keys drew the same material"
    seeded = method.create_key(model, data=data, seed=5)
    assert seeded.seeded and seeded.root is None and seeded.format_version == 1
    again = WatermarkKey.load(a.save(tmp_path / "k.key"))
    assert again.root == a.root and again.fingerprint == a.fingerprint and again.format_version == 2
    assert a.root not in repr(a)
    with pytest.raises(ConfigError, match="not both"):
        method.create_key(model, data=data, seed=1, root=new_root())


def test_owner_c_is_not_detected_with_owner_a_s_key(digits_train, digits_test) -> None:
    """The issue's owner C: A and C both embed with secret keys (what default flags now give); C trains independently
    with other data and lr. Under A's key C's model is not detected; A's own model is. With the old default (both
    keys from seed 0) C's model is detected under A's key. (digits halves, simple-cnn, Uchida example config, 8
    epochs.)"""
    from netmark.training import TrainConfig

    method = get_method("uchida")(example("uchida"))
    half = len(digits_train) // 2
    a_data, c_data = digits_train.subset(range(half)), digits_train.subset(range(half, len(digits_train)))
    # two secret roots as the OS would draw them (fixed here, so the test is a function of its own inputs)
    model_a, model_c = make_cnn(seed=0), make_cnn(seed=0)
    key_a = method.create_key(model_a, root=bytes(range(32)))
    key_c = method.create_key(model_c, root=bytes(range(1, 33)))
    model_a, key_a, _ = method.embed(model_a, a_data, TrainConfig(epochs=8, lr=0.05, seed=0, progress=False), key=key_a)
    model_c, key_c, _ = method.embed(model_c, c_data, TrainConfig(epochs=8, lr=0.03, seed=0, progress=False), key=key_c)
    assert verify(model_a, key_a).detected and verify(model_c, key_c).detected
    res = verify(model_c, key_a)
    assert not res.detected and res.details["seeded"] is False
    # the old default (every owner seed 0) detects C's model under A's key: the threat this removes
    model_a0, key_a0, _ = method.embed(make_cnn(seed=0), a_data, TrainConfig(epochs=8, lr=0.05, seed=0,
                                                                            progress=False), seed=0)
    model_c0, _, _ = method.embed(make_cnn(seed=0), c_data, TrainConfig(epochs=8, lr=0.03, seed=0, progress=False),
                                  seed=0)
    old = verify(model_c0, key_a0)
    assert old.detected and old.details["seeded"] is True
