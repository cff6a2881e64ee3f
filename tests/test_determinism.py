"""Every training netmark runs is a function of its own seeds: run twice in one process, in different orders, with
other work and other global random state in between, it gives identical weights and keys, and it consumes no global
RNG (torch's, numpy's or Python's). This is what makes a test's result independent of test order and worker
(issue 18: a bound that held alone failed in CI).

The table covers every registered method (its ``embed``, hidden phases included: pre-training, reference models,
key selection, calibration), every registered attack, and the anti-piracy ``protect``.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import pytest
import torch

from netmark.access import ProtectConfig, TransformConfig, protect
from netmark.attacks import ATTACKS
from netmark.data import ArrayDataset
from netmark.methods import METHODS, get_method
from netmark.training import TrainConfig, train
from tests.conftest import make_cnn
from tests.test_methods import SMALL_CONFIGS

TINY = TrainConfig(epochs=1, lr=0.05, batch_size=32, seed=3, progress=False)
#: attack options that keep a run short (one epoch) or make its seeded part run (random pruning order)
SMALL_ATTACKS: dict[str, dict] = {
    "prune": {"rate": 0.5, "order": "random"},
    "finetune": {"train": TINY},
    "overwrite": {"train": TINY, "method_config": {"layer": "conv2", "bits": 32}},
    "distill": {"epochs": 1},
    "neural-cleanse": {"steps": 20, "classes": [0, 1, 2], "train": TINY},
    "weight-shift": {"train": TINY},
    "extraction": {"queries": 100, "train": TINY},
    "combined": {"train": TINY},
    "neural-dehydration": {"per_class": 8, "inversion_steps": 10, "unlearn_batch": 16, "train": TINY},
}


@pytest.fixture(scope="module")
def small(digits_train) -> ArrayDataset:
    """480 digits (a seeded subset): enough for every method's phases to run once."""
    idx = torch.randperm(len(digits_train), generator=torch.Generator().manual_seed(0))[:480]
    return ArrayDataset(digits_train.x[idx], digits_train.y[idx], name="digits", num_classes=10)


def _global_state() -> tuple[torch.Tensor, tuple, tuple]:
    return torch.random.get_rng_state(), np.random.get_state(), random.getstate()


def _same_global_state(a: tuple, b: tuple) -> bool:
    return (torch.equal(a[0], b[0]) and a[1][0] == b[1][0] and np.array_equal(a[1][1], b[1][1])
            and a[1][2:] == b[1][2:] and a[2] == b[2])


def _other_work(i: int, data: ArrayDataset) -> None:
    """What other tests do between two runs: reseed and draw from every global RNG, train another model."""
    torch.manual_seed(1000 + i)
    np.random.seed(1000 + i)
    random.seed(1000 + i)
    torch.rand(17 * i + 1)
    np.random.rand(5 * i + 1)
    random.random()
    other = make_cnn(seed=50 + i)
    train(other, data, TrainConfig(epochs=1, lr=0.1, batch_size=16, seed=50 + i, progress=False))


def _tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _twice(run: Callable[[], dict[str, torch.Tensor]], data: ArrayDataset) -> None:
    """``run`` twice with other work before each; equal outputs, and no global RNG consumed by either run."""
    outs = []
    for i in (1, 2):
        _other_work(i, data)
        before = _global_state()
        outs.append(run())
        assert _same_global_state(before, _global_state()), "the run consumed or reseeded a global RNG"
    a, b = outs
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"not a function of its seeds: {different}"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_embeds_as_a_function_of_its_seeds(name: str, digits_train, small: ArrayDataset) -> None:
    def run() -> dict[str, torch.Tensor]:
        method = get_method(name)(SMALL_CONFIGS[name])
        model, key, _ = method.embed(make_cnn(seed=0), digits_train, TINY, seed=11)
        out = _tensors(model)
        out.update({f"key.{k}": v for k, v in key.tensors.items()})
        out["key.message"] = torch.tensor([ord(c) for c in key.message], dtype=torch.int64)
        return out

    _twice(run, small)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_attack_is_a_function_of_its_seed(name: str, small: ArrayDataset) -> None:
    victim = make_cnn(seed=0)
    train(victim, small, TINY)
    cls = ATTACKS[name]
    config = cls.config_cls(seed=5, **SMALL_ATTACKS.get(name, {}))
    _twice(lambda: _tensors(cls(config)(victim, small if cls.needs_data else None)), small)


def test_protect_is_a_function_of_its_seeds(small: ArrayDataset) -> None:
    def run() -> dict[str, torch.Tensor]:
        res = protect(make_cnn(seed=0), small, ProtectConfig(TransformConfig("generator", seed=7)), TINY)
        return {**_tensors(res.model), **{f"g.{k}": v for k, v in _tensors(res.transform).items()}}

    _twice(run, small)


def test_the_check_catches_a_run_that_draws_from_the_global_rng(small: ArrayDataset) -> None:
    """The check itself can fail: a 'training' that initialises from torch's global generator is caught."""

    def leaky() -> dict[str, torch.Tensor]:
        return {"w": torch.randn(4)}

    with pytest.raises(AssertionError, match="global RNG"):
        _twice(leaky, small)
