"""`netmark attack NAME` is generated from the attack registry (issue 19, item 4): every registered attack has a
command, `--set k=v` reaches any field of its config (parsed by the field's type, validated by the config, one
stderr line and exit 2 when bad), and an attack registered later needs no CLI edit to get its command."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset
from typer.testing import CliRunner

from netmark.attacks import ATTACKS, Attack, AttackConfig, register_attack
from netmark.cli import app
from netmark.cli.attack import apply_settings
from netmark.io import load_model, read_metadata, save_model
from netmark.training import TrainConfig
from tests.conftest import make_cnn

runner = CliRunner()


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def assert_bad(r, match: str) -> None:
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("netmark: error:") and match in lines[0], r.stderr


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    return save_model(make_cnn(), tmp_path / "m.safetensors")


@dataclass
class ScaleConfig(AttackConfig):
    factor: float = 0.5
    layer: str | None = None

    def __post_init__(self) -> None:
        if not 0 < self.factor < 100:
            raise ValueError(f"factor must be in (0, 100), got {self.factor!r}")


class Scale(Attack):
    """Multiply every weight by a factor (a throw-away attack of this test)."""

    name = "test-scale"
    config_cls = ScaleConfig
    config: ScaleConfig

    def apply(self, model: nn.Module, data: Dataset | None) -> nn.Module:
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(self.config.factor)
        return model


@dataclass
class ShiftConfig(AttackConfig):
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, progress=False))


class Shift(Attack):
    """Add the mean pixel of the attacker's images to every bias (a throw-away attack that needs data)."""

    name, config_cls, needs_data = "test-shift", ShiftConfig, True
    config: ShiftConfig

    def apply(self, model: nn.Module, data: Dataset | None) -> nn.Module:
        assert data is not None and self.config.train.device == "cpu"
        mean = float(torch.stack([data[i][0] for i in range(len(data))]).mean())
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n.endswith("bias"):
                    p.add_(mean)
        return model


@pytest.fixture()
def throwaway() -> Iterator[None]:
    """Scale and Shift registered for one test, then unregistered (the registry is as before for other tests)."""
    before = dict(ATTACKS)
    register_attack(Scale)
    register_attack(Shift)
    try:
        yield
    finally:
        ATTACKS.clear()
        ATTACKS.update(before)


def test_every_registered_attack_has_a_command() -> None:
    r = invoke("attack", "--help")
    assert r.exit_code == 0
    for name in ATTACKS:
        assert f" {name} " in r.stdout, name
    assert "outlier-reset" in ATTACKS  # had no hand-made command before the registry built them


def test_an_attack_registered_later_gets_its_command(throwaway: None, model: Path, tmp_path: Path) -> None:
    r = invoke("attack", "--help")
    assert r.exit_code == 0 and "test-scale" in r.stdout and "Multiply every weight by a factor" in r.stdout
    r = invoke("attack", "test-scale", "--help")
    assert r.exit_code == 0 and "--set" in r.stdout and "factor" in r.stdout and "--device" not in r.stdout
    out = tmp_path / "scaled.safetensors"
    r = invoke("attack", "test-scale", model, "--set", "factor=2", "--out", out)
    assert r.exit_code == 0, r.stderr
    before, after = load_model(model), load_model(out)
    assert torch.allclose(after.conv1.weight, 2 * before.conv1.weight)
    meta = read_metadata(out)["extra"]
    assert meta["attack"] == {"test-scale": {"seed": 0, "factor": 2.0, "layer": None}} and meta["source"] == str(model)
    assert_bad(invoke("attack", "test-scale", model, "--out", out), "--force")  # exists: refused, as everywhere


def test_a_data_attack_registered_later_gets_data_and_device_options(throwaway: None, model: Path,
                                                                     tmp_path: Path) -> None:
    r = invoke("attack", "test-shift", "--help")
    assert r.exit_code == 0 and all(o in r.stdout for o in ("--dataset", "--train-size", "--device", "train.*"))
    out = tmp_path / "shifted.safetensors"
    r = invoke("attack", "test-shift", model, "--train-size", "40", "--set", "train.epochs=3", "--out", out)
    assert r.exit_code == 0, r.stderr
    rec = read_metadata(out)["extra"]["attack"]["test-shift"]
    assert rec["train"]["epochs"] == 3 and rec["dataset"] == "digits" and rec["train_size"] == 40
    assert not torch.equal(load_model(out).conv1.bias, load_model(model).conv1.bias)
    assert_bad(invoke("attack", "test-shift", model, "--device", "warp-drive", "--out", tmp_path / "x.safetensors"),
               "unknown device")


