"""Compression attacks: Tartaglione et al. 2021's fixed point with LSB masking, and the fp16/bf16/int8 round trip."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from torch import nn

from netmark.attacks import (
    FixedPointConfig,
    RoundTripConfig,
    fixed_point,
    fixed_point_model,
    roundtrip,
)
from netmark.attacks.fixed_point import fixed_point_format
from netmark.attacks.roundtrip import roundtrip_tensor
from netmark.errors import ArchitectureError, ConfigError, ModelFileError
from tests.conftest import make_cnn


def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def _bn_net() -> nn.Module:
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3))
    net[1].running_mean.copy_(_randn(3, seed=1) * 0.3)
    net[1].running_var.copy_(_randn(3, seed=2).abs() + 0.7)
    return net


# ---------------------------------------------------------------- the fixed-point format
@pytest.mark.parametrize("peak,integer_bits", [(0.1, -3), (0.5, 0), (0.75, 0), (1.0, 1), (3.0, 2), (100.0, 7)])
def test_format_integer_bits_fit_the_largest_weight(peak: float, integer_bits: int) -> None:
    t = torch.tensor([peak / 3, -peak, 0.0])
    assert fixed_point_format(t, 8) == (integer_bits, 7 - integer_bits)
    assert peak < 2.0**integer_bits <= 2 * peak  # fits, with no wasted integer bit


def test_hand_made_values() -> None:
    t = torch.tensor([0.75, -0.5, 0.3, -0.3, 0.0, 0.1, -0.74])  # 4 bits: sign + I=0 + F=3, LSB 1/8
    assert torch.equal(fixed_point(t, 4), torch.tensor([0.75, -0.5, 0.25, -0.25, 0.0, 0.0, -0.625]))
    assert torch.equal(fixed_point(t, 4, "nearest"), torch.tensor([0.75, -0.5, 0.25, -0.25, 0.0, 0.125, -0.75]))
    # 2 bits = sign + one magnitude bit: {-1, 0, 1} · 2**(I-1); max 1.0 -> I=1, LSB 1
    assert torch.equal(fixed_point(torch.tensor([1.0, -1.0, 0.6, -0.99]), 2), torch.tensor([1.0, -1.0, 0.0, -0.0]))
    assert torch.equal(fixed_point(torch.tensor([1.0, 0.6]), 2, "nearest"), torch.tensor([1.0, 1.0]))


@pytest.mark.parametrize("bits", [2, 3, 5, 8, 12, 16, 24])
@pytest.mark.parametrize("integer_bits", [-5, 0, 3])
def test_representable_values_are_unchanged(bits: int, integer_bits: int) -> None:
    top = 2 ** (bits - 1) - 1
    codes = torch.randint(-top, top + 1, (50,), generator=torch.Generator().manual_seed(bits))
    codes[0] = top if bits > 2 else 1  # the largest code sets I: top·LSB < 2**I
    t = (codes.double() * 2.0 ** (integer_bits - bits + 1)).float()
    assert fixed_point_format(t, bits)[0] == integer_bits
    for rounding in ("mask", "nearest"):
        assert torch.equal(fixed_point(t, bits, rounding), t)


@pytest.mark.parametrize("bits", [2, 4, 7, 8, 16, 20])
def test_mask_is_literal_lsb_masking_of_a_long_fixed_point_code(bits: int) -> None:
    """Write each float exactly as a 33-fractional-bit code, zero the low bits with an integer AND."""
    w = _randn(300)
    w = torch.where(w.abs() < 1e-3, torch.full_like(w, 1e-3), w)  # float32 ulp >= 2**-33 everywhere
    long = 33
    code = (w.abs().double() * 2.0**long).to(torch.int64)
    assert torch.equal(code.double(), w.abs().double() * 2.0**long)  # exact
    _, frac = fixed_point_format(w, bits)
    drop = long - frac
    masked = code & ~((1 << drop) - 1)
    expect = (torch.sign(w).double() * masked.double() * 2.0**-long).float()
    assert torch.equal(fixed_point(w, bits), expect)


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8, 12, 16, 24, 32])
def test_error_is_below_one_lsb_and_mask_truncates_toward_zero(bits: int) -> None:
    w = _randn(500, seed=bits)
    lsb = 2.0 ** -fixed_point_format(w, bits)[1]
    m, n = fixed_point(w, bits).double(), fixed_point(w, bits, "nearest").double()
    wd = w.double()
    assert float((m - wd).abs().max()) < lsb
    assert bool((m.abs() <= wd.abs()).all()) and bool((m * wd >= 0).all())  # toward zero, never flips sign
    assert float((n - wd).abs().max()) <= lsb
    top = (2 ** (bits - 1) - 1) * lsb
    assert float((n - wd).abs()[n.abs() < top].max()) <= lsb / 2


@pytest.mark.parametrize("rounding", ["mask", "nearest"])
def test_sign_symmetric_and_new_tensor(rounding: str) -> None:
    w = _randn(4, 3, 3, 3)
    before = w.clone()
    out = fixed_point(w, 5, rounding)
    assert torch.equal(fixed_point(-w, 5, rounding), -out)
    assert out.shape == w.shape and out.dtype == w.dtype and torch.equal(w, before)


@pytest.mark.parametrize("rounding", ["mask", "nearest"])
def test_fewer_bits_never_smaller_error(rounding: str) -> None:
    w = _randn(400, seed=3)
    errs = [(fixed_point(w, b, rounding) - w).abs() for b in range(2, 33)]
    for coarse, fine in itertools.pairwise(errs):
        assert bool((fine <= coarse).all())  # elementwise: the finer grid contains the coarser one
    assert float(errs[0].mean()) > float(errs[6].mean()) > float(errs[14].mean())


def test_32_bits_is_identity_up_to_float_eps() -> None:
    w = _randn(1000, seed=4)
    peak = float(w.abs().max())
    assert float((fixed_point(w, 32) - w).abs().max()) <= 2.0**-30 * peak
    big = w[w.abs() > peak / 64]  # entries within 6 octaves of the max keep all 24 bits
    assert torch.equal(fixed_point(w, 32)[w.abs() > peak / 64], big)


def test_zero_empty_and_low_precision_dtypes() -> None:
    assert torch.equal(fixed_point(torch.zeros(5), 2), torch.zeros(5))
    assert fixed_point(torch.zeros(0), 8).numel() == 0
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        w = _randn(200, seed=5, dtype=dtype)
        for bits in (4, 8, 16):
            out = fixed_point(w, bits, "nearest")
            # the cast back to the input dtype is lossless
            assert out.dtype == dtype and torch.equal(out.double(), fixed_point(w.double(), bits, "nearest"))


@pytest.mark.parametrize("bad", [{"bits": 0}, {"bits": 1}, {"bits": 33}, {"bits": True}, {"bits": 8.0},
                                 {"bits": "8"}, {"rounding": "floor"}, {"rounding": "Mask"}])
def test_fixed_point_bad_config(bad) -> None:
    with pytest.raises(ConfigError):
        FixedPointConfig(**bad)
    with pytest.raises(ConfigError):
        fixed_point(torch.ones(3), bad.get("bits", 8), bad.get("rounding", "mask"))


def test_fixed_point_refuses_bad_tensors() -> None:
    with pytest.raises(ModelFileError, match="NaN/Inf"):
        fixed_point(torch.tensor([1.0, float("nan")]), 8)
    with pytest.raises(ConfigError, match="floating-point"):
        fixed_point(torch.arange(4), 8)


# ---------------------------------------------------------------- the fixed-point attack on models
def test_fixed_point_model_every_parameter_not_buffers() -> None:
    net = _bn_net()
    before = copy.deepcopy(net.state_dict())
    out = fixed_point_model(net, FixedPointConfig(bits=4))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # input untouched
    st = out.state_dict()
    for name, p in net.named_parameters():  # conv weight/bias and BatchNorm weight/bias
        assert torch.equal(st[name], fixed_point(p, 4))
    assert not torch.equal(st["0.weight"], before["0.weight"])
    for k in ("1.running_mean", "1.running_var", "1.num_batches_tracked"):
        assert torch.equal(st[k], before[k])
    with_buf = fixed_point_model(net, FixedPointConfig(bits=4, include_buffers=True)).state_dict()
    assert torch.equal(with_buf["1.running_mean"], fixed_point(before["1.running_mean"], 4))
    assert torch.equal(with_buf["1.running_var"], fixed_point(before["1.running_var"], 4))
    assert torch.equal(with_buf["1.num_batches_tracked"], before["1.num_batches_tracked"])


def test_fixed_point_one_layer(cnn) -> None:
    out = fixed_point_model(cnn, FixedPointConfig(bits=3, layer="conv2"))
    for k, v in cnn.state_dict().items():
        assert torch.equal(out.state_dict()[k], fixed_point(v, 3) if k.startswith("conv2.") else v)
    with pytest.raises(ArchitectureError, match="conv9"):
        fixed_point_model(cnn, FixedPointConfig(layer="conv9"))


@pytest.mark.parametrize("rounding", ["mask", "nearest"])
def test_fixed_point_models_stay_finite_and_degrade_with_fewer_bits(rounding: str, tiny_data) -> None:
    model = make_cnn(num_classes=4).eval()
    x = tiny_data.x[:32]
    with torch.no_grad():
        ref = model(x)
    w_err, outs = [], []
    for bits in (2, 4, 8, 16):
        out = fixed_point_model(model, FixedPointConfig(bits=bits, rounding=rounding))
        ref_state = model.state_dict()
        w_err.append(sum(float((v - ref_state[k]).pow(2).sum()) for k, v in out.state_dict().items()))
        with torch.no_grad():
            y = out(x)
        assert bool(torch.isfinite(y).all())
        outs.append(float((y - ref).abs().max()))
    assert w_err == sorted(w_err, reverse=True) and w_err[-1] > 0
    assert outs[0] > outs[2] > outs[3]  # 16 bits: tiny logit change, 2 bits: large


# ---------------------------------------------------------------- the fp16 / bf16 / int8 round trip
def test_int8_hand_made() -> None:
    t = torch.tensor([127.0, -3.4, 2.5, 0.49, -2.5, -127.0])  # scale 1; round half to even
    assert torch.equal(roundtrip_tensor(t, "int8"), torch.tensor([127.0, -3.0, 2.0, 0.0, -2.0, -127.0]))
    w = _randn(300, seed=6)
    scale = float(w.abs().max()) / 127
    q = roundtrip_tensor(w, "int8").double() / scale
    assert float((q - q.round()).abs().max()) < 1e-4 and float(q.abs().max()) <= 127 + 1e-4
    assert len(torch.unique(roundtrip_tensor(w, "int8"))) <= 255
    assert float((roundtrip_tensor(w, "int8") - w).abs().max()) <= scale / 2 * (1 + 1e-5)
    assert torch.equal(roundtrip_tensor(-w, "int8"), -roundtrip_tensor(w, "int8"))
    assert torch.equal(roundtrip_tensor(torch.zeros(4), "int8"), torch.zeros(4))


@pytest.mark.parametrize("dtype,torch_dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_half_precision_is_a_cast_there_and_back(dtype: str, torch_dtype: torch.dtype) -> None:
    w = _randn(300, seed=7)
    out = roundtrip_tensor(w, dtype)
    assert out.dtype == torch.float32 and torch.equal(out, w.to(torch_dtype).float())
    assert not torch.equal(out, w)
    w64 = _randn(10, seed=8, dtype=torch.float64)
    assert roundtrip_tensor(w64, dtype).dtype == torch.float64


def test_roundtrip_fp16_with_buffers_is_model_half() -> None:
    net = _bn_net()
    half = copy.deepcopy(net).half().float().state_dict()
    out = roundtrip(net, RoundTripConfig(dtype="fp16", include_buffers=True)).state_dict()
    assert all(torch.equal(out[k], v) for k, v in half.items())
    plain = roundtrip(net, RoundTripConfig(dtype="fp16")).state_dict()
    assert torch.equal(plain["1.running_mean"], net.state_dict()["1.running_mean"])


def test_roundtrip_one_layer_and_input_untouched(cnn) -> None:
    before = copy.deepcopy(cnn.state_dict())
    out = roundtrip(cnn, RoundTripConfig(dtype="int8", layer="fc1")).state_dict()
    assert all(torch.equal(before[k], v) for k, v in cnn.state_dict().items())
    for k, v in before.items():
        assert torch.equal(out[k], roundtrip_tensor(v, "int8") if k.startswith("fc1.") else v)


def test_roundtrip_errors_order_and_bad_inputs() -> None:
    w = _randn(1000, seed=9)
    err = {d: float((roundtrip_tensor(w, d) - w).abs().mean()) for d in ("fp16", "bf16", "int8")}
    assert 0 < err["fp16"] < err["bf16"] < err["int8"]
    with pytest.raises(ConfigError):
        RoundTripConfig(dtype="int4")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        roundtrip_tensor(w, "float16")
    with pytest.raises(ModelFileError):
        roundtrip_tensor(torch.tensor([float("inf")]), "int8")
    big = nn.Linear(2, 2)
    with torch.no_grad():
        big.weight.fill_(1e5)  # beyond fp16's 65504
    with pytest.raises(ModelFileError, match="NaN/Inf"):
        roundtrip(big, RoundTripConfig(dtype="fp16"))
