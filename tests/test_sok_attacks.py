"""The SoK's fine-tuning variants and fine-pruning (issue 23, item 1, first part): FTLL retrains the head only, RTAL
re-initialises it first, label smoothing changes the loss, fine-pruning removes the units dormant on clean data and
keeps them removed; each is reproducible from its seed."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from netmark.attacks import ATTACKS
from netmark.attacks.fine_pruning import FinePruningConfig, mean_activations
from netmark.attacks.sok_finetune import LabelSmoothing, SokFinetuneConfig
from netmark.errors import ConfigError
from netmark.training import TrainConfig
from tests.conftest import make_cnn

ONE = TrainConfig(epochs=1, lr=0.01, batch_size=64, seed=0, progress=False)


def changed(a: torch.nn.Module, b: torch.nn.Module) -> set[str]:
    sa, sb = a.state_dict(), b.state_dict()
    return {k for k in sa if not torch.equal(sa[k], sb[k])}


def test_ftll_moves_only_the_head_and_rtal_starts_from_a_new_one(digits_train) -> None:
    model = make_cnn(seed=0).eval()
    ftll = ATTACKS["sok-finetune"](SokFinetuneConfig(mode="ftll", train=ONE, seed=1))(model, digits_train)
    assert changed(model, ftll) == {"fc2.weight", "fc2.bias"}
    ftal = ATTACKS["sok-finetune"](SokFinetuneConfig(mode="ftal", train=replace(ONE, epochs=0), seed=1))(
        model, digits_train)
    assert not changed(model, ftal)  # 0 epochs: nothing moves
    rtal0 = ATTACKS["sok-finetune"](SokFinetuneConfig(mode="rtal", train=replace(ONE, epochs=0), seed=1))(
        model, digits_train)
    assert changed(model, rtal0) == {"fc2.weight", "fc2.bias"}  # re-initialised, nothing trained yet
    rtal = ATTACKS["sok-finetune"](SokFinetuneConfig(mode="rtal", train=ONE, seed=1))(model, digits_train)
    assert {"conv1.weight", "fc2.weight"} <= changed(model, rtal)
    again = ATTACKS["sok-finetune"](SokFinetuneConfig(mode="rtal", train=ONE, seed=1))(model, digits_train)
    assert not changed(rtal, again)


def test_a_large_learning_rate_is_the_schedule_s_rate_times_lr_factor(digits_train) -> None:
    """lr_factor=10 trains exactly as a schedule with ten times the rate."""
    model = make_cnn(seed=0).eval()
    big = ATTACKS["sok-finetune"](SokFinetuneConfig(lr_factor=10.0, train=ONE, seed=1))(model, digits_train)
    same = ATTACKS["sok-finetune"](SokFinetuneConfig(train=replace(ONE, lr=0.1), seed=1))(model, digits_train)
    small = ATTACKS["sok-finetune"](SokFinetuneConfig(train=ONE, seed=1))(model, digits_train)
    assert not changed(big, same) and changed(big, small)


def test_label_smoothing_is_the_smoothed_cross_entropy() -> None:
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    y = torch.tensor([0, 2])
    eps = 0.2
    ce = torch.nn.functional.cross_entropy(logits, y)
    total = ce + LabelSmoothing(eps).extra_loss(torch.nn.Identity(), logits, y, logits)["label_smoothing"]
    assert torch.allclose(total, torch.nn.functional.cross_entropy(logits, y, label_smoothing=eps))
    for bad in ({"mode": "ftxx"}, {"label_smoothing": 1.0}, {"label_smoothing": -0.1}, {"lr_factor": 0}):
        with pytest.raises(ConfigError):
            SokFinetuneConfig(**bad)  # type: ignore[arg-type]


def test_fine_pruning_removes_the_dormant_units_and_keeps_them_removed(digits_train) -> None:
    model = make_cnn(seed=0).eval()
    act = mean_activations(model, "fc1", digits_train)
    k = int(0.5 * len(act))
    dormant = torch.argsort(act, stable=True)[:k]
    pruned = ATTACKS["fine-pruning"](FinePruningConfig(rate=0.5, train=ONE, seed=2))(model, digits_train)
    w = pruned.state_dict()["fc1.weight"]
    assert bool((w[dormant] == 0).all()) and int((w.abs().sum(1) == 0).sum()) == k
    assert changed(model, pruned) >= {"fc1.weight", "conv1.weight"}  # fine-tuned after pruning
    again = ATTACKS["fine-pruning"](FinePruningConfig(rate=0.5, train=ONE, seed=2))(model, digits_train)
    assert not changed(pruned, again)
    with pytest.raises(ConfigError, match="no Conv2d/Linear layer"):
        ATTACKS["fine-pruning"](FinePruningConfig(layer="pool"))(model, digits_train)
    with pytest.raises(ConfigError):
        FinePruningConfig(rate=1.0)