def test_bad_settings_are_one_line_and_write_nothing(throwaway: None, model: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.safetensors"
    for args, match in ((["test-scale", "--set", "nope=1"], "attack 'test-scale' has no setting 'nope'; settings: "
                                                            "seed, factor, layer"),
                        (["test-scale", "--set", "factor=abc"], "--set factor: expected a number, got 'abc'"),
                        (["test-scale", "--set", "factor=500"], "factor must be in (0, 100)"),
                        (["test-scale", "--set", "factor"], "--set expects k=v, got 'factor'"),
                        (["prune", "--set", "rate=2"], "pruning rate must be in [0, 1]"),
                        (["prune", "--set", "order=sideways"], "order must be one of"),
                        (["finetune", "--set", "train=3"], "--set train is a group of settings"),
                        (["finetune", "--set", "train.nope=1"], "has no setting 'train.nope'"),
                        (["finetune", "--set", "seed.x=1"], "'seed' is a single value"),
                        (["distill", "--set", "optimizer=adamw"], "--set optimizer must be one of sgd, adam")):
        assert_bad(invoke("attack", args[0], model, *args[1:], "--out", out), match)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_an_unregistered_attack_has_no_command(throwaway: None, model: Path, tmp_path: Path) -> None:
    ATTACKS.pop("test-scale")
    r = invoke("attack", "test-scale", model, "--out", tmp_path / "o.safetensors")
    assert r.exit_code == 2 and "No such command 'test-scale'" in r.stderr
    assert "test-scale" not in invoke("attack", "--help").stdout


def test_set_reaches_the_config_of_a_shortcut_attack(model: Path, tmp_path: Path) -> None:
    """`--set` is applied after the documented options: `--rate 0.3 --set rate=0.9` prunes 90%."""
    out = tmp_path / "p.safetensors"
    r = invoke("attack", "prune", model, "--rate", "0.3", "--set", "rate=0.9", "--set", "layer=conv2", "--out", out)
    assert r.exit_code == 0, r.stderr
    assert read_metadata(out)["extra"]["attack"]["prune"] == {"seed": 0, "rate": 0.9, "order": "ascending",
                                                              "layer": "conv2"}
    w = load_model(out).conv2.weight
    assert abs(float((w == 0).float().mean()) - 0.9) < 0.01
    assert torch.equal(load_model(out).conv1.weight, load_model(model).conv1.weight)


def test_outlier_reset_has_a_command(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.safetensors"
    r = invoke("attack", "outlier-reset", model, "--set", "k=1", "--set", "layer=conv2", "--out", out)
    assert r.exit_code == 0, r.stderr
    assert read_metadata(out)["extra"]["attack"]["outlier-reset"] == {"seed": 0, "k": 1.0, "layer": "conv2"}
    before, after = load_model(model).conv2.weight, load_model(out).conv2.weight
    changed = float((before != after).float().mean())
    assert 0.2 < changed < 0.5  # |w - mean| > 1 std: about a third of a roughly uniform init
    assert_bad(invoke("attack", "outlier-reset", model, "--set", "k=0", "--out", tmp_path / "x.safetensors"),
               "outlier threshold k must be")


def test_finetune_settings_reach_its_training_schedule(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "ft.safetensors"
    r = invoke("attack", "finetune", model, "--epochs", "1", "--train-size", "64", "-q", "--set", "train.lr=0.05",
               "--set", "train.milestones=1,2", "--out", out)
    assert r.exit_code == 0, r.stderr
    train = read_metadata(out)["extra"]["attack"]["finetune"]["train"]
    assert train["lr"] == 0.05 and train["epochs"] == 1 and list(train["milestones"]) == [1, 2]


def test_apply_settings_parses_by_the_field_type() -> None:
    from netmark.attacks import DistillConfig, FinetuneConfig, OverwriteConfig, QuantizeConfig

    cfg = apply_settings(QuantizeConfig(), ["bits=4", "per_channel=false", "layer=null"], "quantize")
    assert (cfg.bits, cfg.per_channel, cfg.layer) == (4, False, None)
    assert apply_settings(QuantizeConfig(), ["layer=7"], "quantize").layer == "7"  # a str field stays a str
    assert apply_settings(DistillConfig(), ["optimizer=sgd", "lr=1e-2"], "distill").lr == 0.01
    ft = apply_settings(FinetuneConfig(), ["new_head=true", "train.milestones=[3, 5]"], "finetune")
    assert ft.new_head is True and ft.train.milestones == (3, 5) and FinetuneConfig().train.milestones == ()
    ow = apply_settings(OverwriteConfig(), ['method_config={"bits": 32}'], "overwrite")
    assert ow.method_config == {"bits": 32}
    assert apply_settings(QuantizeConfig(), [], "quantize") == QuantizeConfig()
