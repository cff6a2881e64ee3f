"""Alignment-aware verification (``netmark.methods.alignment``, issue 21 item 2): a white-box key survives a
function-preserving obfuscation of the suspect (its hidden units permuted, rescaled across ReLU, dummy units added).

The obfuscations are built here by hand (:func:`obfuscate`), independently of the code under test, on tiny models
trained on digits; each is checked to keep the function (max |Δ logits| <= 1e-4). ``benchmarks/alignment.py`` uses
the same helpers on Fashion-MNIST.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from typing import Any

import pytest
import torch
from torch import nn

from netmark._util import seeded
from netmark.data import ArrayDataset
from netmark.errors import ArchitectureError, ConfigError
from netmark.methods import get_method
from netmark.methods.alignment import ALIGN_TENSORS, MIN_FAN_IN, align, has_reference
from netmark.methods.alignment_null import MIN_QUALITY
from netmark.methods.examples import example
from netmark.models import build, conv_and_linear_layers
from netmark.training import TrainConfig
from tests.conftest import make_cnn

KINDS = ("permute", "rescale", "dummy")


def _pair(model: nn.Module, layer: str) -> tuple[nn.Module, nn.Module, int]:
    """The layer, the next Conv2d/Linear and how many inputs of the next one each unit feeds (a flatten: > 1)."""
    layers = list(conv_and_linear_layers(model).values())
    names = list(conv_and_linear_layers(model))
    mod, nxt = layers[names.index(layer)], layers[names.index(layer) + 1]
    block = nxt.weight.shape[1] // mod.weight.shape[0] if isinstance(nxt, nn.Linear) else 1
    return mod, nxt, block


def _set(mod: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
    mod.weight = nn.Parameter(weight.contiguous())
    if bias is not None:
        mod.bias = nn.Parameter(bias.contiguous())


def _inputs(nxt: nn.Module, block: int) -> torch.Tensor:
    """The next layer's weight with one axis per unit of the layer before it: ``(out, units, rest...)``."""
    w = nxt.weight.detach()
    return w.reshape(w.shape[0], -1, block) if isinstance(nxt, nn.Linear) else w


def _set_inputs(nxt: nn.Module, w: torch.Tensor) -> None:
    _set(nxt, w.reshape(w.shape[0], -1) if isinstance(nxt, nn.Linear) else w)


@torch.no_grad()
def obfuscate_layer(model: nn.Module, layer: str, kind: str, g: torch.Generator, *, extra: int = 1) -> None:
    """In place: ``permute`` the units of ``layer`` (and the next layer's inputs), ``rescale`` each by c in
    [1/4, 4] (its inputs × c, its outputs × 1/c: exact across ReLU and max-pooling) or add ``extra`` ``dummy``
    units (random inputs, zero outputs)."""
    mod, nxt, block = _pair(model, layer)
    w, b, nw = mod.weight.detach(), mod.bias.detach(), _inputs(nxt, block)
    n = w.shape[0]
    if kind == "permute":
        p = torch.randperm(n, generator=g)
        _set(mod, w[p], b[p])
        _set_inputs(nxt, nw[:, p])
    elif kind == "rescale":
        c = torch.exp((torch.rand(n, generator=g) * 2 - 1) * torch.log(torch.tensor(4.0)))
        shape = (-1, *([1] * (w.ndim - 1)))
        _set(mod, w * c.reshape(shape), b * c)
        _set_inputs(nxt, nw / c.reshape(1, -1, *([1] * (nw.ndim - 2))))
    elif kind == "dummy":
        new_w = torch.randn(extra, *w.shape[1:], generator=g) * w.std()
        _set(mod, torch.cat([w, new_w]), torch.cat([b, torch.randn(extra, generator=g) * b.std()]))
        _set_inputs(nxt, torch.cat([nw, torch.zeros(nw.shape[0], extra, *nw.shape[2:])], 1))
    else:
        raise ValueError(kind)


def obfuscate(model: nn.Module, layers: list[str], kinds: tuple[str, ...], seed: int, *, extra: int = 1,
              ) -> nn.Module:
    """A copy of ``model`` with each of ``kinds`` applied to each of ``layers`` (hidden layers)."""
    out = copy.deepcopy(model).eval()
    g = torch.Generator().manual_seed(seed)
    for kind in kinds:
        for layer in layers:
            obfuscate_layer(out, layer, kind, g, extra=extra)
    return out


