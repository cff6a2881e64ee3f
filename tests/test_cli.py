"""The CLI end to end on digits, and the bad-input table: one stderr line, exit 2, nothing written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from netmark.cli import app
from netmark.keys import WatermarkKey

runner = CliRunner()
EMBED = ["--model", "simple-cnn", "--dataset", "digits", "--epochs", "12", "--lr", "0.05", "--bits", "64", "-q"]


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def owner(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("owner")
    r = invoke("embed", *EMBED, "--seed", "3", "--key-seed", "3", "--out", out, "--force")
    assert r.exit_code == 0, r.stderr
    return out


def test_embed_writes_release_key_and_report(owner: Path) -> None:
    assert sorted(p.name for p in owner.iterdir()) == ["model.safetensors", "owner.key", "report.json"]
    rep = json.loads((owner / "report.json").read_text())
    assert rep["bit_error_rate"] == 0.0 and rep["test_accuracy"] > 0.85 and rep["situation"] == "train-to-embed"
    assert rep["key_fingerprint"] == WatermarkKey.load(owner / "owner.key").fingerprint
    # the release carries no secret: no key tensor, no message in its metadata
    raw = (owner / "model.safetensors").read_bytes()
    assert WatermarkKey.load(owner / "owner.key").message.encode() not in raw


def test_verify_detects_with_json(owner: Path) -> None:
    r = invoke("verify", owner / "model.safetensors", "--key", owner / "owner.key", "--json")
    assert r.exit_code == 0
    d = json.loads(r.stdout)
    assert d["detected"] is True and d["bit_error_rate"] == 0.0 and d["method"] == "uchida" and d["p_value"] < 1e-6


def test_attacks_then_verify(owner: Path, tmp_path: Path) -> None:
    model, key = owner / "model.safetensors", owner / "owner.key"
    r = invoke("attack", "prune", model, "--rate", "0.65", "--layer", "conv2", "--out", tmp_path / "p.safetensors")
    assert r.exit_code == 0, r.stderr
    assert invoke("verify", tmp_path / "p.safetensors", "--key", key).exit_code == 0
    r = invoke("attack", "quantize", model, "--bits", "4", "--out", tmp_path / "q.safetensors")
    assert r.exit_code == 0, r.stderr
    assert invoke("verify", tmp_path / "q.safetensors", "--key", key).exit_code == 0
    r = invoke("attack", "finetune", model, "--dataset", "digits", "--epochs", "2", "-q",
               "--out", tmp_path / "f.safetensors")
    assert r.exit_code == 0, r.stderr
    assert invoke("verify", tmp_path / "f.safetensors", "--key", key).exit_code == 0
    r = invoke("attack", "finetune", model, "--dataset", "digits", "--classes", "5,6,7,8,9", "--epochs", "1", "-q",
               "--out", tmp_path / "d.safetensors")
    assert r.exit_code == 0, r.stderr
    r = invoke("verify", tmp_path / "d.safetensors", "--key", key, "--json")  # 5-class head, same host layer
    assert r.exit_code == 0 and json.loads(r.stdout)["bit_error_rate"] == 0.0
    r = invoke("attack", "overwrite", model, "--seed", "9", "--bits", "64", "--layer", "conv2", "--epochs", "1", "-q",
               "--dataset", "digits", "--out", tmp_path / "o.safetensors", "--key-out", tmp_path / "thief.key")
    assert r.exit_code == 0, r.stderr
    assert WatermarkKey.load(tmp_path / "thief.key").seed == 9


def test_compression_attacks_then_verify(owner: Path, tmp_path: Path) -> None:
    """Tartaglione et al. 2021's fixed-point compression at 8 bits and an fp16 checkpoint keep the watermark."""
    from netmark.io import load_model, read_metadata

    model, key = owner / "model.safetensors", owner / "owner.key"
    r = invoke("attack", "fixed-point", model, "--bits", "8", "--out", tmp_path / "fx.safetensors")
    assert r.exit_code == 0, r.stderr
    assert read_metadata(tmp_path / "fx.safetensors")["extra"]["attack"]["fixed-point"]["bits"] == 8
    assert invoke("verify", tmp_path / "fx.safetensors", "--key", key).exit_code == 0
    r = invoke("attack", "fixed-point", model, "--bits", "3", "--layer", "conv2", "--rounding", "nearest",
               "--out", tmp_path / "fx3.safetensors")
    assert r.exit_code == 0, r.stderr
    before, after = load_model(model), load_model(tmp_path / "fx3.safetensors")
    assert torch.equal(before.conv1.weight, after.conv1.weight)
    assert len(torch.unique(after.conv2.weight)) <= 7  # sign + 2 magnitude bits
    for dtype in ("fp16", "int8"):
        r = invoke("attack", "roundtrip", model, "--dtype", dtype, "--out", tmp_path / f"{dtype}.safetensors")
        assert r.exit_code == 0, r.stderr
        assert invoke("verify", tmp_path / f"{dtype}.safetensors", "--key", key).exit_code == 0


