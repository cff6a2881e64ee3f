"""Export and adapter round trips as attacks (issue 22, item 6): ONNX export (fp32 lossless, fp16 rounds; an export
that changes a weight's values is refused; renamed transformer weights are read back: tests/test_hf_models.py),
torch.ao dynamic quantization of the Linear layers (int8, float16), and LoRA fine-tuning merged into the base (peft);
a Uchida mark in a tiny MLP survives each."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from netmark._util import seeded
from netmark.attacks import ATTACKS
from netmark.attacks.roundtrip import roundtrip_tensor
from netmark.data import ArrayDataset
from netmark.errors import ArchitectureError, ConfigError
from netmark.methods import get_method
from netmark.methods.uchida import UchidaConfig
from netmark.models import arch_of, build
from netmark.training import TrainConfig, evaluate

pytest.importorskip("onnx")


def lenet() -> torch.nn.Module:
    with seeded(0):
        return build("lenet5", in_channels=1, image_size=8, num_classes=10, padding=2).eval()


def test_onnx_export_in_fp32_is_lossless_and_fp16_rounds_every_weight() -> None:
    model = lenet()
    exact = ATTACKS["onnx-export"](ATTACKS["onnx-export"].config_cls(dtype="fp32"))(model)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), exact.state_dict().values(), strict=True))
    half = ATTACKS["onnx-export"](ATTACKS["onnx-export"].config_cls())(model)
    for k, v in model.state_dict().items():
        assert torch.equal(half.state_dict()[k], roundtrip_tensor(v, "fp16")), k


def test_onnx_export_refuses_what_it_folds_and_needs_an_input_shape() -> None:
    with seeded(0):
        resnet = build("resnet20", in_channels=1, image_size=8, num_classes=10).eval()
    with pytest.raises(ArchitectureError, match="changed"):
        ATTACKS["onnx-export"](ATTACKS["onnx-export"].config_cls(dtype="fp32"))(resnet)
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    with pytest.raises(ConfigError, match="input_shape"):
        ATTACKS["onnx-export"](ATTACKS["onnx-export"].config_cls())(plain)
    out = ATTACKS["onnx-export"](ATTACKS["onnx-export"].config_cls(input_shape=[1, 8, 8], dtype="fp32"))(plain)
    assert torch.equal(out[1].weight, plain[1].weight)
    for bad in ({"dtype": "int4"}, {"opset": 3}, {"input_shape": [0, 8]}):
        with pytest.raises(ConfigError):
            ATTACKS["onnx-export"].config_cls(**bad)


def test_int8_dynamic_in_float16_rounds_the_linear_weights_to_half_precision() -> None:
    model = lenet()
    out = ATTACKS["int8-dynamic"](ATTACKS["int8-dynamic"].config_cls(dtype="float16"))(model)
    w, q = model.state_dict()["fc1.weight"], out.state_dict()["fc1.weight"]
    assert not torch.equal(w, q) and torch.equal(q, w.half().float())
    with pytest.raises(ConfigError, match="dtype"):
        ATTACKS["int8-dynamic"].config_cls(dtype="int4")


def test_int8_dynamic_quantizes_linear_weights_only() -> None:
    model = lenet()
    out = ATTACKS["int8-dynamic"](ATTACKS["int8-dynamic"].config_cls())(model)
    before, after = model.state_dict(), out.state_dict()
    assert torch.equal(before["conv1.weight"], after["conv1.weight"]) and torch.equal(before["fc1.bias"],
                                                                                       after["fc1.bias"])
    w, q = before["fc1.weight"], after["fc1.weight"]
    step = float(w.max() - w.min()) / 255
    assert not torch.equal(w, q) and float((w - q).abs().max()) <= step / 2 + 1e-6
    assert torch.unique(q).numel() <= 256


@pytest.fixture(scope="module")
def marked(digits_train: ArrayDataset):
    with seeded(0):
        model = build("mlp", in_channels=1, image_size=8, num_classes=10, hidden=[64, 32])
    method = get_method("uchida")(UchidaConfig(layer="fc2", bits=32))
    model, key, _ = method.embed(model, digits_train, TrainConfig(epochs=8, lr=0.05, seed=0, progress=False), seed=1,
                                 warn=False)
    return method, model.eval(), key


def test_lora_moves_the_hidden_weights_by_a_low_rank_update_and_keeps_the_head(marked, digits_train) -> None:
    pytest.importorskip("peft")
    method, model, key = marked
    cfg = replace(ATTACKS["lora"].example_config(), seed=3)
    out = ATTACKS["lora"](cfg)(model, digits_train)
    before, after = model.state_dict(), out.state_dict()
    assert list(before) == list(after) and arch_of(out) == arch_of(model)
    delta = after["fc1.weight"] - before["fc1.weight"]
    assert float(delta.abs().max()) > 0 and int(torch.linalg.matrix_rank(delta)) <= cfg.rank
    assert torch.equal(before["fc3.weight"], after["fc3.weight"])  # the output head is not a default target
    assert evaluate(out, digits_train)["accuracy"] > 0.8
    again = ATTACKS["lora"](cfg)(model, digits_train)
    assert all(torch.equal(a, b) for a, b in zip(out.state_dict().values(), again.state_dict().values(), strict=True))
    with pytest.raises(ConfigError, match="not layers"):
        ATTACKS["lora"](replace(cfg, targets=["fc9"]))(model, digits_train)


@pytest.mark.parametrize("attack", ["onnx-export", "int8-dynamic", "lora"])
def test_a_uchida_mark_survives_each_round_trip(marked, attack: str, digits_train) -> None:
    if attack == "lora":
        pytest.importorskip("peft")
    method, model, key = marked
    cls = ATTACKS[attack]
    cfg = cls.example_config() if attack == "lora" else cls.config_cls()
    out = cls(cfg)(model, digits_train if cls.needs_data else None)
    assert method.verify(out, key).detected
