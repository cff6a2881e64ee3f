"""Verification from weights alone (issue 22, items 1 and 5): any state_dict-like file — netmark or plain
safetensors, a Hugging Face folder (single or sharded), torch.save state_dicts, ONNX initializers — by tensor name,
for methods that read weights; `netmark verify` on a user's own nn.Module saved without an architecture, and
`netmark scan` over a folder with bad files in it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

from netmark.cli import app
from netmark.data import ArrayDataset
from netmark.errors import ArchitectureError, ConfigError, ModelFileError
from netmark.keys import WatermarkKey
from netmark.methods import get_method
from netmark.methods.examples import example
from netmark.methods.uchida import UchidaConfig
from netmark.training import TrainConfig, train
from netmark.weights import WeightFile, weight_shell


class MyNet(nn.Module):
    """A user's own module: not registered, nested names."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.ReLU())
        self.head = nn.Linear(48, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


TRAIN = TrainConfig(epochs=8, lr=0.05, batch_size=32, seed=0, progress=False)


def my_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return MyNet()


@pytest.fixture(scope="module")
def marked(digits_train: ArrayDataset) -> tuple[nn.Module, WatermarkKey]:
    method = get_method("uchida")(UchidaConfig(layer="body.1", bits=32))
    model, key, _ = method.embed(my_net(0), digits_train, TRAIN, seed=3, warn=False)
    return model.eval(), key


def run(*args: object) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def test_the_key_records_its_host_tensors(marked) -> None:
    _, key = marked
    assert key.hosts == {"body.1.weight": {"shape": [48, 64], "dtype": "float32"}}


def test_every_format_is_read_by_name(marked, tmp_path: Path) -> None:
    """safetensors (plain, and with a framework prefix), torch.save (also wrapped), a Hugging Face folder (single and
    sharded), pytorch_model.bin and ONNX initializers: the same host tensor."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model, key = marked
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    want = state["body.1.weight"]
    save_file(state, str(tmp_path / "plain.safetensors"))
    save_file({f"module.{k}": v for k, v in state.items()}, str(tmp_path / "ddp.safetensors"))
    torch.save(state, tmp_path / "sd.pt")
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}}, tmp_path / "wrapped.ckpt")
    (tmp_path / "hf").mkdir()
    save_file({f"base_model.model.{k}": v for k, v in state.items()}, str(tmp_path / "hf" / "model.safetensors"))
    (tmp_path / "sharded").mkdir()
    names = sorted(state)
    save_file({k: state[k] for k in names[:2]}, str(tmp_path / "sharded" / "model-00001-of-00002.safetensors"))
    save_file({k: state[k] for k in names[2:]}, str(tmp_path / "sharded" / "model-00002-of-00002.safetensors"))
    index = {"weight_map": {k: f"model-0000{1 if k in names[:2] else 2}-of-00002.safetensors" for k in names}}
    (tmp_path / "sharded" / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "bin").mkdir()
    torch.save(state, tmp_path / "bin" / "pytorch_model.bin")
    inits = [numpy_helper.from_array(v.numpy(), name=k) for k, v in state.items()]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], initializer=inits)
    onnx.save(helper.make_model(graph), str(tmp_path / "m.onnx"))
    method = get_method("uchida")(UchidaConfig(layer="body.1", bits=32))
    for name in ("plain.safetensors", "ddp.safetensors", "sd.pt", "wrapped.ckpt", "hf", "sharded", "bin", "m.onnx"):
        f = WeightFile(tmp_path / name)
        assert torch.equal(f.tensors(key.hosts)["body.1.weight"], want), name
        res = method.verify_weights(f, key)
        assert res.detected and res.details["read"].startswith("weights only"), name


def test_missing_mismatched_and_bad_tensors_are_one_line_errors(marked, tmp_path: Path) -> None:
    model, key = marked
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file({"body.2.weight": state["body.1.weight"]}, str(tmp_path / "renamed.safetensors"))
    with pytest.raises(ArchitectureError, match=r"no tensor 'body.1.weight'.*closest: body.2.weight"):
        WeightFile(tmp_path / "renamed.safetensors").tensors(key.hosts)
    save_file({"body.1.weight": torch.zeros(48, 63)}, str(tmp_path / "shape.safetensors"))
    with pytest.raises(ArchitectureError, match=r"shape \(48, 63\).*\(48, 64\)"):
        WeightFile(tmp_path / "shape.safetensors").tensors(key.hosts)
    save_file({"body.1.weight": torch.zeros(48, 64, dtype=torch.int32)}, str(tmp_path / "int.safetensors"))
    with pytest.raises(ModelFileError, match="int32"):
        WeightFile(tmp_path / "int.safetensors").tensors(key.hosts)
    save_file({"body.1.weight": torch.full((48, 64), float("nan"))}, str(tmp_path / "nan.safetensors"))
    with pytest.raises(ModelFileError, match="NaN"):
        WeightFile(tmp_path / "nan.safetensors").tensors(key.hosts)
    (tmp_path / "trunc.safetensors").write_bytes((tmp_path / "renamed.safetensors").read_bytes()[:40])
    with pytest.raises(ModelFileError, match="corrupt"):
        WeightFile(tmp_path / "trunc.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match="without a model file"):
        WeightFile(tmp_path / "empty")
    with pytest.raises(ConfigError, match="not on weights alone"):
        get_method("adi")(example("adi")).verify_weights(tmp_path / "renamed.safetensors", key)


def test_weight_shell_holds_linear_and_conv_layers() -> None:
    shell = weight_shell({"a.b.weight": torch.ones(3, 4), "a.b.bias": torch.zeros(3),
                          "c.weight": torch.ones(2, 3, 5, 5)})
    mods = dict(shell.named_modules())
    assert isinstance(mods["a.b"], nn.Linear) and isinstance(mods["c"], nn.Conv2d) and mods["c"].bias is None
    with pytest.raises(ArchitectureError, match="dimensions"):
        weight_shell({"x.weight": torch.ones(3)})


def test_a_users_own_module_verifies_from_the_cli(marked, digits_train: ArrayDataset, tmp_path: Path) -> None:
    """Issue 22's first acceptance line: a user-defined nn.Module (not registered) marked with Uchida, saved with
    torch.save(state_dict) and with safetensors: `netmark verify FILE --key` detects it (read by name, no
    architecture); an independently trained copy is not detected; Tartaglione (every layer's tensors) too."""
    model, key = marked
    key.save(tmp_path / "owner.key")
    torch.save(model.state_dict(), tmp_path / "mine.pt")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "mine.safetensors"))
    other = my_net(9)
    train(other, digits_train, TrainConfig(epochs=8, lr=0.05, batch_size=32, seed=9, progress=False))
    torch.save(other.state_dict(), tmp_path / "other.pt")
    for name in ("mine.pt", "mine.safetensors"):
        r = run("verify", tmp_path / name, "--key", tmp_path / "owner.key")
        assert r.exit_code == 0 and "DETECTED" in r.stdout and "weights only" in r.stdout, r.output
    r = run("verify", tmp_path / "other.pt", "--key", tmp_path / "owner.key")
    assert r.exit_code == 1 and "NOT DETECTED" in r.stdout, r.output
    r = run("attack", "prune", tmp_path / "mine.pt", "--rate", "0.5", "--out", tmp_path / "pruned.pt")
    assert r.exit_code == 0, r.output  # a tensor-by-tensor attack runs on the state dict, names kept
    pruned = torch.load(tmp_path / "pruned.pt", weights_only=True)
    assert list(pruned) == list(model.state_dict()) and float((pruned["body.1.weight"] == 0).float().mean()) == 0.5
    r = run("verify", tmp_path / "pruned.pt", "--key", tmp_path / "owner.key")
    assert r.exit_code in (0, 1) and "bits match" in r.stdout, r.output
    r = run("attack", "permute", tmp_path / "mine.pt", "--out", tmp_path / "p.pt")  # needs the model's graph
    assert r.exit_code == 2 and "records no architecture" in r.stderr and not (tmp_path / "p.pt").exists()
    tart = get_method("tartaglione")(example("tartaglione"))
    tmodel, tkey, _ = tart.embed(my_net(0), digits_train, TRAIN, seed=4, warn=False)
    assert set(tkey.hosts or {}) == {"body.1.weight", "body.1.bias", "head.weight", "head.bias"}
    torch.save(tmodel.state_dict(), tmp_path / "t.pt")
    assert tart.verify_weights(tmp_path / "t.pt", tkey).detected
    assert not tart.verify_weights(tmp_path / "other.pt", tkey).detected


