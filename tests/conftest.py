"""Shared fixtures: tiny data and models so unit tests stay fast on 2 CPU cores."""

from __future__ import annotations

import os

import pytest
import torch

from netmark._util import seeded
from netmark.data import ArrayDataset, load
from netmark.models import build
from netmark.training import TrainConfig

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs one pytest worker per core: one torch thread each
    torch.set_num_threads(1)

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


def make_cnn(seed: int = 0, num_classes: int = 10) -> torch.nn.Module:
    with seeded(seed):
        return build("simple-cnn", in_channels=1, image_size=8, num_classes=num_classes)


@pytest.fixture()
def cnn() -> torch.nn.Module:
    return make_cnn()


FAST = TrainConfig(epochs=2, lr=0.05, batch_size=32, progress=False)
