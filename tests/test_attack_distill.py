"""The distillation attack: a fresh student of the victim's architecture learns the victim's soft predictions."""

from __future__ import annotations

import pytest
import torch

from netmark._util import seeded
from netmark.attacks import ATTACKS, Distill, DistillConfig, distill
from netmark.attacks.distill import distill_loss
from netmark.data import ArrayDataset
from netmark.errors import ConfigError
from netmark.models import arch_of, build
from netmark.training import TrainConfig, evaluate, train


def _mlp(seed: int) -> torch.nn.Module:
    with seeded(seed):
        return build("mlp", in_channels=1, image_size=8, num_classes=10)


@pytest.fixture(scope="module")
def teacher(digits_train) -> torch.nn.Module:
    model = _mlp(0)
    train(model, digits_train, TrainConfig(epochs=8, optimizer="adam", lr=3e-3, progress=False))
    return model


def test_registered() -> None:
    assert ATTACKS["distill"] is Distill and Distill.needs_data


def test_student_learns_the_teachers_outputs(teacher, digits_train, digits_test) -> None:
    g = torch.Generator().manual_seed(0)
    unlabelled = ArrayDataset(digits_train.x, torch.randint(0, 10, (len(digits_train),), generator=g),
                              name="digits-garbage-labels", num_classes=10)  # labels are ignored
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = distill(teacher, unlabelled, DistillConfig(epochs=8, lr=3e-3, temperature=4.0, seed=3))
    assert student is not teacher and not student.training
    assert arch_of(student) == arch_of(teacher)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())  # the victim is untouched
    assert not torch.equal(student.fc1.weight, teacher.fc1.weight)  # a fresh model, not a copy
    with torch.no_grad():
        agree = (student(digits_test.x).argmax(1) == teacher(digits_test.x).argmax(1)).float().mean()
    assert agree > 0.85
    assert evaluate(student, digits_test)["accuracy"] > 0.8


def test_seeded_and_reproducible(teacher, digits_train) -> None:
    small = digits_train.subset(range(200))
    a = distill(teacher, small, DistillConfig(epochs=1, seed=5))
    b = distill(teacher, small, DistillConfig(epochs=1, seed=5))
    c = distill(teacher, small, DistillConfig(epochs=1, seed=6))
    assert torch.equal(a.fc1.weight, b.fc1.weight)
    assert not torch.equal(a.fc1.weight, c.fc1.weight)


def test_loss_is_zero_on_the_teachers_logits_and_scaled_by_t_squared() -> None:
    z = torch.randn(8, 10)
    assert float(distill_loss(z, z, 4.0)) == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(8, 10)
    big, small = float(distill_loss(other * 10, z * 10, 10.0)), float(distill_loss(other, z, 1.0))
    assert big == pytest.approx(100 * small, rel=1e-4)  # same softened distributions, T² = 100


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"epochs": 1.5}, {"lr": 0.0}, {"lr": float("nan")},
                                 {"temperature": 0}, {"temperature": -1.0}, {"batch_size": 0},
                                 {"optimizer": "lbfgs"}])
def test_bad_config_raises(bad) -> None:
    with pytest.raises(ConfigError):
        DistillConfig(**bad)


def test_needs_data(teacher) -> None:
    with pytest.raises(ConfigError, match="needs"):
        Distill(DistillConfig(epochs=1))(teacher)