def test_scan_reports_every_file_and_never_stops(marked, tmp_path: Path) -> None:
    model, key = marked
    key.save(tmp_path / "owner.key")
    (tmp_path / "zoo" / "deep").mkdir(parents=True)
    torch.save(model.state_dict(), tmp_path / "zoo" / "a.pt")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp_path / "zoo" / "deep" / "b.safetensors"))
    (tmp_path / "zoo" / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{junk")
    torch.save({"x": torch.zeros(2)}, tmp_path / "zoo" / "other.pt")
    (tmp_path / "zoo" / "notes.txt").write_text("not a model")
    r = run("scan", tmp_path / "zoo", tmp_path / "missing.pt", "--key", tmp_path / "owner.key", "--jsonl")
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    by = {Path(row["path"]).name: row for row in rows}
    assert set(by) == {"a.pt", "b.safetensors", "broken.safetensors", "other.pt", "missing.pt"}
    assert by["a.pt"]["detected"] and by["b.safetensors"]["detected"]
    assert "corrupt" in by["broken.safetensors"]["error"] and "no tensor" in by["other.pt"]["error"]
    assert "does not exist" in by["missing.pt"]["error"]
    assert "scanned 5 model(s): 2 detected, 3 unreadable" in r.stderr
    r = run("scan", tmp_path / "zoo" / "other.pt", "--key", tmp_path / "owner.key")
    assert r.exit_code == 1 and "error" in r.stdout
    r = run("scan", tmp_path / "zoo", "--key", tmp_path / "zoo" / "a.pt")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1


def my_net_factory() -> nn.Module:
    """``--model-factory tests.test_weights:my_net_factory``."""
    return MyNet()


def test_a_method_that_runs_the_model_uses_the_model_factory(digits_train: ArrayDataset, tmp_path: Path) -> None:
    """DeepSigns white reads activations, so it needs the model itself: a plain state dict of a user's module is
    refused without --model-factory (one line, exit 2) and verified with it; the report names the factory."""
    method = get_method("deepsigns")(replace(example("deepsigns"), layer="body.1"))
    model, key, _ = method.embed(my_net(0), digits_train, TRAIN, seed=3, warn=False)
    key.save(tmp_path / "owner.key")
    torch.save(model.state_dict(), tmp_path / "mine.pt")
    r = run("verify", tmp_path / "mine.pt", "--key", tmp_path / "owner.key")
    assert r.exit_code == 2 and "needs the model itself" in r.stderr, r.output
    r = run("verify", tmp_path / "mine.pt", "--key", tmp_path / "owner.key", "--model-factory",
            "tests.test_weights:my_net_factory", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["model_factory"] == "tests.test_weights:my_net_factory", r.output
    r = run("attack", "permute", tmp_path / "mine.pt", "--model-factory", "tests.test_weights:my_net_factory",
            "--set", "seed=2", "--out", tmp_path / "permuted.pt")
    assert r.exit_code == 0, r.output  # an attack that needs the module's graph, on the factory's model
    permuted = torch.load(tmp_path / "permuted.pt", weights_only=True)
    assert list(permuted) == list(model.state_dict())
    assert not torch.equal(permuted["body.1.weight"], model.state_dict()["body.1.weight"])
    r = run("scan", tmp_path / "mine.pt", tmp_path / "permuted.pt", "--key", tmp_path / "owner.key", "--jsonl",
            "--model-factory", "tests.test_weights:my_net_factory")
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert r.exit_code == 0 and rows[0]["detected"] and rows[1]["error"] is None, r.output
    for bad, match in (("tests.test_weights", "package.module:function"), ("tests.nope:f", "No module"),
                       ("tests.test_weights:missing", "missing"), ("tests.test_weights:my_net", "my_net")):
        r = run("verify", tmp_path / "mine.pt", "--key", tmp_path / "owner.key", "--model-factory", bad)
        assert r.exit_code == 2 and match in r.stderr and r.stderr.count("\n") == 1, (bad, r.output)


class Mixed(nn.Module):
    """Embedding, Conv1d and Conv3d hosts besides a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 32)
        self.conv = nn.Conv1d(32, 24, 3)
        self.vol = nn.Conv3d(2, 8, 3)
        self.head = nn.Linear(24, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(self.emb(x).transpose(1, 2)).mean(-1))


@pytest.mark.parametrize("layer", ["emb", "conv", "vol"])
def test_embedding_and_conv1d_3d_layers_host_a_uchida_mark(layer: str, tmp_path: Path) -> None:
    """Item 3: any host layer. The mark is put into the host weights directly (Uchida's embed_without_training),
    read in memory and from a torch.save state dict by name; an unmarked copy is not detected."""
    from netmark.methods.uchida import embed_without_training

    torch.manual_seed(0)
    model = Mixed()
    method = get_method("uchida")(UchidaConfig(layer=layer, bits=24))
    key = method.create_key(model, seed=2)
    assert key.hosts is not None and list(key.hosts) == [f"{layer}.weight"]
    embed_without_training(model, key, lam=1000.0, steps=400, lr=0.05)
    assert method.verify(model, key).detected
    torch.save(model.state_dict(), tmp_path / "m.pt")
    assert method.verify_weights(tmp_path / "m.pt", key).detected
    torch.manual_seed(1)
    torch.save(Mixed().state_dict(), tmp_path / "other.pt")
    assert not method.verify_weights(tmp_path / "other.pt", key).detected
