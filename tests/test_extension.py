"""Adding a method or an attack touches only its own module (issue 19): a toy method and a toy attack, defined and
registered here for these tests only, pass the whole method contract (tests/method_contract.py) and run through
evaluation cells of ``netmark.evaluation`` with no other change anywhere (a shipped one adds only its golden entry
in tests/data/method_outputs.json, which tests/test_versions.py asks for)."""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from netmark._util import add_to_registry
from netmark.attacks import ATTACKS, register_attack
from netmark.draws import KeyRoot, draw
from netmark.errors import ArchitectureError, ConfigError
from netmark.evaluation import Sweep, preset
from netmark.evaluation.cells import Job
from netmark.evaluation.jobs import run_job
from netmark.keys import WatermarkKey
from netmark.methods import METHODS, MethodConfig, WatermarkMethod, register_method
from netmark.methods.base import Extraction
from netmark.methods.examples import example, example_cases
from netmark.models.registry import conv_and_linear_layers, get_layer
from netmark.training import TrainConfig, TrainHook, train
from tests import method_contract as contract
from tests.conftest import make_cnn
from tests.test_attacks import check_attack_contract, small_config
from tests.test_cli_attack_registry import Scale, ScaleConfig


@dataclass
class SignBitsConfig(MethodConfig):
    bits: int = 32
    strength: float = 1.0
    margin: float = 0.01
    layer: str | None = None  # default: the model's first Linear layer

    def __post_init__(self) -> None:
        if self.bits < 1 or self.strength < 0 or self.margin <= 0:
            raise ConfigError("bits >= 1, strength >= 0 and margin > 0 please")


