"""Shared fixtures: tiny data and models so unit tests stay fast on 2 CPU cores."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from netmark._util import seeded
from netmark.claims import Opening
from netmark.data import ArrayDataset, load
from netmark.identity import Identity
from netmark.models import build
from netmark.training import TrainConfig

#: torch threads of every test, whether run alone, in a worker of `make test` (one per core) or on another machine:
#: float reductions are summed in a thread-count-dependent order, and a few hundred SGD steps amplify that last-bit
#: difference into accuracies that differ by percentage points (issue 18: a bound held alone and failed in CI)
TEST_THREADS = 1
torch.set_num_threads(TEST_THREADS)


def _test_seed(nodeid: str) -> int:
    return int.from_bytes(hashlib.sha256(nodeid.encode()).digest()[:4], "little")


def _seed_globals(nodeid: str) -> None:
    seed = _test_seed(nodeid)
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    torch.set_num_threads(TEST_THREADS)


@pytest.fixture(scope="module", autouse=True)
def _isolated_module_state(request: pytest.FixtureRequest):
    """The same for module-scoped fixtures (they are set up before the first test of their module that needs
    them, so after whatever test ran before): seeded from the module's id."""
    _seed_globals(request.node.nodeid)
    yield


@pytest.fixture(autouse=True)
def _isolated_global_state(request: pytest.FixtureRequest):
    """Every test starts from the same global state whatever ran before it in the process: torch's, numpy's and
    Python's global RNGs seeded from the test's own id (a test that draws `torch.rand(...)` without a generator gets
    the same numbers alone, in any order, on any worker), and TEST_THREADS torch threads. netmark itself never
    draws from a global RNG (tests/test_determinism.py); this fixture covers the tests' own draws."""
    _seed_globals(request.node.nodeid)
    yield
    torch.set_num_threads(TEST_THREADS)


#: the longest test files (a reproduction or a subprocess run shared by the module), started first: `make test`
#: hands whole files to its 2 workers in collection order, and a long file picked up last leaves a core idle
LONG_FILES = ("test_experiments_wang.py", "test_experiments_tartaglione.py", "test_experiments_uchida.py",
              "test_ddp.py", "test_experiments_chen_wu.py", "test_evaluation.py", "test_experiments_cache.py",
              "test_methods.py", "test_experiments_fkirin.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))  # stable: the rest keep their order


@pytest.fixture(scope="session")
def digits_train() -> ArrayDataset:
    return load("digits", "train")


@pytest.fixture(scope="session")
def digits_test() -> ArrayDataset:
    return load("digits", "test")


@pytest.fixture()
def tiny_data() -> ArrayDataset:
    """64 random 1×8×8 images, 4 classes, labels a function of the mean brightness."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 8, 8, generator=g)
    y = (x.mean(dim=(1, 2, 3)) * 40).long() % 4
    return ArrayDataset(x, y, name="tiny", num_classes=4)


def fixed_identity(i: int) -> Identity:
    """Identity number ``i``, from fixed bytes (tests of claims are then a function of their own inputs)."""
    return Identity(Ed25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32))


def fixed_opening(i: int) -> Opening:
    return Opening(bytes([200 + i]) * 32)


def make_cnn(seed: int = 0, num_classes: int = 10) -> torch.nn.Module:
    with seeded(seed):
        return build("simple-cnn", in_channels=1, image_size=8, num_classes=num_classes)


@pytest.fixture()
def cnn() -> torch.nn.Module:
    return make_cnn()


FAST = TrainConfig(epochs=2, lr=0.05, batch_size=32, progress=False)


def two_valid_claims(d: Path, data: ArrayDataset) -> Path:
    """Two claims that both hold on one model: the owner marks a simple-cnn with his claimed Uchida key (12 epochs) and
    releases it; a thief fine-tunes his own claimed Uchida mark into it (8 epochs) and releases that. Writes into
    ``d``: ``owner`` / ``thief`` ``.safetensors`` (each party's original), ``.key``, ``.json``."""
    from netmark.claims import save_claim
    from netmark.io import save_model
    from netmark.methods import get_method
    from netmark.methods.examples import example
    from netmark.methods.ownership import claimed_key

    method = get_method("uchida")(example("uchida"))
    model = make_cnn(seed=0)
    for i, (name, epochs) in enumerate((("owner", 12), ("thief", 8))):
        key, claim = claimed_key(method, model, fixed_identity(i), opening=fixed_opening(i))
        model, key, _ = method.embed(model, data, TrainConfig(epochs=epochs, lr=0.05, seed=i, progress=False),
                                     key=key, warn=False)
        save_model(model, d / f"{name}.safetensors")
        key.save(d / f"{name}.key")
        save_claim(claim, d / f"{name}.json")
    return d