def hidden_layers(model: nn.Module) -> list[str]:
    return list(conv_and_linear_layers(model))[:-1]


def max_logit_change(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((a.eval()(x) - b.eval()(x)).abs().max())


TRAIN = TrainConfig(epochs=4, lr=0.05, batch_size=32, seed=0, progress=False)

#: (case, method, config changes, model); MLP: 64-64-10 on the 8×8 digits (host fc2: its 64 inputs are fc1's units)
CASES = [
    ("uchida-conv", "uchida", {}, "cnn"),
    ("uchida-linear", "uchida", {"layer": "fc2", "bits": 48}, "mlp"),
    ("wang", "wang", {"harden_steps": 100, "null_samples": 512}, "cnn"),
    ("tartaglione", "tartaglione", {}, "cnn"),
    ("deepsigns-white", "deepsigns", {}, "cnn"),
]


def _model(kind: str, seed: int = 0) -> nn.Module:
    if kind == "mlp":
        with seeded(seed):
            return build("mlp", in_channels=1, image_size=8, num_classes=10, hidden=64)
    return make_cnn(seed=seed)


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def marked(request: pytest.FixtureRequest, digits_train: ArrayDataset):
    _, name, changes, kind = request.param
    method = get_method(name)(replace(example(name), **changes))
    model, key, _ = method.embed(_model(kind), digits_train, TRAIN, seed=1, warn=False)
    return method, model.eval(), key, kind


def _p(res) -> float:
    return res.p_value


def test_the_key_holds_a_reference_and_an_unobfuscated_model_aligns_to_the_identity(marked) -> None:
    method, model, key, _ = marked
    assert has_reference(key)
    layout = key.tensors["align_layout"]  # [out, in, kh, kw, has_bias] per layer, from the first layer on
    assert int((layout[:, 1] * layout[:, 2:4].clamp(min=1).prod(1)).max()) >= MIN_FAN_IN  # wang's conv1 host: + conv2
    res = method.verify(model, key)
    assert res.detected and res.details["alignment"]["identity"]
    assert res.details["alignment"]["quality"] == pytest.approx(1.0)
    old = replace(key, tensors={k: v for k, v in key.tensors.items() if k not in ALIGN_TENSORS})
    before = method.verify(model, old)
    assert "alignment" not in before.details
    assert (before.p_value, before.score, before.matched_bits) == (res.p_value, res.score, res.matched_bits)


@pytest.mark.parametrize("kinds", [("permute",), ("rescale",), ("dummy",), KINDS], ids=["+".join(k) for k in
                                                                                        [*([(k,) for k in KINDS]),
                                                                                         KINDS]])
def test_an_obfuscated_model_is_detected_after_alignment(marked, kinds, digits_train: ArrayDataset) -> None:
    method, model, key, _ = marked
    suspect = obfuscate(model, hidden_layers(model), kinds, seed=5)
    assert max_logit_change(model, suspect, digits_train.x[:64]) <= 1e-4
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), suspect.state_dict().values(),
                                                      strict=True) if a.shape == b.shape) or "dummy" in kinds
    res = method.verify(suspect, key)
    info = res.details["alignment"]
    assert res.detected and not info["identity"] and info["used"] == "aligned"
    assert info["quality"] > 0.99
    assert abs(res.score - method.verify(model, key).score) <= 0.05  # the owner's extraction, nearly exactly
    if "dummy" in kinds:
        assert sum(info["dropped_units"].values()) >= 1
    old = replace(key, tensors={k: v for k, v in key.tensors.items() if k not in ALIGN_TENSORS})
    if "dummy" in kinds:  # the host (or, for Tartaglione, some layer) changed shape: the raw extraction cannot read it
        with pytest.raises(ArchitectureError):
            method.verify(suspect, old)
        assert "error" in info["raw"]
        return
    raw = method.verify(suspect, old)
    assert info["raw"]["p_value"] == raw.p_value
    assert _p(res) <= _p(raw)
    if "permute" in kinds:  # raw fails, or degrades by 1000x at least (a rescaling alone can leave signs intact)
        assert not raw.detected or _p(raw) > 1e3 * max(_p(res), 1e-300)


