"""Function-preserving obfuscation attacks (issue 21, item 1): `permute`, `rescale` and `dummy-neurons` (both modes)
keep every registry architecture's (and a user's nn.Sequential's) logits within 1e-4 while the weights move; a model
with dummy units records its new layer sizes and reloads from its file."""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from netmark._util import seeded
from netmark.attacks import ATTACKS
from netmark.attacks.dummy_neurons import DummyNeurons, DummyNeuronsConfig, widen_space
from netmark.attacks.permute import Permute, PermuteConfig
from netmark.attacks.rescale import Rescale, RescaleConfig
from netmark.cli import app
from netmark.errors import ArchitectureError, ConfigError
from netmark.io import load_model, read_metadata, save_model
from netmark.models import MODELS, arch_of, build
from netmark.models.structure import apply_permutation, apply_scaling, draw_permutations, unit_spaces
from tests.conftest import make_cnn

#: small builds of every registry architecture (1×12×12 inputs, 3 classes)
SMALL_ARGS: dict[str, dict[str, Any]] = {"vgg16": {"width": 0.125}, "all-cnn-c": {"width": 0.125},
                                         "lenet5": {"padding": 2}, "wrn": {"widen": 1}, "mlp": {"hidden": [16, 12]}}
ATTACK_CONFIGS = {"permute": PermuteConfig(seed=1), "rescale": RescaleConfig(seed=1, max_scale=8.0),
                  "dummy-neurons": DummyNeuronsConfig(seed=1), "dummy-split": DummyNeuronsConfig(seed=1, mode="split")}


def run_attack(name: str, model: nn.Module, config: Any = None) -> nn.Module:
    """``ATTACK_CONFIGS[name]`` (or ``config``) applied by its registered attack (``dummy-split``: dummy-neurons)."""
    return ATTACKS[name.replace("dummy-split", "dummy-neurons")](config or ATTACK_CONFIGS[name])(model)


def sequential_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(144, 20), nn.ReLU(), nn.Dropout(0.1), nn.Linear(20, 10), nn.ReLU(),
                         nn.Linear(10, 3))


def sequential_cnn() -> nn.Module:
    return nn.Sequential(OrderedDict(
        c1=nn.Conv2d(1, 6, 3, padding=1), b1=nn.BatchNorm2d(6), r1=nn.ReLU(), p1=nn.MaxPool2d(2),
        c2=nn.Conv2d(6, 8, 3, padding=1), b2=nn.BatchNorm2d(8), r2=nn.ReLU(), p2=nn.MaxPool2d(2),
        flat=nn.Flatten(), fc1=nn.Linear(8 * 3 * 3, 16), bn=nn.BatchNorm1d(16), r3=nn.ReLU(), fc2=nn.Linear(16, 3)))


def make(arch: str) -> nn.Module:
    """A small model with non-trivial BatchNorm statistics and affine parameters, in eval mode."""
    with seeded(0):
        if arch == "seq-mlp":
            model = sequential_mlp()
        elif arch == "seq-cnn":
            model = sequential_cnn()
        else:
            model = build(arch, in_channels=1, image_size=12, num_classes=3, **SMALL_ARGS.get(arch, {}))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.3, 0.3)
    return model.eval()


#: the Hugging Face transformers (netmark.models.hf) cannot be traced with torch.fx: the obfuscations refuse them
#: (test_a_model_that_cannot_be_traced_is_refused_with_its_reason)
TRANSFORMERS = ("hf-bert", "hf-gpt2")
ARCHS = [*(m for m in sorted(MODELS) if m not in TRANSFORMERS), "seq-mlp", "seq-cnn"]


def inputs() -> torch.Tensor:
    return torch.randn(4, 1, 12, 12, generator=torch.Generator().manual_seed(7))


