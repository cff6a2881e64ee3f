from __future__ import annotations

import math

import pytest
import torch

from netmark.methods import false_positive_rate
from netmark.methods.uchida import Uchida, UchidaConfig
from netmark.verify import (
    DEFAULT_ALPHA,
    binomial_tail,
    bit_match_result,
    log10_binomial_tail,
    min_matches,
)
from tests.conftest import make_cnn


def test_binomial_tail_exact_small_cases() -> None:
    assert binomial_tail(4, 4) == pytest.approx(1 / 16)
    assert binomial_tail(3, 4) == pytest.approx(5 / 16)
    assert binomial_tail(0, 4) == 1.0
    assert log10_binomial_tail(5, 4) == -math.inf
    assert binomial_tail(256, 256) == pytest.approx(2.0**-256, rel=1e-9)


def test_min_matches_is_the_decision_boundary() -> None:
    k = min_matches(256)
    assert k == 167
    assert binomial_tail(k, 256) <= DEFAULT_ALPHA < binomial_tail(k - 1, 256)
    assert min_matches(19) is None and min_matches(20) == 20


def test_bit_match_result_fields() -> None:
    msg = torch.tensor([1, 0] * 32)
    res = bit_match_result(msg.clone(), msg, method="x")
    assert res.detected and res.bit_error_rate == 0.0 and res.matched_bits == 64 and res.score == 1.0
    flipped = msg.clone()
    flipped[:20] = 1 - flipped[:20]
    res2 = bit_match_result(flipped, msg, method="x")
    assert res2.matched_bits == 44 and not res2.detected
    assert res2.p_value == pytest.approx(binomial_tail(44, 64))
    assert set(res2.to_dict()) >= {"detected", "p_value", "bit_error_rate", "method", "threshold", "score"}


def test_null_distribution_is_fair_coin_for_random_keys() -> None:
    """Independent keys against one fixed model: matches ~ Binomial(T, 1/2), nothing detected."""
    model = make_cnn(seed=3)
    meth = Uchida(UchidaConfig(layer="conv2", bits=128))
    fracs, detected = [], 0
    for seed in range(200):
        key = meth.create_key(model, seed=seed)
        res = meth.verify(model, key)
        fracs.append(res.score)
        detected += res.detected
    mean = sum(fracs) / len(fracs)
    assert detected == 0
    assert abs(mean - 0.5) < 4 * 0.5 / math.sqrt(128 * 200)


def test_false_positive_rate_helper(cnn) -> None:
    key = Uchida(UchidaConfig(layer="conv2", bits=64)).create_key(cnn, seed=1)
    rep = false_positive_rate([make_cnn(seed=s) for s in range(5)], key)
    assert rep.n_models == 5 and rep.n_detected == 0 and rep.rate == 0.0
    assert rep.total_bits == 64 and 0 < rep.max_matched_bits < 51
    with pytest.raises(ValueError):
        false_positive_rate([], key)
