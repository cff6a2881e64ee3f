"""Shared white-box metrics: Wang et al. 2020 Eq. 2 histogram correlation (Tables 7-8)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from netmark.errors import ArchitectureError, ConfigError
from netmark.metrics import histogram_correlation, histogram_correlation_matrix, weight_histograms
from tests.conftest import make_cnn


def test_common_bins_of_width_0_1_anchored_at_zero() -> None:
    h1, h2, edges = weight_histograms(torch.tensor([-0.05, 0.0, 0.04, 0.15]), torch.tensor([0.31]))
    assert torch.allclose(edges, torch.tensor([-0.1, 0.0, 0.1, 0.2, 0.3, 0.4], dtype=torch.float64))
    assert h1.tolist() == [1, 2, 1, 0, 0] and h2.tolist() == [0, 0, 0, 0, 1]


def test_eq_2_is_pearson_over_bins() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(500, generator=g) * 0.3, torch.randn(800, generator=g) * 0.2 + 0.1
    h1, h2, _ = weight_histograms(a, b)
    d1, d2 = h1 - h1.mean(), h2 - h2.mean()
    manual = float((d1 * d2).sum() / ((d1 * d1).sum() * (d2 * d2).sum()).sqrt())
    assert histogram_correlation(a, b) == pytest.approx(manual, abs=1e-12)
    assert histogram_correlation(a, b) == pytest.approx(histogram_correlation(b, a), abs=1e-12)
    assert histogram_correlation(a, 3 * a) < 0.9  # a wider distribution spreads over other bins


def test_models_identical_vs_different() -> None:
    m0 = make_cnn(seed=0)
    assert histogram_correlation(m0, copy.deepcopy(m0), layer="conv1") == pytest.approx(1.0)
    shifted = copy.deepcopy(m0)
    with torch.no_grad():
        shifted.conv1.weight.mul_(4.0)
    assert histogram_correlation(m0, shifted, layer="conv1") < 0.9
    table = histogram_correlation_matrix({"a": m0, "b": shifted, "c": make_cnn(seed=1)}, layer="conv1")
    assert table["a"]["a"] == pytest.approx(1.0) and table["a"]["b"] == pytest.approx(table["b"]["a"])
    assert table["a"]["c"] < 1.0


def test_bad_inputs() -> None:
    m = make_cnn(seed=0)
    with pytest.raises(ConfigError, match="layer"):
        histogram_correlation(m, m)
    with pytest.raises(ArchitectureError):
        histogram_correlation(m, m, layer="nope")
    with pytest.raises(ConfigError):
        histogram_correlation(torch.tensor([1.0]), torch.tensor([float("nan")]))
    with pytest.raises(ConfigError):
        histogram_correlation(torch.ones(3), torch.ones(3), bin_width=0.0)
    assert math.isnan(histogram_correlation(torch.full((5,), 0.01), torch.full((3,), 0.02)))  # one bin: undefined
