"""The anti-piracy CLI on digits: protect, evaluate, piracy attacks, and the bad-key table (exit 2, one line)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from netmark.access import TransformConfig, build_transform, transform_key
from netmark.cli import app
from netmark.keys import WatermarkKey

runner = CliRunner()
PROTECT = ["--model", "simple-cnn", "--dataset", "digits", "--epochs", "15", "-q"]


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def _assert_bad(r, match: str) -> None:
    assert r.exit_code == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("netmark: error:"), r.stderr
    assert "Traceback" not in r.stderr and match in lines[0], lines[0]


@pytest.fixture(scope="module")
def owners(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for kind, seed in (("generator", "1"), ("fixed", "2")):
        d = tmp_path_factory.mktemp(kind)
        r = invoke("protect", "--transform", kind, *PROTECT, "--seed", seed, "--transform-seed", seed, "--out", d,
                   "--force")
        assert r.exit_code == 0, r.stderr
        out[kind] = d
    return out


def _evaluate(model: Path, *extra: str | Path) -> dict:
    r = invoke("evaluate", model, "--dataset", "digits", "--json", *extra)
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def test_protect_writes_release_secret_and_report(owners) -> None:
    d = owners["generator"]
    assert sorted(p.name for p in d.iterdir()) == ["model.safetensors", "report.json", "transform.key"]
    assert (d / "transform.key").stat().st_mode & 0o077 == 0  # the secret is private
    key = WatermarkKey.load(d / "transform.key")
    assert key.method == "chen-wu" and key.config["transform"]["kind"] == "generator"
    assert b"conv.weight" not in (d / "model.safetensors").read_bytes()  # the transform is never in the release
    rep = json.loads((d / "report.json").read_text())
    assert rep["train"]["lr"] == 0.1 and rep["train"]["batch_size"] == 128 and rep["train"]["weight_decay"] == 5e-4
    assert rep["train"]["milestones"] == [4, 8, 11]  # ÷ 10 after each quarter of the 15 epochs
    assert rep["protect"]["gamma"] == 0.01 and rep["authorized"] > 0.85 and rep["unauthorized"] < 0.2


def test_evaluate_authorized_vs_unauthorized_and_a_wrong_valid_key(owners) -> None:
    g, f = owners["generator"], owners["fixed"]
    own = _evaluate(g / "model.safetensors", "--transform", g / "transform.key")
    assert own["authorized"] > 0.85 and own["unauthorized"] < 0.2 and own["images"] == 360
    wrong = _evaluate(g / "model.safetensors", "--transform", f / "transform.key")  # valid, but another owner's
    assert wrong["authorized"] < own["authorized"] - 0.5
    assert abs(wrong["authorized"] - own["unauthorized"]) < 0.15  # a wrong key is as good as none
    raw = _evaluate(g / "model.safetensors", "--limit", "100")
    assert set(raw) == {"model", "dataset", "split", "images", "unauthorized"} and raw["images"] == 100
    r = invoke("evaluate", g / "model.safetensors", "--dataset", "digits", "--transform", g / "transform.key")
    assert r.exit_code == 0 and "authorized (through" in r.stdout


def test_piracy_commands(owners, tmp_path: Path) -> None:
    g, f = owners["generator"], owners["fixed"]
    r = invoke("piracy", "input-only", g / "model.safetensors", "--trials", "3", "--json")
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["attack"] == "input-only" and d["trials"] == 3 and d["best"] < 0.5
    out = tmp_path / "pair.json"
    r = invoke("piracy", "pair", g / "model.safetensors", "-t", g / "transform.key", "--trials", "1", "--epochs", "1",
               "--fraction", "0.2", "--out", out)
    assert r.exit_code == 0, r.stderr
    assert "stolen model's accuracy" in r.stdout and json.loads(out.read_text())["pairs"] == round(0.2 * 1437)
    _assert_bad(invoke("piracy", "pair", g / "model.safetensors", "-t", g / "transform.key", "--out", out), "--force")
    r = invoke("piracy", "one-pair", f / "model.safetensors", "-t", f / "transform.key", "--json")
    one = json.loads(r.stdout)
    own = _evaluate(f / "model.safetensors", "--transform", f / "transform.key")
    assert one["mean"] == pytest.approx(own["authorized"])  # one pair reveals a Fixed transform
    r = invoke("piracy", "direct", g / "model.safetensors", "--json")
    assert json.loads(r.stdout)["mean"] == pytest.approx(own_raw := _evaluate(g / "model.safetensors")["unauthorized"])
    assert own_raw < 0.2
    _assert_bad(invoke("piracy", "pair", f / "model.safetensors", "-t", f / "transform.key"), "one_pair_attack")


class _Payload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def _bad_keys(owners: dict[str, Path], tmp: Path) -> dict[str, tuple[Path, Path, str]]:
    g = owners["generator"]
    model, key = g / "model.safetensors", g / "transform.key"
    cases: dict[str, tuple[Path, Path, str]] = {}
    (tmp / "garbage.key").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    cases["corrupt key"] = (model, tmp / "garbage.key", "corrupt")
    (tmp / "trunc.key").write_bytes(key.read_bytes()[:200])
    cases["truncated key"] = (model, tmp / "trunc.key", "truncated")
    WatermarkKey(method="uchida", layer="fc2", message="01", tensors={"X": torch.zeros(2, 3)}).save(tmp / "wm.key")
    cases["a watermark key"] = (model, tmp / "wm.key", "not an anti-piracy transform key")
    transform_key(build_transform(TransformConfig("fixed"), (1, 28, 28))).save(tmp / "mnist.key")
    cases["key for other inputs"] = (model, tmp / "mnist.key", "inputs of shape [1, 28, 28]")
    torch.save({"delta": _Payload(tmp / "pwned")}, tmp / "evil.key")
    cases["pickle payload"] = (model, tmp / "evil.key", "")
    cases["missing key"] = (model, tmp / "absent.key", "absent.key")
    (tmp / "trunc.safetensors").write_bytes(model.read_bytes()[:-500])
    cases["truncated model"] = (tmp / "trunc.safetensors", key, "truncated")
    return cases


CASES = ["corrupt key", "truncated key", "a watermark key", "key for other inputs", "pickle payload", "missing key",
         "truncated model"]


@pytest.mark.parametrize("case", CASES)
def test_bad_transform_key_exits_2_with_one_line(case: str, owners, tmp_path: Path) -> None:
    model, key, match = _bad_keys(owners, tmp_path)[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    _assert_bad(invoke("evaluate", model, "--dataset", "digits", "--transform", key), match)
    out = tmp_path / "r.json"
    _assert_bad(invoke("piracy", "one-pair", model, "-t", key, "--out", out), match)
    assert not (tmp_path / "pwned").exists() and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_protect_never_overwrites_and_validates(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "transform.key").write_bytes(b"precious key")
    _assert_bad(invoke("protect", *PROTECT, "--out", tmp_path / "run"), "already exists")
    assert (tmp_path / "run" / "transform.key").read_bytes() == b"precious key"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["transform.key"]
    for args, match in ((["--transform", "rot13"], "unknown transform"), (["--p", "0.9"], "p must be"),
                        (["--distortion", "-1"], "gamma"), (["--model", "nosuchnet"], "nosuchnet")):
        _assert_bad(invoke("protect", *PROTECT, *args, "--out", tmp_path / "o"), match)
        assert not (tmp_path / "o" / "model.safetensors").exists()


def test_model_that_does_not_fit_the_data_is_one_line(owners, tmp_path: Path) -> None:
    from netmark.io import save_model
    from netmark.models import build

    save_model(build("lenet5", in_channels=1, image_size=28, num_classes=10), tmp_path / "big.safetensors")
    _assert_bad(invoke("evaluate", tmp_path / "big.safetensors", "--dataset", "digits"), "does not accept")


def test_colour_inputs_are_protected_in_the_papers_range(tmp_path: Path) -> None:
    """§3.2: colour images in [-1, 1]; the key and the model file record it, evaluate follows it."""
    from netmark.access import transform_from_key
    from netmark.access.inputs import to_range
    from netmark.data import load
    from netmark.io import load_model, read_metadata
    from netmark.training import evaluate
    from tests.test_data import write_cifar10

    write_cifar10(tmp_path / "data" / "cifar-10-batches-py", per_batch=8)
    out = tmp_path / "run"
    r = invoke("protect", "--transform", "fixed", "--model", "simple-cnn", "--dataset", "cifar10", "--epochs", "1",
               "--data-dir", tmp_path / "data", "--hidden", "64", "-q", "--out", out)
    assert r.exit_code == 0, r.stderr
    key = WatermarkKey.load(out / "transform.key")
    assert key.config["input_range"] == "symmetric"
    assert read_metadata(out / "model.safetensors")["extra"]["input_range"] == "symmetric"
    d = _evaluate(out / "model.safetensors", "--dataset", "cifar10", "--data-dir", tmp_path / "data",
                  "--transform", out / "transform.key")
    test = to_range(load("cifar10", "test", data_dir=tmp_path / "data", download=False), "symmetric")
    assert test.x.min() < -0.5  # really mapped to [-1, 1]
    net, g = load_model(out / "model.safetensors"), transform_from_key(key)
    assert d["authorized"] == pytest.approx(evaluate(net, test, transform=g)["accuracy"])
    assert d["unauthorized"] == pytest.approx(evaluate(net, test)["accuracy"])
