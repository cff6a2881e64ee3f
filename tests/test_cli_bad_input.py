"""Bad input found by an adversarial trial (issue 18, item 7): every case ends in one ``netmark: error:`` line on
stderr and exit code 2, before any training, and writes nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from netmark.cli import app
from netmark.io import save_model
from netmark.keys import WatermarkKey
from netmark.methods.uchida import Uchida, UchidaConfig
from tests.conftest import make_cnn

runner = CliRunner()
CNN_ARCH = {"name": "simple-cnn", "args": {"in_channels": 1, "image_size": 8, "num_classes": 10}}


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def assert_bad(r, match: str) -> str:
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("netmark: error:"), r.stderr
    assert "Traceback" not in r.stderr and match in lines[0], lines[0]
    return lines[0]


def _craft(path: Path, arch: dict, state: dict[str, torch.Tensor] | None = None) -> Path:
    """A small safetensors file whose netmark metadata names ``arch`` (the tensors need not fit it)."""
    meta = {"netmark": json.dumps({"arch": arch, "netmark_version": "0.1.0", "format_version": 1, "extra": {}})}
    save_file(state or {"fc1.weight": torch.zeros(2, 2)}, str(path), metadata=meta)
    return path


def _retyped(path: Path, convert: Callable[[torch.Tensor], torch.Tensor]) -> Path:
    state = {k: (convert(v) if k == "conv2.weight" else v).contiguous() for k, v in make_cnn().state_dict().items()}
    return _craft(path, CNN_ARCH, state)


def _pickle_named_safetensors(path: Path) -> Path:
    torch.save(make_cnn().state_dict(), path)
    return path


MODEL_FILES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "pickle named .safetensors": (_pickle_named_safetensors, "holds a torch.save/pickle file"),
    "num_classes=1e15": (lambda p: _craft(p, {"name": "mlp", "args": {"num_classes": 10**15}}), "over the limit"),
    "num_classes=1e15 (float)": (lambda p: _craft(p, {"name": "mlp", "args": {"num_classes": 1e15}}),
                                 "must be an int"),
    "hidden=1e12": (lambda p: _craft(p, {"name": "mlp", "args": {"hidden": 10**12}}), "over the limit"),
    "image_size=1e6": (lambda p: _craft(p, {"name": "simple-cnn", "args": {"image_size": 10**6}}), "over the limit"),
    "sizes past int64": (lambda p: _craft(p, {"name": "mlp", "args": {"num_classes": 10**15, "hidden": 10**12}}),
                         "impossible size"),
    "num_classes=1.5e6 in a small file": (
        lambda p: _craft(p, {"name": "mlp", "args": {"in_channels": 3, "image_size": 32, "num_classes": 1_500_000}}),
        "does not fit this architecture"),
    "60 hidden layers of 4096": (lambda p: _craft(p, {"name": "mlp", "args": {"hidden": [4096] * 60}}),
                                 "over the limit"),
    "host tensor stored as int32": (lambda p: _retyped(p, lambda t: (t * 100).to(torch.int32)), "stored as int32"),
    "host tensor stored as bool": (lambda p: _retyped(p, lambda t: t > 0), "stored as bool"),
}


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("key") / "owner.key"
    net = make_cnn()
    Uchida(UchidaConfig(layer="conv2", bits=32)).create_key(net, seed=1).save(out)
    return out


def _commands(model: Path, key: Path, out: Path) -> dict[str, list[str | Path]]:
    return {
        "verify": ["verify", model, "--key", key],
        "verify --json": ["verify", model, "--key", key, "--json"],
        "attack prune": ["attack", "prune", model, "--out", out / "p.safetensors"],
        "attack distill": ["attack", "distill", model, "--epochs", "1", "--out", out / "d.safetensors"],
        "serve": ["serve", model, "--port", "0"],
        "embed --from": ["embed", "--from", model, "--epochs", "1", "-q", "--out", out / "e"],
        "evaluate": ["evaluate", model],
        "evaluate --json": ["evaluate", model, "--json"],
    }


@pytest.mark.parametrize("command", ["verify", "verify --json", "attack prune", "attack distill", "serve",
                                     "embed --from", "evaluate", "evaluate --json"])
@pytest.mark.parametrize("case", list(MODEL_FILES))
def test_bad_model_file_is_refused_fast_and_writes_nothing(case: str, command: str, key: Path, tmp_path: Path) -> None:
    make, match = MODEL_FILES[case]
    model = make(tmp_path / "suspect.safetensors")
    out = tmp_path / "out"
    out.mkdir()
    t0 = time.perf_counter()
    r = invoke(*_commands(model, key, out)[command])
    seconds = time.perf_counter() - t0
    assert_bad(r, match)
    assert seconds < 10, seconds  # refused before anything big is built (a real build of 1e9 floats takes longer)
    assert list(out.iterdir()) == []
    if command.endswith("--json"):
        assert json.loads(r.stdout) == {"error": r.stderr.strip().removeprefix("netmark: error: "), "exit_code": 2}


def test_huge_metadata_is_refused_without_allocating(tmp_path: Path) -> None:
    """The size bound is checked on the meta device: the refusal of a 1e9-parameter model costs milliseconds and no
    memory, and a model that fits the bound but not the file is refused from shapes alone."""
    import resource

    from netmark.io import load_model

    files = [MODEL_FILES[c][0](tmp_path / f"{i}.safetensors") for i, c in
             enumerate(["60 hidden layers of 4096", "num_classes=1.5e6 in a small file", "hidden=1e12"])]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    for f in files:
        with pytest.raises(Exception, match=r"over the limit|does not fit"):
            load_model(f)
    assert time.perf_counter() - t0 < 2.0
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    assert grown_mb < 100, grown_mb  # a real build would take 4 GB (1e9 floats) or 400 MB (96M floats)


def test_the_parameter_limit_is_configurable(monkeypatch) -> None:
    from netmark.models import build
    from netmark.models.registry import DEFAULT_MAX_PARAMS, max_params, param_count

    monkeypatch.delenv("NETMARK_MAX_PARAMS", raising=False)
    assert max_params() == DEFAULT_MAX_PARAMS == 200_000_000
    assert param_count("mlp") == 784 * 64 + 64 + 64 * 10 + 10  # counted on the meta device
    monkeypatch.setenv("NETMARK_MAX_PARAMS", "5e4")
    assert max_params() == 50_000
    with pytest.raises(Exception, match="50,890 parameters, over the limit of 50,000"):
        build("mlp")
    assert build("mlp", max_params=60_000).fc1.weight.shape == (64, 784)  # the argument wins over the variable
    monkeypatch.setenv("NETMARK_MAX_PARAMS", "lots")
    with pytest.raises(Exception, match="NETMARK_MAX_PARAMS"):
        build("mlp")


def _tiny_model(tmp_path: Path) -> Path:
    return save_model(make_cnn(), tmp_path / "m.safetensors")


TRAINING = ["--model", "simple-cnn", "--dataset", "digits", "-q"]


@pytest.mark.parametrize(("args", "match"), [
    (["train", *TRAINING, "--epochs", "0"], "--epochs"),
    (["embed", *TRAINING, "--epochs", "0"], "--epochs"),
    (["protect", "--epochs", "0"], "--epochs"),
    (["train", *TRAINING, "--epochs", "1", "--momentum", "5"], "momentum must be in [0, 1)"),
    (["embed", *TRAINING, "--epochs", "1", "--momentum", "1"], "momentum must be in [0, 1)"),
    (["protect", "--epochs", "1", "--momentum", "5"], "momentum must be in [0, 1)"),
    (["train", *TRAINING, "--epochs", "1", "--lr", "0"], "lr must be > 0"),
    (["train", *TRAINING, "--epochs", "1", "--lr", "nan"], "lr must be a finite"),
    (["train", *TRAINING, "--epochs", "1", "--gamma", "0", "--milestones", "1"], "gamma must be > 0"),
    (["train", *TRAINING, "--batch-size", "0"], "--batch-size"),
    (["train", *TRAINING, "--epochs", "many"], "--epochs"),
    (["train", *TRAINING, "--no-such-option"], "No such option"),
    (["train", *TRAINING, "--epochs", "1", "--device", "warp-drive"], "unknown device 'warp-drive'"),
    (["embed", *TRAINING, "--epochs", "1", "--device", "warp-drive"], "unknown device 'warp-drive'"),
    (["protect", "--epochs", "1", "--device", "warp-drive"], "unknown device 'warp-drive'"),
    (["train", *TRAINING, "--epochs", "1", "--model-arg", "num_classes=3"], "set by the dataset"),
])
def test_bad_training_options_refused_up_front(args: list[str], match: str, tmp_path: Path) -> None:
    t0 = time.perf_counter()
    assert_bad(invoke(*args, "--out", tmp_path / "o"), match)
    assert time.perf_counter() - t0 < 10  # before any training
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["finetune", "overwrite", "distill"])
@pytest.mark.parametrize(("extra", "match"), [(["--epochs", "0"], "--epochs"),
                                              (["--device", "warp-drive"], "unknown device")])
def test_bad_attack_training_options(command: str, extra: list[str], match: str, tmp_path: Path) -> None:
    model = _tiny_model(tmp_path)
    assert_bad(invoke("attack", command, model, *extra, "--out", tmp_path / "a.safetensors"), match)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_a_device_this_machine_lacks_is_refused(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    assert_bad(invoke("train", *TRAINING, "--device", "cuda", "--out", tmp_path / "o"), "no CUDA GPU")
    assert not (tmp_path / "o").exists()


def test_unwritable_output_directory_is_found_before_training(tmp_path: Path) -> None:
    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux's /proc (a directory nobody, root included, can create files in)")
    (tmp_path / "file").write_bytes(b"x")
    for out, match in ((tmp_path / "file" / "sub", "is not a directory"), (Path("/proc/netmark-out"), "not writable")):
        t0 = time.perf_counter()
        assert_bad(invoke("train", *TRAINING, "--epochs", "50", "--out", out), match)
        assert time.perf_counter() - t0 < 10  # 50 epochs were not trained first
    model = _tiny_model(tmp_path)
    assert_bad(invoke("attack", "finetune", model, "--epochs", "50", "--out", "/proc/netmark.safetensors"),
               "not writable")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "m.safetensors"]


def test_read_only_directory_is_found_before_training(tmp_path: Path) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes into read-only directories (the /proc case above covers root)")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert_bad(invoke("train", *TRAINING, "--epochs", "50", "--out", ro / "run"), "not writable")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_range_error_is_one_line_with_json_too() -> None:
    r = invoke("verify", "m.safetensors", "--key", "k.key", "--alpha", "x", "--json")
    line = assert_bad(r, "--alpha")
    assert json.loads(r.stdout) == {"error": line.removeprefix("netmark: error: "), "exit_code": 2}
    assert "╭" not in r.stderr and "Usage:" not in r.stderr


def test_a_directory_is_not_a_missing_file(tmp_path: Path, key: Path) -> None:
    assert_bad(invoke("verify", tmp_path, "--key", key), f"{tmp_path} is a directory without a model file")
    assert_bad(invoke("verify", tmp_path / "absent.safetensors", "--key", key), "does not exist")
    model = _tiny_model(tmp_path)
    assert_bad(invoke("verify", model, "--key", tmp_path), f"key file {tmp_path} is a directory")


def test_train_config_validates_its_ranges() -> None:
    from netmark.errors import ConfigError
    from netmark.training import TrainConfig

    for bad in ({"momentum": 5.0}, {"momentum": 1.0}, {"momentum": -0.1}, {"lr": 0.0}, {"lr": float("inf")},
                {"gamma": 0.0}, {"weight_decay": -1.0}, {"batch_size": 0}):
        with pytest.raises(ConfigError):
            TrainConfig(**bad)  # type: ignore[arg-type]
    assert TrainConfig(momentum=0.0).momentum == 0.0 and TrainConfig(momentum=0.99).momentum == 0.99


def test_the_refused_key_file_is_untouched(key: Path, tmp_path: Path) -> None:
    """Sanity of the fixture the table uses: the key itself is valid."""
    assert WatermarkKey.load(key).method == "uchida"