#: the registered attacks (dummy units: 50 % of each layer's width, the issue's strength), alone and all combined
REGISTERED = {"permute": [("permute", {})], "rescale": [("rescale", {})], "dummy": [("dummy-neurons", {})],
              "split": [("dummy-neurons", {"mode": "split"})],
              "all": [("dummy-neurons", {"mode": "split"}), ("dummy-neurons", {}), ("permute", {}), ("rescale", {})]}


def registered(model: nn.Module, steps: list[tuple[str, dict[str, Any]]], seed: int = 5) -> nn.Module:
    from netmark.attacks import ATTACKS

    for i, (name, changes) in enumerate(steps):
        model = ATTACKS[name](ATTACKS[name].config_cls(seed=seed + i, **changes))(model)
    return model


@pytest.mark.parametrize("attack", sorted(REGISTERED))
def test_the_registered_obfuscations_are_undone(marked, attack: str, digits_train: ArrayDataset) -> None:
    """`permute`, `rescale`, `dummy-neurons` (zero and split modes) and all of them in a row: the function is kept and
    the aligned extraction is the owner's."""
    method, model, key, _ = marked
    suspect = registered(model, REGISTERED[attack])
    assert max_logit_change(model, suspect, digits_train.x[:64]) <= 1e-4
    res = method.verify(suspect, key)
    info = res.details["alignment"]
    assert res.detected and info["used"] == "aligned" and info["quality"] > 0.99, info
    assert abs(res.score - method.verify(model, key).score) <= 0.05
    assert res.details["null_exact"] is False and "not calibrated" in res.details["null"]  # no aligned null in key