def max_change(a: nn.Module, b: nn.Module) -> float:
    """Largest relative change of any floating-point tensor of the state dicts."""
    sa, sb = a.state_dict(), b.state_dict()
    if any(sa[k].shape != sb[k].shape for k in sa):  # dummy units: the layers changed shape
        return math.inf
    return max(float((sa[k] - sb[k]).abs().max() / (sa[k].abs().max() + 1e-12))
               for k in sa if sa[k].is_floating_point())


@pytest.mark.parametrize("arch", TRANSFORMERS)
def test_a_model_that_cannot_be_traced_is_refused_with_its_reason(arch: str) -> None:
    pytest.importorskip("transformers")
    with pytest.raises(ArchitectureError, match=r"torch\.fx"):
        run_attack("permute", make(arch))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("attack", sorted(ATTACK_CONFIGS))
def test_the_attack_keeps_the_function_and_moves_the_weights(attack: str, arch: str) -> None:
    model = make(arch)
    x = inputs()
    with torch.no_grad():
        before = model(x)
        out = run_attack(attack, model)
        after = out(x)
    assert (after - before).abs().max().item() <= 1e-4
    assert max_change(model, out) > 1e-3  # far beyond float rounding


def test_the_residual_streams_and_option_a_padding_are_permuted_consistently() -> None:
    """ResNet's three streams are permutable; the padded stage-2 stream follows stage 1 at offset 8 and the zero
    channels move among themselves; rescaling leaves the streams alone; the output layer is never touched."""
    spaces = {s.name: s for s in unit_spaces(make("resnet20"))}
    stream1, stream2 = spaces["conv1"], spaces["layer2.0.conv2"]
    assert stream1.permutable and not stream1.scalable and len(stream1.producers) == 4
    assert stream2.parent == "conv1" and stream2.offset == 8 and stream2.permutable
    assert not spaces["fc"].permutable and "outputs" in spaces["fc"].reason
    perms = draw_permutations(spaces.values(), {"conv1", "layer2.0.conv2"}, torch.Generator().manual_seed(0))
    p1, p2 = perms["conv1"], perms["layer2.0.conv2"]
    assert torch.equal(p2[8:24], p1 + 8) and set(p2[:8].tolist()) | set(p2[24:].tolist()) == set(range(8)) | set(
        range(24, 32))
    only_parent = draw_permutations(spaces.values(), {"conv1"}, torch.Generator().manual_seed(0))
    assert torch.equal(only_parent["layer2.0.conv2"][:8], torch.arange(8))  # not chosen: only the embedded part moves
    rescaled = Rescale(RescaleConfig(seed=0))(make("resnet20"))
    assert torch.equal(rescaled.state_dict()["bn1.weight"], make("resnet20").state_dict()["bn1.weight"])


def test_flatten_moves_whole_channel_blocks() -> None:
    spaces = {s.name: s for s in unit_spaces(make("lenet5"))}
    assert spaces["conv2"].consumers == (("fc1", 9),)  # 12 → 12 → 6 → 6 → 3: 3·3 columns per channel


@pytest.mark.parametrize("attack", sorted(ATTACK_CONFIGS))
def test_fraction_zero_leaves_the_model_unchanged(attack: str) -> None:
    model = make("seq-cnn")
    cfg = replace(ATTACK_CONFIGS[attack], seed=3, fraction=0.0)
    out = run_attack(attack, model, cfg)
    assert all(torch.equal(v, out.state_dict()[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("attack", sorted(ATTACK_CONFIGS))
def test_two_seeds_give_two_models_and_one_seed_one(attack: str) -> None:
    model = make("lenet5")
    a, b, c = (run_attack(attack, model, replace(ATTACK_CONFIGS[attack], seed=s)).state_dict() for s in (1, 2, 1))
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_fraction_and_layers_choose_the_spaces() -> None:
    model = make("lenet5")
    only = Permute(PermuteConfig(seed=0, layers=["conv2"]))(model).state_dict()
    before = model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], only[k])}
    assert moved == {"conv2.weight", "conv2.bias", "fc1.weight"}
    half = Rescale(RescaleConfig(seed=0, fraction=0.5))(model).state_dict()  # 2 of the 3 hidden spaces (rounded)
    assert sum(not torch.equal(before[f"{n}.bias"], half[f"{n}.bias"]) for n in ("conv1", "conv2", "fc1")) == 2