def _groups(model: nn.Module, key: WatermarkKey) -> torch.Tensor:
    """The host weights in the key's groups: ``(bits, group size)``."""
    w = get_layer(model, key.layer or "").weight.reshape(-1)
    perm = key.tensors["perm"]
    if w.numel() != perm.numel():
        raise ArchitectureError(f"layer {key.layer!r} has {w.numel()} weights, the key expects {perm.numel()}")
    bits = len(key.message)
    return w[perm[: bits * (w.numel() // bits)].to(w.device)].reshape(bits, -1)


class SignBitsHook(TrainHook):
    def __init__(self, key: WatermarkKey, config: SignBitsConfig) -> None:
        self.key, self.config = key, config
        self.signs = key.bits.float() * 2 - 1

    def extra_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor,
                   ) -> dict[str, torch.Tensor]:
        means = _groups(model, self.key).mean(1)
        hinge = torch.relu(self.config.margin - self.signs.to(means.device) * means)
        return {"embed_loss": self.config.strength * hinge.sum()}


class SignBits(WatermarkMethod):
    """A toy multi-bit watermark: bit i is the sign of the mean of a secret group of the host layer's weights."""

    name = "test-sign-bits"
    config_cls = SignBitsConfig
    config: SignBitsConfig

    @classmethod
    def example_config(cls) -> SignBitsConfig:
        return SignBitsConfig()

    def _create_key(self, model: nn.Module, *, root: KeyRoot, data: Dataset | None, payload: torch.Tensor | None,
                    message: str | None) -> WatermarkKey:
        layer = self.config.layer or next(n for n, m in conv_and_linear_layers(model).items()
                                          if isinstance(m, nn.Linear))
        perm = draw(root).randperm(get_layer(model, layer).weight.numel())
        return self.key_for(model, root=root, layer=layer, message=message, bits=self.config.bits,
                            tensors={"perm": perm})

    def hook(self, key: WatermarkKey) -> SignBitsHook:
        return SignBitsHook(key, self.config)

    @torch.no_grad()
    def extract(self, model: nn.Module, key: WatermarkKey) -> Extraction:
        means = _groups(model, key).float().mean(1).cpu()
        return Extraction(bits=(means > 0).to(torch.int64), scores=means)


@contextlib.contextmanager
def registered(registry: dict[str, Any], register: Callable[[Any], Any], cls: Any) -> Iterator[str]:
    """``cls`` registered in ``registry`` inside the block, then unregistered (as before for every other test)."""
    register(cls)
    try:
        yield cls.name
    finally:
        registry.pop(cls.name)


@pytest.fixture()
def toy_method() -> Iterator[str]:
    with registered(METHODS, register_method, SignBits) as name:
        yield name


@pytest.fixture()
def toy_attack() -> Iterator[str]:
    """The CLI test's throw-away attack (every weight and bias times a factor, 0.5 by default; a ReLU net predicts
    nearly as before and the signs of the toy method's weight-group means survive it)."""
    with registered(ATTACKS, register_attack, Scale) as name:
        yield name


def test_a_registered_method_joins_the_example_table_once(toy_method: str) -> None:
    assert METHODS[toy_method] is SignBits and example(toy_method) == SignBitsConfig()
    assert (toy_method, toy_method, SignBitsConfig()) in example_cases()  # the example table reads its example_config
    with pytest.raises(ValueError, match="registered twice"):
        add_to_registry(METHODS, "watermark method", toy_method, SignBits)


def test_registries_hold_only_shipped_entries_outside_the_fixtures() -> None:
    assert not {"test-sign-bits", "test-scale"} & (set(METHODS) | set(ATTACKS))


def test_every_module_of_the_packages_is_imported() -> None:
    """netmark.methods / netmark.attacks import every module they hold (no import list to extend)."""
    import netmark.attacks
    import netmark.methods

    for package, registry in ((netmark.methods, METHODS), (netmark.attacks, ATTACKS)):
        assert sorted(package.MODULES) == package.MODULES and "base" in package.MODULES
        assert {cls.__module__ for cls in registry.values()} <= {f"{package.__name__}.{m}" for m in package.MODULES}


def test_a_new_module_is_discovered_without_an_init_edit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "toy_schemes"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from netmark._util import import_submodules\n\nSEEN = []\n"
                                     "MODULES = import_submodules(__name__, __path__)\n")
    for name in ("zeta", "alpha", "_private"):
        (pkg / f"{name}.py").write_text(f"from toy_schemes import SEEN\n\nSEEN.append({name!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        module = importlib.import_module("toy_schemes")
        assert module.MODULES == ["alpha", "zeta"] and module.SEEN == ["alpha", "zeta"]  # name order, no _private
    finally:
        for name in [n for n in sys.modules if n == "toy_schemes" or n.startswith("toy_schemes.")]:
            del sys.modules[name]


def test_a_registered_method_passes_the_whole_contract(toy_method: str, digits_train, digits_test, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    e = contract.embed_example(toy_method, example(toy_method), digits_train)

    def no_null_models() -> list[nn.Module]:
        raise AssertionError("a bits method calibrates no null")

    contract.run_contract(e, train_data=digits_train, test=digits_test, tmp_path=tmp_path,
                          loop_null_models=no_null_models)
    contract.check_under_trained(toy_method, example(toy_method), {"strength": 1e-4}, False, digits_train, digits_test,
                                 caplog)


def _cell(config: Any, cache: Path, kind: str, method: str, **kw: Any) -> dict[str, Any]:
    return run_job(Job(kind, config, str(cache), method=method, **kw))


def test_a_registered_attack_passes_the_attack_contract(toy_attack: str, tiny_data) -> None:
    assert small_config(toy_attack) == ScaleConfig()  # its example_config: the config's defaults
    check_attack_contract(toy_attack, small_config(toy_attack), tiny_data)


def test_a_registered_method_and_attack_run_evaluation_cells(toy_method: str, toy_attack: str,
                                                              tmp_path: Path) -> None:
    """The tiny evaluation preset (digits, the MLP, 8 epochs) takes the toy method with its example options; its
    embed and false-positive cells and a sweep of the toy attack run through ``run_job`` as any other."""
    sweep = Sweep(toy_attack, (0.5,), "factor", "scale", "factor")
    cfg = preset("tiny", methods=[toy_method], sweeps=(sweep,), n_independent=2)
    assert cfg.methods == {toy_method: {}}  # its example equals its defaults
    embedded = _cell(cfg, tmp_path, "embed", toy_method)
    assert embedded["error"] is None and embedded["detected"] and embedded["score"] == 1.0
    assert embedded["test_accuracy"] > 0.85 and not embedded["cached"]
    fp = _cell(cfg, tmp_path, "false-positives", toy_method)
    assert fp["error"] is None and fp["n"] == 2 and fp["detected"] == 0 and fp["min_p_value"] > cfg.alpha
    attacked = _cell(cfg, tmp_path, "attack", toy_method, index=0, strength=0.5)
    assert attacked["error"] is None and attacked["attack"] == toy_attack and attacked["detected"]
    assert abs(attacked["test_accuracy"] - embedded["test_accuracy"]) < 0.05  # a mild attack: the task survives
    again = _cell(cfg, tmp_path, "attack", toy_method, index=0, strength=0.5)
    assert again["cached"] and again["detected"]


def test_an_unregistered_toy_is_unknown_to_the_evaluation() -> None:
    with pytest.raises(ConfigError, match="unknown watermark method"):
        preset("tiny", methods=["test-sign-bits"])
    with pytest.raises(ConfigError, match="unknown attack"):
        Sweep("test-scale", (0.5,), "factor", "scale", "factor")


def test_without_its_hook_the_toy_carries_no_watermark(digits_train) -> None:
    """The toy is a real method: trained without its hook, a model does not carry its bits."""
    method = SignBits(SignBitsConfig(bits=64))
    model = make_cnn(seed=3)
    key = method.create_key(model, seed=1)
    train(model, digits_train, TrainConfig(epochs=2, lr=0.05, seed=3, progress=False))
    assert not method.verify(model, key).detected