@pytest.mark.parametrize("arch", ["mlp", "lenet5", "simple-cnn", "all-cnn-c"])
def test_alignment_undoes_a_known_obfuscation_exactly(arch: str) -> None:
    """On a random (untrained) model of each chain architecture, every hidden layer permuted, rescaled and widened by
    2 dummy units: the aligned copy has the owner's weights back (float precision) and computes the same logits."""
    from netmark.keys import WatermarkKey
    from netmark.methods.alignment import with_reference

    extra = {"hidden": [16, 12]} if arch == "mlp" else {"padding": 2} if arch == "lenet5" else {}
    size = 16 if arch == "all-cnn-c" else 8
    with seeded(0):
        owner = build(arch, in_channels=1, image_size=size, num_classes=10, **extra).eval()
    key = with_reference(WatermarkKey(method="tartaglione", layer=None, message="", tensors={}, config={}), owner,
                         upto=None)
    hidden = hidden_layers(owner)
    suspect = obfuscate(owner, hidden, KINDS, seed=3, extra=2)
    split = registered(copy.deepcopy(owner), [("dummy-neurons", {"mode": "split", "width": 0.25})])
    split = obfuscate(split, hidden, KINDS, seed=3, extra=2)  # split units too, to be folded back
    x = torch.rand(16, 1, size, size, generator=torch.Generator().manual_seed(0))
    assert max_logit_change(owner, split, x) <= 1e-4
    for widened, more in ((suspect, 0), (split, 0.25)):
        al = align(widened, key)
        widths = {n: m.weight.shape[0] for n, m in conv_and_linear_layers(owner).items()}
        assert al.dropped == {n: 2 + math.floor(more * widths[n] + 0.5) for n in hidden}
        assert al.quality == pytest.approx(1.0)
        aligned, mine = dict(al.model.named_modules()), dict(owner.named_modules())
        for name in conv_and_linear_layers(owner):
            torch.testing.assert_close(aligned[name].weight, mine[name].weight, rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(aligned[name].bias, mine[name].bias, rtol=1e-4, atol=1e-6)
        assert max_logit_change(owner, al.model, x) <= 1e-4


def test_an_independent_model_is_decided_unaligned(marked, digits_train: ArrayDataset) -> None:
    """An independent model aligns poorly (quality far below MIN_QUALITY): the raw extraction, under its exact null,
    decides, not the aligned one (which an alignment to the owner's marked weights pulls towards the watermark)."""
    from netmark.training import train

    method, _, key, kind = marked
    independent = _model(kind, seed=100)
    train(independent, digits_train, replace(TRAIN, seed=100))
    res = method.verify(independent, key)
    info = res.details["alignment"]
    assert info["quality"] < MIN_QUALITY and info["used"] == "raw"
    assert res.p_value == info["raw"]["p_value"] and not res.detected
    assert info["aligned"]["p_value"] is not None


def test_a_reshaped_model_that_does_not_align_is_refused() -> None:
    """Dummy units in an independent model: the raw extraction cannot read it and it does not align (no copy)."""
    from netmark.methods.uchida import UchidaConfig

    method = get_method("uchida")(UchidaConfig(layer="fc2", bits=32))
    owner = _model("mlp", seed=0)
    key = method.finalize(method.create_key(owner, seed=1), owner)
    with pytest.raises(ArchitectureError, match="do not align"):
        method.verify(obfuscate(_model("mlp", seed=9), ["fc1"], ("dummy",), seed=2), key)
    widened = method.verify(obfuscate(owner, ["fc1"], ("dummy",), seed=2), key).details["alignment"]
    assert widened["used"] == "aligned" and widened["dropped_units"] == {"fc1": 1}


def test_a_model_that_cannot_be_traced_gets_no_reference() -> None:
    """Data-dependent control flow: torch.fx cannot follow the units, so the key stays as it was (verified
    unaligned)."""
    from netmark.keys import WatermarkKey
    from netmark.methods.alignment import chain, with_reference

    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.a(x)
            return self.b(h if float(h.sum()) > 0 else -h)

    key = WatermarkKey(method="uchida", layer="a", message="", tensors={}, config={})
    assert with_reference(key, Branchy(), upto="a") is key
    assert chain(_model("cnn")) is not None


@pytest.mark.parametrize("arch", ["vgg16", "wrn", "resnet20", "seq-cnn"])
def test_batchnorm_and_residual_models_align_exactly(arch: str) -> None:
    """Issue 21, item 2 beyond chains: BatchNorm (a rescaling lives in its weight and bias), residual streams (one
    permutation for every layer on the stream), option-A padded shortcuts. Each registry model with BatchNorm or
    residual connections (small builds, non-trivial BatchNorm statistics) gets a named reference of every layer;
    after all four registered obfuscations the aligned copy has the owner's tensors back and its logits."""
    from netmark.keys import WatermarkKey
    from netmark.methods.alignment import REF_PREFIX, with_reference
    from tests.test_obfuscation import inputs, make

    owner = make(arch)
    key = with_reference(WatermarkKey(method="tartaglione", layer=None, message="", tensors={}, config={}), owner,
                         upto=None)
    assert has_reference(key) and all(k.startswith(REF_PREFIX) for k in key.tensors)
    suspect = registered(owner, REGISTERED["all"])
    x = inputs()
    assert max_logit_change(owner, suspect, x) <= 1e-4
    assert any(a.shape != b.shape for a, b in zip(owner.state_dict().values(), suspect.state_dict().values(),
                                                  strict=True))
    al = align(suspect, key)
    assert not al.identity and al.quality == pytest.approx(1.0) and sum(al.dropped.values()) > 0
    mine, theirs = owner.state_dict(), al.model.state_dict()
    for name, t in mine.items():
        if t.is_floating_point():
            torch.testing.assert_close(theirs[name], t, rtol=1e-4, atol=1e-5, msg=name)
    assert max_logit_change(owner, al.model, x) <= 1e-4


def test_a_claim_decides_on_the_unaligned_suspect(digits_train: ArrayDataset) -> None:
    """The reference is no part of a claim's re-derived key (a forger would choose it, and with it the permutation
    his key is read through): a claim check decides unaligned, so a permuted copy fails its watermark step."""
    from netmark.methods.ownership import check_claim, claimed_key
    from tests.conftest import fixed_identity, fixed_opening

    method = get_method("uchida")(example("uchida"))
    key, claim = claimed_key(method, make_cnn(seed=0), fixed_identity(0), opening=fixed_opening(0))
    model, key, _ = method.embed(make_cnn(seed=0), digits_train, TRAIN, key=key, warn=False)
    assert has_reference(key) and check_claim(model.eval(), key, claim).ok
    permuted = obfuscate(model, hidden_layers(model), ("permute",), seed=5)
    assert method.verify(permuted, key).detected
    steps = check_claim(permuted, key, claim).steps
    assert [n for n, ok, _ in steps if not ok] == ["watermark"]


def test_a_malformed_reference_is_a_key_file_error() -> None:
    from netmark.errors import KeyFileError
    from netmark.keys import WatermarkKey
    from netmark.methods.alignment import REF_LAYOUT, REF_WEIGHTS, with_reference

    owner = _model("mlp")
    key = with_reference(WatermarkKey(method="uchida", layer="fc2", message="", tensors={}, config={}), owner,
                         upto="fc2")
    short = replace(key, tensors={**key.tensors, REF_WEIGHTS: key.tensors[REF_WEIGHTS][:-1]})
    with pytest.raises(KeyFileError, match="holds"):
        align(owner, short)
    flat = replace(key, tensors={**key.tensors, REF_LAYOUT: key.tensors[REF_LAYOUT].reshape(-1)})
    with pytest.raises(KeyFileError, match="layout"):
        align(owner, flat)


def test_a_pruned_copy_aligns_to_the_identity() -> None:
    """Half of each layer's weights zeroed (magnitude pruning, no obfuscation): every unit matches itself at scale 1
    (the scale is fitted on the weights the suspect kept), so the suspect is read as it is."""
    from netmark.keys import WatermarkKey
    from netmark.methods.alignment import with_reference

    owner = _model("mlp")
    key = with_reference(WatermarkKey(method="uchida", layer="fc2", message="", tensors={}, config={}), owner,
                         upto="fc2")
    pruned = copy.deepcopy(owner)
    with torch.no_grad():
        for mod in conv_and_linear_layers(pruned).values():
            mod.weight.mul_(mod.weight.abs() >= mod.weight.abs().median())
    al = align(pruned, key)
    assert al.identity and al.model is pruned and 0.8 < al.quality < 1.0


def test_a_fine_tuned_copy_that_is_not_obfuscated_is_read_as_before(marked, digits_train: ArrayDataset) -> None:
    """One more epoch of training moves every weight a little: the alignment is still the identity (the units' scales
    hardly spread: SCALE_SPREAD), so the numbers are those of a key without a reference."""
    from netmark.training import train

    method, model, key, _ = marked
    tuned = copy.deepcopy(model)
    train(tuned, digits_train, replace(TRAIN, epochs=1, lr=0.01, seed=9))
    res = method.verify(tuned.eval(), key)
    old = replace(key, tensors={k: v for k, v in key.tensors.items() if k not in ALIGN_TENSORS})
    before = method.verify(tuned, old)
    assert res.details["alignment"]["identity"] and res.details["alignment"]["used"] == "raw"
    assert (before.p_value, before.score) == (res.p_value, res.score)


def test_the_cli_verifies_a_permuted_copy_through_alignment(tmp_path) -> None:
    """`netmark embed`, `netmark attack permute`, `netmark verify`: the permuted copy is detected and the answer says
    it was aligned first, with what the suspect read as it is gives."""
    from typer.testing import CliRunner

    from netmark.cli import app

    def run(*args: object) -> Any:
        return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})

    r = run("embed", "--model", "simple-cnn", "--dataset", "digits", "--epochs", "12", "--lr", "0.05", "--bits", "64",
            "--key-seed", "0", "--seed", "0", "-q", "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    r = run("attack", "permute", tmp_path / "run" / "model.safetensors", "--set", "seed=3", "--out",
            tmp_path / "p.safetensors")
    assert r.exit_code == 0, r.output
    r = run("verify", tmp_path / "p.safetensors", "--key", tmp_path / "run" / "owner.key")
    assert r.exit_code == 0 and "DETECTED" in r.stdout and "aligned: the suspect's units were mapped" in r.stdout, \
        r.output
    r = run("verify", tmp_path / "run" / "model.safetensors", "--key", tmp_path / "run" / "owner.key")
    assert r.exit_code == 0 and "aligned:" not in r.stdout  # the owner's own model: read as it is