@pytest.mark.parametrize("attack", sorted(ATTACK_CONFIGS))
def test_bad_layers_are_config_errors(attack: str) -> None:
    cls = type(ATTACK_CONFIGS[attack])
    with pytest.raises(ConfigError, match="no conv/linear layer 'conv9'"):
        run_attack(attack, make("lenet5"), cls(layers=["conv9"]))
    with pytest.raises(ConfigError, match="outputs"):
        run_attack(attack, make("lenet5"), cls(layers=["fc2"]))
    with pytest.raises(ConfigError, match="fraction"):
        cls(fraction=1.5)
    with pytest.raises(ConfigError, match="layers"):
        cls(layers=[])


def test_rescale_refuses_a_residual_stream_and_bad_settings() -> None:
    with pytest.raises(ConfigError, match="residual"):
        Rescale(RescaleConfig(layers=["layer1.0.conv2"]))(make("resnet20"))
    with pytest.raises(ConfigError, match="max_scale"):
        RescaleConfig(max_scale=1.0)


def test_unknown_ops_fix_their_spaces() -> None:
    """A sigmoid blocks rescaling but not permutation; a concatenation blocks both (never a wrong model)."""

    class Cat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.out = nn.Linear(4, 5), nn.Linear(4, 3), nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(torch.cat([torch.relu(self.a(x)), torch.sigmoid(self.b(x))], dim=1))

    spaces = {s.name: s for s in unit_spaces(Cat())}
    assert not spaces["a"].permutable and not spaces["b"].permutable
    sig = nn.Sequential(nn.Linear(4, 5), nn.Sigmoid(), nn.Linear(5, 2))
    (hidden, _) = unit_spaces(sig)
    assert hidden.permutable and not hidden.scalable and "homogeneous" in hidden.reason
    with pytest.raises(ArchitectureError, match="cannot be rescaled"):
        apply_scaling(sig, hidden, torch.ones(5))
    with pytest.raises(ArchitectureError, match="not a permutation"):
        apply_permutation(sig, hidden, torch.zeros(5, dtype=torch.long))


