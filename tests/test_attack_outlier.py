"""The outlier-reset attack: weights further than k·std from their tensor's mean are set to the mean."""

from __future__ import annotations

import math

import pytest
import torch

from netmark.attacks import ATTACKS, OutlierReset, OutlierResetConfig, outlier_reset_model
from netmark.attacks.outlier import outlier_reset
from netmark.errors import ConfigError
from tests.conftest import make_cnn


def test_outlier_reset_sets_far_entries_to_the_mean_and_leaves_the_rest() -> None:
    g = torch.Generator().manual_seed(0)
    t = torch.randn(10_000, generator=g) * 0.1
    t[:7] = torch.tensor([10.0, -10.0, 5.0, -3.0, 2.0, 1.0, 0.6])  # far outliers and some milder ones
    mean, std = float(t.double().mean()), float(t.double().std())
    out, n = outlier_reset(t, 4.0)
    far = (t.double() - mean).abs() > 4.0 * std
    assert n == int(far.sum()) and n >= 4
    assert torch.allclose(out[far], torch.full((n,), mean, dtype=out.dtype))
    assert torch.equal(out[~far], t[~far]) and out.dtype == t.dtype and t[0] == 10.0  # input untouched
    assert outlier_reset(t, 8.0)[1] < n  # a larger k resets fewer
    same, n_same = outlier_reset(torch.ones(5), 4.0)  # std 0: nothing is further than 0 from the mean
    assert n_same == 0 and torch.equal(same, torch.ones(5))
    assert outlier_reset(torch.tensor([3.0]), 1.0)[1] == 0


def test_outlier_reset_attack_is_registered_copies_the_model_and_counts() -> None:
    assert ATTACKS["outlier-reset"] is OutlierReset and not OutlierReset.needs_data
    model = make_cnn(seed=0)
    with torch.no_grad():
        model.fc1.weight.view(-1)[:3] = 10.0
    attack = OutlierReset(OutlierResetConfig(k=4.0))
    out = attack(model)
    assert float(model.fc1.weight.detach().view(-1)[0]) == 10.0  # the victim is not modified
    assert float(out.fc1.weight.detach().abs().max()) < 1.0 and attack.reset >= 3
    only = outlier_reset_model(model, k=4.0, layer="conv1")
    assert float(only.fc1.weight.detach().view(-1)[0]) == 10.0  # another layer: untouched


@pytest.mark.parametrize("k", [0, -1.0, math.inf, math.nan, True, "4"])
def test_bad_k_is_refused(k) -> None:
    with pytest.raises(ConfigError, match="k"):
        OutlierResetConfig(k=k)