@pytest.mark.parametrize("args,match", [
    (["fixed-point", "--bits", "1"], "2..32"),
    (["fixed-point", "--bits", "40"], "2..32"),
    (["fixed-point", "--rounding", "floor"], "rounding"),
    (["fixed-point", "--layer", "conv9"], "conv9"),
    (["roundtrip", "--dtype", "int4"], "fp16, bf16, int8"),
])
def test_bad_compression_attack_values_write_nothing(args: list[str], match: str, tmp_path: Path) -> None:
    from netmark.io import save_model
    from tests.conftest import make_cnn

    model = save_model(make_cnn(), tmp_path / "m.safetensors")
    out = tmp_path / "out.safetensors"
    _assert_bad(invoke("attack", args[0], model, *args[1:], "--out", out), match)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
    out.write_bytes(b"precious")
    _assert_bad(invoke("attack", args[0], model, "--out", out), "--force")
    assert out.read_bytes() == b"precious"


def test_independent_model_not_detected(owner: Path, tmp_path: Path) -> None:
    r = invoke("train", "--model", "simple-cnn", "--dataset", "digits", "--epochs", "3", "--lr", "0.05", "--seed", "42",
               "-q", "--out", tmp_path)
    assert r.exit_code == 0, r.stderr
    r = invoke("verify", tmp_path / "model.safetensors", "--key", owner / "owner.key")
    assert r.exit_code == 1 and r.stdout.startswith("NOT DETECTED")


def _assert_bad(r, match: str) -> None:
    assert r.exit_code == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("netmark: error:"), r.stderr
    assert "Traceback" not in r.stderr and match in lines[0]


