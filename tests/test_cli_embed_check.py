"""`netmark embed` refuses to hand out a model its owner cannot verify, or one that learnt nothing (exit 3).

Issue 18: `embed --method adi ... --epochs 3 --train-size 6000` wrote a model whose owner verification was not
detected (16 of 100 triggers, p = 0.04) and exited 0. The check is netmark.methods.check (run by every
WatermarkMethod.embed); here the CLI's side: one stderr line (what was reached, what to change), exit 3, nothing
written; --allow-undetected writes anyway with a warning line and exits 0.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from netmark.cli import app
from netmark.data import ArrayDataset
from netmark.methods.check import CHANCE_ALPHA, accuracy_and_chance, chance_p_value

runner = CliRunner()
DIGITS = ["--model", "simple-cnn", "--dataset", "digits", "--seed", "0", "--key-seed", "0", "-q"]
#: adi, 1 epoch of digits at 2 triggers a batch: 46 trigger presentations for 100 triggers (not detected)
ADI_SHORT = ["embed", "--method", "adi", *DIGITS, "--epochs", "1", "--lr", "0.05"]


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def test_undetected_adi_exits_3_writes_nothing_and_says_what_to_change(tmp_path: Path) -> None:
    out = tmp_path / "owner"
    r = invoke(*ADI_SHORT, "--out", out)
    assert r.exit_code == 3, r.output
    assert not out.exists() or list(out.iterdir()) == []
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    line = lines[0]
    assert line.startswith("netmark: error: watermark not detected: ") and "at chance" not in line
    assert "/100 triggers answered with the key's label, p = " in line and "> alpha 1e-06" in line
    assert "test accuracy 0." in line and "on 360 images" in line
    assert "--epochs" in line and "--method-arg per_batch=N, now 2" in line  # adi's own levers
    assert "--allow-undetected" in line and r.stdout == ""
    m = _benchmark().REFUSAL.match(line)  # benchmarks/embed_defaults.py reads its table row from this line
    assert m and m["match"].endswith("/100 triggers answered with the key's label") and 0 < float(m["acc"]) < 1
    assert float(m["p"]) > 1e-6


def _benchmark():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "embed_defaults.py"
    spec = importlib.util.spec_from_file_location("embed_defaults", path)
    assert spec is not None and spec.loader is not None
    if spec.name not in sys.modules:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
    module = sys.modules[spec.name]
    return module


def test_allow_undetected_writes_with_a_warning_and_exits_0(tmp_path: Path) -> None:
    out = tmp_path / "owner"
    r = invoke(*ADI_SHORT, "--out", out, "--allow-undetected")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors", "owner.key", "report.json"]
    warn = [ln for ln in r.stderr.splitlines() if ln.startswith("netmark: warning: watermark not detected: ")]
    assert len(warn) == 1 and "Written anyway (--allow-undetected)" in warn[0]
    check = json.loads((out / "report.json").read_text())["check"]
    assert check["detected"] is False and check["ok"] is False and check["at_chance"] is False
    assert check["p_value"] > 1e-6 and check["accuracy_data"] == "test" and check["images"] == 360
    # what was written is what was checked: `netmark verify` agrees (exit 1 = not detected)
    v = invoke("verify", out / "model.safetensors", "--key", out / "owner.key")
    assert v.exit_code == 1


def test_destroyed_task_accuracy_exits_3_at_chance(tmp_path: Path) -> None:
    """Tartaglione's payload is written into the weights, so it always verifies: the model must still be useful.
    SGD at lr 5 with momentum 0.99 diverges (issue 18 measured a 10% model that exited 0)."""
    out = tmp_path / "owner"
    r = invoke("embed", "--method", "tartaglione", *DIGITS, "--epochs", "1", "--lr", "5", "--momentum", "0.99",
               "--method-arg", "size=300", "--out", out)
    assert r.exit_code == 3, r.output
    assert not out.exists() or list(out.iterdir()) == []
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("netmark: error: task accuracy at chance: Pearson r ")
    assert "(at chance: the majority class alone scores 0.1028)" in lines[0]
    assert "lower --lr or --momentum" in lines[0]


def test_a_good_embedding_exits_0_without_a_warning(tmp_path: Path) -> None:
    out = tmp_path / "owner"
    r = invoke("embed", "--method", "uchida", *DIGITS, "--epochs", "6", "--lr", "0.05", "--bits", "64", "--out", out)
    assert r.exit_code == 0, r.output
    assert "warning" not in r.stderr and r.stderr.strip() == ""
    check = json.loads((out / "report.json").read_text())["check"]
    assert check["ok"] is True and check["detected"] is True and check["at_chance"] is False


# ---------------------------------------------------------------- the "at chance" rule itself


@pytest.mark.parametrize(("n", "rate", "last_at_chance"), [(10_000, 0.1, 1094), (360, 37 / 360, 56)])
def test_chance_bound_is_the_binomial_test_at_1e_3(n: int, rate: float, last_at_chance: int) -> None:
    """The bounds the module docstring states: Fashion-MNIST's 10,000 test images, digits' 360."""
    assert CHANCE_ALPHA == 1e-3
    assert chance_p_value(last_at_chance, n, rate) > CHANCE_ALPHA >= chance_p_value(last_at_chance + 1, n, rate)
    assert chance_p_value(0, n, rate) == pytest.approx(1.0) and chance_p_value(n, n, rate) < CHANCE_ALPHA


def test_a_constant_answer_scores_the_majority_rate_and_is_at_chance() -> None:
    """On unbalanced labels chance is the majority class's share (60%), not 1/C (25%)."""
    y = torch.tensor([2] * 60 + [0] * 20 + [1] * 10 + [3] * 10)
    data = ArrayDataset(torch.zeros(100, 1, 2, 2), y, name="toy", num_classes=4)

    class Constant(torch.nn.Module):
        def __init__(self, label: int) -> None:
            super().__init__()
            self.label = label

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.one_hot(torch.full((len(x),), self.label), 4).float()

    correct, n, rate = accuracy_and_chance(Constant(2), data, batch_size=7)
    assert (correct, n, rate) == (60, 100, 0.6)
    assert chance_p_value(correct, n, rate) > CHANCE_ALPHA  # at chance, although 60% >> 1/4
    correct, _, _ = accuracy_and_chance(Constant(0), data)
    assert correct == 20 and chance_p_value(correct, n, rate) == pytest.approx(1.0)


def test_a_key_that_cannot_be_verified_yet_fails_the_check_without_raising(caplog) -> None:
    """A trigger set with image-dependent labels embedded with null_models=0 has no calibrated null: the check
    says so (not detected, the reason kept) instead of raising from inside embed."""
    import logging

    from netmark.data import load
    from netmark.methods.zhang import ZhangContent, ZhangContentConfig
    from netmark.training import TrainConfig
    from tests.conftest import make_cnn

    data = load("digits", "train").subset(list(range(256)))
    method = ZhangContent(ZhangContentConfig(size=16, per_batch=8, target_class=0, null_models=0))
    with caplog.at_level(logging.WARNING):
        _, _, run = method.embed(make_cnn(seed=0), data, TrainConfig(epochs=1, progress=False), seed=1)
    assert run.check is not None and not run.check.detected and run.check.verification is None
    assert "calibrate" in run.check.unverifiable and "cannot be verified" in (run.check.problem() or "")
    assert run.check.to_dict()["p_value"] is None
    assert any("cannot be verified" in r.getMessage() for r in caplog.records)