def test_the_aligned_p_value_is_calibrated_on_independent_models(digits_train: ArrayDataset) -> None:
    """Item 3: with ``null_models`` at embedding, the key stores the aligned extraction's statistic on each; an
    obfuscated copy's aligned p-value is then calibrated on them (never below the uncalibrated one), and a null that
    reads as high as the copy makes the copy undetected (the calibration is not decoration)."""
    from netmark.methods.alignment_null import ALIGN_NULL
    from netmark.training import train

    method = get_method("uchida")(replace(example("uchida"), layer="fc2", bits=48))
    independents = []
    for seed in (100, 101, 102, 103):
        m = _model("mlp", seed=seed)
        train(m, digits_train, replace(TRAIN, epochs=1, seed=seed))
        independents.append(m.eval())
    model, key, _ = method.embed(_model("mlp"), digits_train, TRAIN, seed=1, warn=False, null_models=independents)
    null = key.tensors[ALIGN_NULL]
    assert null.shape == (4,) and bool((null >= 0).all() & (null <= 48).all())
    suspect = registered(model.eval(), REGISTERED["all"])
    res = method.verify(suspect, key)
    d = res.details
    assert d["alignment"]["used"] == "aligned" and "calibrated on 4 independent models" in d["null"]
    assert d["log10_p_value"] >= d["log10_p_uncalibrated"] and res.detected
    hostile = replace(key, tensors={**key.tensors, ALIGN_NULL: torch.tensor([48.0, 47.0, 48.0, 46.0])})
    assert not method.verify(suspect, hostile).detected
    assert method.verify(model, hostile).detected  # the owner's own model is not aligned: its exact null decides
    with pytest.raises(ConfigError, match="at least 2"):
        method.finalize(key, model, null_models=independents[:1])