class _Payload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def _bad_inputs(owner: Path, tmp: Path) -> dict[str, tuple[Path, Path, str]]:
    model, key = owner / "model.safetensors", owner / "owner.key"
    k = WatermarkKey.load(key)
    cases: dict[str, tuple[Path, Path, str]] = {}
    (tmp / "garbage.key").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    cases["malformed key"] = (model, tmp / "garbage.key", "corrupt")
    (tmp / "trunc.key").write_bytes(key.read_bytes()[:100])
    cases["truncated key"] = (model, tmp / "trunc.key", "truncated")
    (tmp / "trunc.safetensors").write_bytes(model.read_bytes()[:-500])
    cases["truncated model"] = (tmp / "trunc.safetensors", key, "truncated")
    from netmark.models import build

    torch.save(build("mlp", in_channels=1, image_size=8, num_classes=10).state_dict(), tmp / "mlp.pt")
    cases["other architecture"] = (tmp / "mlp.pt", key, "does not fit")
    missing = WatermarkKey(method="uchida", layer="conv9", message=k.message, tensors=k.tensors, config=k.config,
                           arch=k.arch, seed=1)
    missing.save(tmp / "missing.key")
    cases["missing layer"] = (model, tmp / "missing.key", "no layer 'conv9'")
    from netmark.io import load_model

    net = load_model(model)
    state = net.state_dict()
    state["conv2.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp / "nan.pt")
    cases["NaN weights"] = (tmp / "nan.pt", key, "NaN")
    torch.save({"conv1.weight": _Payload(tmp / "pwned")}, tmp / "evil.pt")
    cases["pickle payload"] = (tmp / "evil.pt", key, "full unpickling")
    cases["missing model"] = (tmp / "absent.safetensors", key, "does not exist")
    return cases


CASES = ["malformed key", "truncated key", "truncated model", "other architecture", "missing layer", "NaN weights",
         "pickle payload", "missing model"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_verify(case: str, owner: Path, tmp_path: Path) -> None:
    model, key, match = _bad_inputs(owner, tmp_path)[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    _assert_bad(invoke("verify", model, "--key", key, "--json"), match)
    assert not (tmp_path / "pwned").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("case", ["truncated model", "NaN weights", "pickle payload", "other architecture"])
def test_bad_input_attack_writes_nothing(case: str, owner: Path, tmp_path: Path) -> None:
    model, key, match = _bad_inputs(owner, tmp_path)[case]
    out = tmp_path / "out.safetensors"
    _assert_bad(invoke("attack", "prune", model, "--arch-from-key", key, "--out", out), match)
    assert not out.exists() and not (tmp_path / "pwned").exists()


def test_outputs_never_overwritten_without_force(owner: Path, tmp_path: Path) -> None:
    target = tmp_path / "p.safetensors"
    target.write_bytes(b"precious")
    _assert_bad(invoke("attack", "prune", owner / "model.safetensors", "--out", target), "--force")
    assert target.read_bytes() == b"precious"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "owner.key").write_bytes(b"precious key")
    _assert_bad(invoke("embed", *EMBED, "--out", tmp_path / "run"), "already exists")
    assert (tmp_path / "run" / "owner.key").read_bytes() == b"precious key"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["owner.key"]


@pytest.mark.parametrize("args,match", [
    (["embed", "--model", "nosuchnet", "--dataset", "digits", "--epochs", "1", "-q"], "nosuchnet"),
    (["embed", "--method", "nosuch", "--dataset", "digits", "--epochs", "1", "-q"], "unknown watermark method"),
    (["embed", "--model", "simple-cnn", "--layer", "conv9", "--bits", "8", "--epochs", "1", "-q"], "conv9"),
    (["train", "--dataset", "nosuchdata", "--epochs", "1", "-q"], "nosuchdata"),
    (["train", "--model", "simple-cnn", "--optimizer", "lbfgs", "--epochs", "1", "-q"], "optimizer"),
    (["embed", "--model", "simple-cnn", "--distill", "--epochs", "1", "-q"], "--from"),
    (["embed", "--model", "simple-cnn", "--variant", "auto", "--epochs", "1", "-q"], "no option --variant"),
])
def test_bad_options(args: list[str], match: str, tmp_path: Path) -> None:
    _assert_bad(invoke(*args, "--out", tmp_path / "o"), match)
    assert not (tmp_path / "o" / "model.safetensors").exists()


def test_help_explains_commands() -> None:
    r = invoke("--help")
    assert r.exit_code == 0
    for cmd in ("train", "embed", "attack", "verify", "demo"):
        assert cmd in r.stdout


def test_python_m_netmark_cli_has_every_command() -> None:
    """`python -m netmark.cli` is the same app as `netmark` (as a module run as __main__, the old cli.py lost the
    commands its other modules registered on the imported copy: protect, evaluate, piracy)."""
    import subprocess
    import sys

    env = {**os.environ, "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-m", "netmark.cli", "--help"], capture_output=True, text=True, env=env,
                       timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    listed = {ln.split()[1] for ln in r.stdout.splitlines() if ln.startswith("│ ") and len(ln.split()) > 2}
    assert {"train", "embed", "verify", "serve", "reproduce", "report", "models", "demo", "protect", "evaluate",
            "attack", "piracy"} <= listed, r.stdout


@pytest.mark.parametrize("situation,extra", [("fine-tune-to-embed", []), ("distill-to-embed", ["--distill"])])
def test_embed_from_a_trained_model(situation: str, extra: list[str], tmp_path: Path) -> None:
    """Uchida §2.2: embedding while fine-tuning a trained model, or distilling it without labels."""
    r = invoke("train", "--model", "simple-cnn", "--dataset", "digits", "--epochs", "3", "--lr", "0.05", "-q",
               "--out", tmp_path / "base")
    assert r.exit_code == 0, r.stderr
    r = invoke("embed", *EMBED, "--key-seed", "0", "--from", tmp_path / "base" / "model.safetensors", *extra,
               "--out", tmp_path / "wm")
    assert r.exit_code == 0, r.stderr
    rep = json.loads((tmp_path / "wm" / "report.json").read_text())
    assert rep["situation"] == situation and rep["bit_error_rate"] == 0.0 and rep["test_accuracy"] > 0.85
    wm = tmp_path / "wm"
    assert invoke("verify", wm / "model.safetensors", "--key", wm / "owner.key").exit_code == 0


@pytest.mark.parametrize(("paper", "device", "match"), [("uchida", "cuda", "CPU only"),
                                                         ("chen-wu", "warp-drive", "unknown device")])
def test_reproduce_refuses_a_device_it_cannot_use(paper: str, device: str, match: str, tmp_path: Path) -> None:
    r = invoke("reproduce", paper, "--quick", "--device", device, "--out", tmp_path / "r", "-q")
    _assert_bad(r, match)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("extra", "match"), [((), "--cache-dir"), (("--cache-dir", "C", "--runs", "R99"),
                                                                     "unknown run")])
def test_reproduce_runs_refuses_bad_requests(extra: tuple[str, ...], match: str, tmp_path: Path) -> None:
    args = [str(tmp_path / a) if a == "C" else a for a in extra] or ["--runs", "R0"]
    r = invoke("reproduce", "tartaglione", "--quick", *args, "--out", tmp_path / "r", "-q")
    _assert_bad(r, match)
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- a newcomer's first hour (issue 18, item 6)
def test_version() -> None:
    from netmark import __version__

    r = invoke("--version")
    assert r.exit_code == 0 and r.stdout.startswith(f"netmark {__version__} (torch ")


def test_verbose_logs_one_line_per_epoch_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    import logging

    level = logging.getLogger("netmark").level
    args = ["train", "--model", "simple-cnn", "--dataset", "digits", "--epochs", "2", "--train-size", "200"]
    r = invoke("-v", *args, "--out", tmp_path / "v")
    assert r.exit_code == 0, r.stderr
    epochs = [ln for ln in r.stderr.splitlines() if ln.startswith("epoch ")]
    assert [ln.split(":")[0] for ln in epochs] == ["epoch 1/2", "epoch 2/2"], r.stderr
    assert "loss" in epochs[0] and "test acc" in epochs[0]
    assert logging.getLogger("netmark").level == level  # restored after the command
    r = invoke(*args, "--out", tmp_path / "q")  # without -v: no per-epoch lines
    assert r.exit_code == 0 and not [ln for ln in r.stderr.splitlines() if ln.startswith("epoch ")]


def test_attack_distill_end_to_end(owner: Path, tmp_path: Path) -> None:
    """A fresh student learns the owner's model's soft predictions: it keeps most of the accuracy and none of
    the white-box mark (digits, simple-cnn, 3 epochs, seed 0)."""
    from netmark.io import read_metadata

    out = tmp_path / "student.safetensors"
    r = invoke("attack", "distill", owner / "model.safetensors", "--epochs", "3", "--out", out)
    assert r.exit_code == 0, r.stderr
    meta = read_metadata(out)["extra"]["attack"]["distill"]
    assert meta["epochs"] == 3 and meta["temperature"] == 4.0 and meta["dataset"] == "digits"
    r = invoke("evaluate", out, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["unauthorized"] > 0.7  # measured 0.883
    assert invoke("verify", out, "--key", owner / "owner.key").exit_code == 1  # measured 29/64 bits
    _assert_bad(invoke("attack", "distill", owner / "model.safetensors", "--out", out), "--force")


def test_device_options_exist_where_training_happens() -> None:
    for cmd in (["train"], ["embed"], ["protect"], ["attack", "finetune"], ["attack", "overwrite"],
                ["attack", "distill"]):
        r = runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "200"})
        assert r.exit_code == 0 and "--device" in r.stdout, cmd
    r = runner.invoke(app, ["attack", "outlier-reset", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "--device" not in r.stdout  # a data-free attack trains nothing


def test_without_out_says_where_it_wrote(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = invoke("train", "--model", "simple-cnn", "--dataset", "digits", "--epochs", "1", "--train-size", "100", "-q")
    assert r.exit_code == 0, r.stderr
    assert "no --out given" in r.stderr and str(Path("runs/plain")) in r.stderr
    assert f"wrote {Path('runs/plain/model.safetensors')}" in r.stdout
    assert (tmp_path / "runs" / "plain" / "model.safetensors").is_file()
    r = invoke("train", "--model", "simple-cnn", "--epochs", "1", "-q", "--out", tmp_path / "given")
    assert r.exit_code == 0 and "no --out given" not in r.stderr


def test_evaluate_help_names_the_ray_extra() -> None:
    r = runner.invoke(app, ["evaluate", "--help"], env={"COLUMNS": "250"})
    assert r.exit_code == 0 and "netmark[ray]" in r.stdout and "'netmark')" not in r.stdout


def test_messages_name_the_unknown_thing_the_same_way(tmp_path: Path) -> None:
    for args, start in ((["train", "--dataset", "nosuch"], "unknown dataset 'nosuch'; known: "),
                        (["train", "--model", "nosuch"], "unknown model 'nosuch'; known: "),
                        (["embed", "--method", "nosuch"], "unknown watermark method 'nosuch'; known: "),
                        (["reproduce", "nosuch"], "unknown reproduction 'nosuch'; known: ")):
        r = invoke(*args, "--out", tmp_path / "o")
        assert r.exit_code == 2 and r.stderr.startswith(f"netmark: error: {start}"), r.stderr


def test_make_demo_needs_no_ray(monkeypatch) -> None:
    """`make demo` installs the package without the test extra, and the demo runs with ray unimportable."""
    import re
    import sys

    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    demo_deps = re.search(r"^demo:(.*)$", makefile, flags=re.M).group(1).split()
    stamp_recipe = re.search(r"^\$\(STAMP\):.*?(?=^\S)", makefile, flags=re.M | re.S).group(0)
    assert "venv" in demo_deps and "[test]" not in stamp_recipe and "ray" not in stamp_recipe
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    r = invoke("demo", "--epochs", "1", "-q")
    assert r.exit_code == 0, r.stderr
    assert "plain (no watermark)" in r.stdout


def test_embed_without_key_seed_draws_a_new_secret_each_time(tmp_path: Path) -> None:
    """Issue 20: identical flags and no --key-seed give two owners different key material (not seed 0's)."""
    keys = []
    for run in ("a", "b"):
        r = invoke("embed", "--model", "simple-cnn", "--dataset", "digits", "--epochs", "1", "--bits", "64", "-q",
                   "--allow-undetected", "--out", tmp_path / run)
        assert r.exit_code == 0, r.output
        keys.append(WatermarkKey.load(tmp_path / run / "owner.key"))
    a, b = keys
    assert not a.seeded and a.seed is None and a.root is not None and a.root != b.root
    assert not torch.equal(a.tensors["X"], b.tensors["X"])
    r = invoke("verify", tmp_path / "a" / "model.safetensors", "--key", tmp_path / "a" / "owner.key", "--json")
    assert json.loads(r.stdout)["key_seeded"] is False


def test_verify_says_a_seeded_key_proves_nothing_against_seed_guessing(owner: Path) -> None:
    r = invoke("verify", owner / "model.safetensors", "--key", owner / "owner.key")
    assert r.exit_code == 0 and "drawn from a seed (--key-seed)" in r.stdout, r.output
    d = json.loads(invoke("verify", owner / "model.safetensors", "--key", owner / "owner.key", "--json").stdout)
    assert d["key_seeded"] is True and d["details"]["seeded"] is True
