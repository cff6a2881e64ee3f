"""Combined attacks (issue 23, item 3): registered attacks one after another, each step seeded seed + i and every
training step on the combination's schedule; bad combinations are refused with the step they concern."""

from __future__ import annotations

import pytest
import torch

from netmark.attacks import ATTACKS
from netmark.attacks.combined import CombinedConfig
from netmark.attacks.fine_pruning import FinePruningConfig
from netmark.attacks.prune import PruneConfig
from netmark.attacks.sok_finetune import SokFinetuneConfig
from netmark.errors import ConfigError
from netmark.training import TrainConfig
from tests.conftest import make_cnn

ONE = TrainConfig(epochs=1, lr=0.01, batch_size=64, seed=0, progress=False)


def same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_a_combination_is_its_steps_in_order(digits_train) -> None:
    model = make_cnn(seed=0).eval()
    steps = [{"attack": "prune", "config": {"rate": 0.3, "order": "random"}},
             {"attack": "sok-finetune", "config": {"mode": "rtal"}}]
    out = ATTACKS["combined"](CombinedConfig(steps=steps, train=ONE, seed=4))(model, digits_train)
    by_hand = ATTACKS["prune"](PruneConfig(rate=0.3, order="random", seed=4))(model)
    by_hand = ATTACKS["sok-finetune"](SokFinetuneConfig(mode="rtal", train=ONE, seed=5))(by_hand, digits_train)
    assert same(out, by_hand) and not same(out, model)
    swapped = ATTACKS["combined"](CombinedConfig(steps=steps[::-1], train=ONE, seed=4))(model, digits_train)
    assert not same(out, swapped)
    assert CombinedConfig(steps=steps, train=ONE).training_epochs() == 1


def test_the_default_is_fine_pruning_after_a_jpeg_filtered_extraction(digits_train) -> None:
    config = CombinedConfig(train=ONE)
    assert [s["attack"] for s in config.steps] == ["preprocess", "extraction", "fine-pruning"]
    assert config.training_epochs() == 2  # extraction and fine-pruning train on the combination's schedule
    assert isinstance(config.step_configs()[2][1], FinePruningConfig)
    model = make_cnn(seed=0).eval()
    out = ATTACKS["combined"](config)(model, digits_train)
    assert type(out) is type(model) and not same(out, model)  # a fresh model of the architecture, unwrapped


@pytest.mark.parametrize("steps", [[], [{"attack": "combined"}], [{"attack": "nope"}], [{"attack": "prune", "x": 1}],
                                   [{"attack": "prune", "config": {"rate": 2.0}}],
                                   [{"attack": "sok-finetune", "config": {"train": {}}}], ["prune"],
                                   [{"attack": "prune"}] * 9])
def test_a_bad_combination_is_refused(steps: list) -> None:
    with pytest.raises(ConfigError):
        CombinedConfig(steps=steps)