@pytest.mark.parametrize("name", ["uchida", "deepsigns"])
def test_a_resnet_copy_obfuscated_every_way_is_detected(name: str, digits_train: ArrayDataset) -> None:
    """End to end on ResNet-20 (BatchNorm, residual streams, padded shortcuts): Uchida in a stage-2 convolution and
    DeepSigns white (activations of the same layer, read through a forward pass of the aligned copy); after dummy
    units, permutation and rescaling the raw extraction fails (or cannot read the model), the aligned one finds the
    mark."""
    with seeded(0):
        net = build("resnet20", in_channels=1, image_size=8, num_classes=10)
    method = get_method(name)(replace(example(name), layer="layer2.0.conv1"))
    model, key, _ = method.embed(net, digits_train, replace(TRAIN, epochs=2), seed=1, warn=False)
    model.eval()
    assert method.verify(model, key).detected
    suspect = registered(model, REGISTERED["all"])
    assert max_logit_change(model, suspect, digits_train.x[:64]) <= 1e-4
    res = method.verify(suspect, key)
    info = res.details["alignment"]
    assert res.detected and info["used"] == "aligned" and info["quality"] > 0.99, info
    assert "error" in info["raw"] or not info["raw"]["detected"]


def test_the_cli_embeds_with_null_models_and_verifies_a_widened_copy(tmp_path) -> None:
    """`netmark train` ×2 (independent models), `netmark embed --null-model ...` (the key stores their aligned
    readings), `netmark attack dummy-neurons`, `netmark verify`: the widened copy is detected through alignment with
    a p-value calibrated on the two models; the widened file reloads with its new layer sizes."""
    from typer.testing import CliRunner

    from netmark.cli import app
    from netmark.keys import WatermarkKey
    from netmark.methods.alignment_null import ALIGN_NULL

    def run(*args: object) -> Any:
        return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})

    common = ("--model", "mlp", "--dataset", "digits", "--epochs", "6", "--lr", "0.05", "-q")
    nulls = []
    for seed in (11, 12):
        r = run("train", *common, "--seed", seed, "--out", tmp_path / f"null{seed}")
        assert r.exit_code == 0, r.output
        nulls += ["--null-model", tmp_path / f"null{seed}" / "model.safetensors"]
    r = run("embed", *common, "--method", "uchida", "--layer", "fc2", "--bits", "32", "--key-seed", "0", "--seed",
            "0", *nulls, "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    assert WatermarkKey.load(tmp_path / "run" / "owner.key").tensors[ALIGN_NULL].shape == (2,)
    r = run("attack", "dummy-neurons", tmp_path / "run" / "model.safetensors", "--set", "seed=3", "--set", "mode=split",
            "--out", tmp_path / "w.safetensors")
    assert r.exit_code == 0, r.output
    r = run("verify", tmp_path / "w.safetensors", "--key", tmp_path / "run" / "owner.key", "--json")
    assert r.exit_code == 0, r.output
    assert "calibrated on 2 independent models" in r.stdout and '"detected": true' in r.stdout, r.stdout