def test_the_cli_runs_permute_on_a_saved_model(tmp_path: Path) -> None:
    src = save_model(make_cnn(), tmp_path / "m.safetensors")
    out = tmp_path / "p.safetensors"
    r = CliRunner().invoke(app, ["attack", "permute", str(src), "--set", "layers=conv1,fc1", "--set", "seed=4",
                                 "--out", str(out)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, (r.stdout, r.stderr)
    assert read_metadata(out)["extra"]["attack"]["permute"] == {"seed": 4, "layers": ["conv1", "fc1"],
                                                                  "fraction": 1.0}
    a, b = load_model(src).eval(), load_model(out).eval()
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (a(x) - b(x)).abs().max().item() <= 1e-4
    assert not torch.equal(a.state_dict()["conv1.weight"], b.state_dict()["conv1.weight"])


@pytest.mark.parametrize("mode", ["zero", "split"])
@pytest.mark.parametrize("arch", ["mlp", "seq-mlp", "seq-cnn"])
def test_widening_adds_dummy_units_and_keeps_the_function(arch: str, mode: str) -> None:
    """k = 50% more units in every hidden space (the issue's dummy-neurons strength), both of Yan et al.'s modes."""
    model, x = make(arch), inputs()
    widened = copy.deepcopy(model)
    spaces = unit_spaces(model)
    gen = torch.Generator().manual_seed(1)
    hidden = [s for s in spaces if s.permutable]
    for s in hidden:
        widen_space(widened, spaces, s.name, (s.size + 1) // 2, mode, gen)
    with torch.no_grad():
        assert (widened(x) - model(x)).abs().max().item() <= 1e-4
    assert sum(p.numel() for p in widened.parameters()) > sum(p.numel() for p in model.parameters())
    assert [s.size for s in unit_spaces(widened) if s.permutable] == [s.size + (s.size + 1) // 2 for s in hidden]


@pytest.mark.parametrize("arch", ["mlp", "lenet5", "resnet20"])
def test_a_model_with_dummy_units_records_its_widths_and_reloads(arch: str, tmp_path: Path) -> None:
    """The file records the resized layers (``widths``) beside the unchanged registry arguments; a model never
    resized records none (so no existing record or cache key changes)."""
    model = make(arch)
    assert "widths" not in arch_of(model)
    widened = DummyNeurons(DummyNeuronsConfig(seed=0, mode="split"))(model)
    rec = arch_of(widened)
    assert rec["args"] == arch_of(model)["args"] and rec["widths"]
    again = load_model(save_model(widened, tmp_path / "w.safetensors")).eval()
    assert arch_of(again) == rec
    with torch.no_grad():
        assert torch.equal(again(inputs()), widened(inputs()))
        assert (again(inputs()) - model(inputs())).abs().max().item() <= 1e-4


def test_widths_from_a_file_are_checked() -> None:
    for widths, match in [({"conv9": [3, 1]}, "no Linear, Conv2d or BatchNorm"), ({"conv1": [0, 1]}, "unit count"),
                          ({"conv1": [3]}, "unit count"), ({"conv1": [True, 1]}, "unit count"), ([1], "must map"),
                          ({"fc1": [10**7, 10**6]}, "unit count")]:
        with pytest.raises(ArchitectureError, match=match):
            build("lenet5", widths=widths)
    with pytest.raises(ArchitectureError, match="over the limit"):
        build("lenet5", widths={"fc1": [900_000, 800]})


def test_widening_refuses_what_it_cannot_keep() -> None:
    gen = torch.Generator().manual_seed(0)
    mlp = make("mlp")
    with pytest.raises(ArchitectureError, match="outputs"):
        widen_space(mlp, unit_spaces(mlp), "fc3", 2, "zero", gen)
    resnet = make("resnet20")
    with pytest.raises(ArchitectureError, match="zero-padded"):
        widen_space(resnet, unit_spaces(resnet), "conv1", 2, "zero", gen)
    with pytest.raises(ConfigError, match="zero-padded"):
        DummyNeurons(DummyNeuronsConfig(layers=["conv1"]))(make("resnet20"))
    with pytest.raises(ConfigError, match="width"):
        DummyNeuronsConfig(width=-0.5)
    with pytest.raises(ConfigError, match="mode"):
        DummyNeuronsConfig(mode="copy")


def test_obfuscate_then_fine_tune(digits_train) -> None:
    """The evaluation's combined attack: with 0 epochs it is permute then rescale (function kept, weights moved);
    with 1 epoch it also trains on the thief's data (the function moves too); it needs that data (the sweep gives it
    the attacker's)."""
    from netmark.attacks.obfuscate import Obfuscate, ObfuscateConfig
    from netmark.training import TrainConfig

    model = make_cnn(seed=0).eval()
    x = digits_train.x[:16]
    only = Obfuscate(ObfuscateConfig(seed=3, train=TrainConfig(epochs=0, progress=False)))(model, digits_train)
    with torch.no_grad():
        assert float((only(x) - model(x)).abs().max()) <= 1e-4
    assert max_change(model, only) > 1e-3
    one_epoch = ObfuscateConfig(seed=3, train=TrainConfig(epochs=1, lr=0.01, progress=False))
    tuned = Obfuscate(one_epoch)(model, digits_train)
    with torch.no_grad():
        assert float((tuned(x) - only(x)).abs().max()) > 1e-3
    with pytest.raises(ConfigError, match="needs training data"):
        Obfuscate(ObfuscateConfig(seed=3))(model)
    with pytest.raises(ConfigError):
        ObfuscateConfig(fraction=2.0)
