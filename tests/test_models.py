"""Tests for the model registry (netmark.models): shapes, rebuild from arch_of, validation."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from netmark.errors import ArchitectureError, NetmarkError
from netmark.models import (
    MODELS,
    arch_of,
    available,
    build,
    conv_and_linear_layers,
    get_layer,
    host_layer,
    register,
)
from netmark.models import registry as registry_module

# Smallest sensible family args per model, to keep the suite fast on 2 CPUs.
SMALL = {
    "vgg16": {"width": 0.125},
    "wrn": {"depth": 10, "widen": 1},
    "resnet": {"depth": 8},
    "all-cnn-c": {"width": 0.125},
}

EXPECTED = {"mlp", "lenet5", "simple-cnn", "vgg16", "wrn", "resnet", "resnet20", "resnet32", "all-cnn-c"}


def small(name: str, **kwargs: object) -> nn.Module:
    return build(name, **SMALL.get(name, {}), **kwargs)


def test_available_is_sorted_and_complete() -> None:
    names = available()
    assert names == sorted(names)
    assert set(names) >= EXPECTED
    assert set(names) == set(MODELS)


@pytest.mark.parametrize("name", available())
def test_spec_metadata(name: str) -> None:
    spec = MODELS[name]
    assert spec.name == name
    assert spec.summary and "\n" not in spec.summary
    assert spec.paper
    # The typical host layer exists and can host a weight watermark (a conv/linear layer; GPT-2's Conv1D).
    assert host_layer(small(name), spec.host_layer) is not None


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)], ids=["1x28x28", "3x32x32"])
@pytest.mark.parametrize("name", available())
def test_forward_shape(name: str, shape: tuple[int, int, int]) -> None:
    c, h, _ = shape
    model = small(name, in_channels=c, image_size=h, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *shape))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", available())
def test_rebuild_from_arch_of(name: str) -> None:
    model = small(name, in_channels=1, image_size=28, num_classes=5)
    arch = arch_of(model)
    assert arch["name"] == name
    assert set(arch["args"]) == set(MODELS[name].defaults())  # every arg, defaults included
    restored = json.loads(json.dumps(arch))  # JSON-serialisable, round-trips exactly
    assert restored == arch
    rebuilt = build(**restored)
    assert arch_of(rebuilt) == arch
    original = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    again = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    assert again == original
    rebuilt.load_state_dict(model.state_dict())  # strict load works


@pytest.mark.parametrize("name", available())
def test_build_is_deterministic_given_seed(name: str) -> None:
    torch.manual_seed(123)
    a = small(name).state_dict()
    torch.manual_seed(123)
    b = small(name).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_arch_of_records_defaults_and_coerces_floats() -> None:
    assert arch_of(build("lenet5")) == {
        "name": "lenet5",
        "args": {"in_channels": 1, "image_size": 28, "num_classes": 10, "padding": 0},
    }
    args = arch_of(build("vgg16", width=1))["args"]  # int given for a float arg
    assert args["width"] == 1.0 and isinstance(args["width"], float)
    assert arch_of(build("mlp", hidden=(32, 16)))["args"]["hidden"] == [32, 16]


def test_arch_of_returns_a_copy() -> None:
    model = build("mlp", hidden=[8])
    arch_of(model)["args"]["hidden"].append(99)
    assert arch_of(model)["args"]["hidden"] == [8]


def test_arch_of_rejects_foreign_module() -> None:
    with pytest.raises(ArchitectureError, match="not built by netmark"):
        arch_of(nn.Linear(2, 2))


def test_unknown_model() -> None:
    with pytest.raises(ArchitectureError, match=r"unknown model 'lenet9'.*lenet5"):
        build("lenet9")
    assert issubclass(ArchitectureError, NetmarkError)


def test_unknown_argument_names_valid_ones() -> None:
    with pytest.raises(ArchitectureError, match=r"'widht'.*valid arguments: .*padding"):
        build("lenet5", widht=2)


def test_argument_given_twice() -> None:
    with pytest.raises(ArchitectureError, match="given twice"):
        build("lenet5", args={"padding": 2}, padding=2)


@pytest.mark.parametrize(
    ("name", "kwargs", "pattern"),
    [
        ("lenet5", {"in_channels": 0}, "'in_channels' must be >= 1"),
        ("lenet5", {"image_size": "28"}, "'image_size' must be an int"),
        ("lenet5", {"num_classes": True}, "'num_classes' must be an int"),
        ("lenet5", {"num_classes": 2.0}, "'num_classes' must be an int"),
        ("lenet5", {"padding": -1}, "'padding' must be >= 0"),
        ("mlp", {"hidden": []}, "'hidden' must be a non-empty list"),
        ("mlp", {"hidden": [16, 0]}, "'hidden' must be >= 1"),
        ("mlp", {"hidden": "64"}, "'hidden' must be int or list"),
        ("vgg16", {"width": -0.5}, "'width' must be > 0"),
        ("vgg16", {"width": float("nan")}, "'width' must be a finite number"),
        ("simple-cnn", {"dropout": 1.0}, r"'dropout' must be in \[0, 1\)"),
        ("all-cnn-c", {"input_dropout": -0.1}, r"'input_dropout' must be in \[0, 1\)"),
        ("wrn", {"widen": 0}, "'widen' must be >= 1"),
    ],
)
def test_invalid_argument_values(name: str, kwargs: dict[str, object], pattern: str) -> None:
    with pytest.raises(ArchitectureError, match=pattern):
        build(name, **kwargs)


@pytest.mark.parametrize("depth", [4, 12, 17])
def test_wrn_bad_depth(depth: int) -> None:
    with pytest.raises(ArchitectureError, match=r"depth must be 6n\+4"):
        build("wrn", depth=depth, widen=1)


@pytest.mark.parametrize("depth", [2, 21])
def test_resnet_bad_depth(depth: int) -> None:
    with pytest.raises(ArchitectureError, match=r"depth must be 6n\+2"):
        build("resnet", depth=depth)


def test_wrn_host_layers_match_uchida_parameter_counts() -> None:
    model = build("wrn", depth=10, widen=4)
    # Uchida et al. Sec. 4.3: M = S*S*D = 576 / 1152 / 2304 for the conv 2 / conv 3 / conv 4 groups.
    for group, m in (("conv2", 576), ("conv3", 1152), ("conv4", 2304)):
        layer = get_layer(model, f"{group}.0.conv2")
        assert isinstance(layer, nn.Conv2d)
        assert layer.kernel_size == (3, 3)
        assert layer.weight[0].numel() == m  # S * S * D for one output filter
    assert arch_of(build("wrn"))["args"]["depth"] == 10  # WRN-10-4 (N = 1, k = 4) by default


def test_wrn_depth_gives_blocks_per_group() -> None:
    model = build("wrn", depth=16, widen=1)
    assert [len(model.conv2), len(model.conv3), len(model.conv4)] == [2, 2, 2]


def test_resnet_depths() -> None:
    # depth counts conv layers + the final fc; option-A shortcuts add no weights.
    assert len(conv_and_linear_layers(build("resnet20"))) == 20
    assert len(conv_and_linear_layers(build("resnet32"))) == 32
    assert len(conv_and_linear_layers(build("resnet", depth=8))) == 8
    a, b = build("resnet20").state_dict(), build("resnet", depth=20).state_dict()
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}


def test_lenet5_flattened_size_from_image_size() -> None:
    assert get_layer(build("lenet5"), "fc1").in_features == 50 * 4 * 4
    assert get_layer(build("lenet5", image_size=32), "fc1").in_features == 50 * 5 * 5


def test_lenet5_on_8x8_needs_padding() -> None:
    with pytest.raises(ArchitectureError, match=r"8x8.*below 1x1"):
        build("lenet5", image_size=8)
    model = build("lenet5", image_size=8, padding=2).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_simple_cnn_on_8x8_digits() -> None:
    model = build("simple-cnn", image_size=8).eval()
    assert get_layer(model, "fc1").in_features == 64 * 2 * 2
    with torch.no_grad():
        assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(ArchitectureError, match="below 1x1"):
        build("simple-cnn", image_size=3)


def test_all_cnn_c_too_small_input() -> None:
    with pytest.raises(ArchitectureError, match="conv7"):
        build("all-cnn-c", image_size=8, width=0.125)


def test_mlp_layers() -> None:
    layers = conv_and_linear_layers(build("mlp"))
    assert list(layers) == ["fc1", "fc2"]
    assert (layers["fc1"].in_features, layers["fc1"].out_features) == (784, 64)
    assert (layers["fc2"].in_features, layers["fc2"].out_features) == (64, 10)
    deep = conv_and_linear_layers(build("mlp", hidden=[32, 16], num_classes=3))
    assert list(deep) == ["fc1", "fc2", "fc3"]
    assert deep["fc3"].out_features == 3


def test_conv_and_linear_layers_names() -> None:
    assert list(conv_and_linear_layers(build("lenet5"))) == ["conv1", "conv2", "fc1", "fc2"]
    assert list(conv_and_linear_layers(build("simple-cnn"))) == ["conv1", "conv2", "fc1", "fc2"]
    vgg = conv_and_linear_layers(build("vgg16", width=0.125))
    assert sum(isinstance(m, nn.Conv2d) for m in vgg.values()) == 13
    assert get_layer(build("vgg16"), "features.conv1_1").weight[0].numel() == 27  # Wang: 27*64 = 1728


def test_get_layer_error_lists_layers() -> None:
    model = build("lenet5")
    with pytest.raises(ArchitectureError) as info:
        get_layer(model, "conv9")
    assert (
        str(info.value) == "model 'lenet5' has no layer 'conv9'; conv/linear layers: conv1, conv2, fc1, fc2"
    )
    assert get_layer(model, "conv2") is model.conv2


def test_register_rejects_bad_builders() -> None:
    with pytest.raises(ArchitectureError, match="already registered"):
        register("lenet5", summary="x", paper="x", host_layer="x")(lambda: nn.Identity())

    def no_common(width: int = 1) -> nn.Module:
        return nn.Identity()

    with pytest.raises(ArchitectureError, match="must take keyword args"):
        register("broken", summary="x", paper="x", host_layer="x")(no_common)
    assert "broken" not in MODELS


def test_register_new_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "MODELS", dict(MODELS))

    @registry_module.register("tiny", summary="tiny", paper="none", host_layer="fc")
    def tiny(in_channels: int = 1, image_size: int = 4, num_classes: int = 2) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size**2, num_classes))

    model = registry_module.build("tiny", image_size=3)
    assert arch_of(model) == {"name": "tiny", "args": {"in_channels": 1, "image_size": 3, "num_classes": 2}}
    assert "tiny" in registry_module.available()
    assert "tiny" not in MODELS


# ---------------------------------------------------------------- the size bound (issue 18, item 7)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_meta_count_matches_the_real_model_and_draws_no_random_numbers(name: str) -> None:
    from netmark.models.registry import param_count, skeleton

    args = {"in_channels": 1, "image_size": 28, "num_classes": 10, **SMALL.get(name, {})}
    state = torch.random.get_rng_state()
    n = param_count(name, **args)
    meta = skeleton(name, **args)
    assert torch.equal(state, torch.random.get_rng_state())  # build(...) under seeded(s) gives the same weights
    real = build(name, **args)
    assert n == sum(t.numel() for t in (*real.parameters(), *real.buffers()))
    assert all(t.is_meta for t in meta.state_dict().values())
    assert {k: v.shape for k, v in meta.state_dict().items()} == {k: v.shape for k, v in real.state_dict().items()}
    assert arch_of(meta) == arch_of(real)


@pytest.mark.parametrize(("name", "args", "match"), [
    ("mlp", {"num_classes": 10**15}, "over the limit of 200,000,000"),
    ("mlp", {"hidden": 10**12}, "over the limit"),
    ("simple-cnn", {"image_size": 10**6}, "over the limit"),
    ("mlp", {"hidden": [4096] * 60}, "993,353,738 parameters"),
    ("mlp", {"num_classes": 10**15, "hidden": 10**12}, "impossible size"),
    ("mlp", {"hidden": [8] * 1001}, "at most 1000"),
])
def test_absurd_arguments_are_refused_before_building(name: str, args: dict, match: str) -> None:
    import time

    t0 = time.perf_counter()
    with pytest.raises(ArchitectureError, match=match):
        build(name, **args)
    assert time.perf_counter() - t0 < 1.0  # a real build of these would take seconds to forever


def test_max_params_is_reserved() -> None:
    with pytest.raises(ArchitectureError, match="reserved"):
        @register("bad-max-params", summary="", paper="", host_layer="fc")
        def _bad(in_channels: int = 1, image_size: int = 8, num_classes: int = 10, max_params: int = 1) -> nn.Module:
            return nn.Linear(1, 1)
