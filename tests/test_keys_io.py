from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from netmark.errors import ArchitectureError, KeyFileError, ModelFileError, OutputExistsError
from netmark.io import load_model, read_metadata, save_model
from netmark.keys import WatermarkKey
from netmark.methods.uchida import Uchida, UchidaConfig
from tests.conftest import make_cnn


@pytest.fixture()
def key(cnn) -> WatermarkKey:
    return Uchida(UchidaConfig(bits=64)).create_key(cnn, seed=3)


def test_key_round_trip(tmp_path: Path, key: WatermarkKey) -> None:
    p = key.save(tmp_path / "owner.key")
    back = WatermarkKey.load(p)
    assert back.fingerprint == key.fingerprint
    assert back.message == key.message and back.layer == "conv2"
    assert torch.equal(back.tensors["X"], key.tensors["X"])
    assert back.arch == key.arch and back.arch["name"] == "simple-cnn"


def test_key_never_overwritten_without_force(tmp_path: Path, key: WatermarkKey) -> None:
    p = key.save(tmp_path / "owner.key")
    before = p.read_bytes()
    other = Uchida(UchidaConfig(bits=64)).create_key(make_cnn(), seed=4)
    with pytest.raises(OutputExistsError):
        other.save(p)
    assert p.read_bytes() == before
    other.save(p, force=True)
    assert WatermarkKey.load(p).fingerprint == other.fingerprint
    assert [f.name for f in tmp_path.iterdir()] == ["owner.key"]  # no temp files left


def test_different_seeds_give_different_keys(cnn) -> None:
    a = Uchida(UchidaConfig(bits=64)).create_key(cnn, seed=1)
    b = Uchida(UchidaConfig(bits=64)).create_key(cnn, seed=2)
    assert a.fingerprint != b.fingerprint and a.message != b.message


def _rewrite_meta(p: Path, key: WatermarkKey, change) -> None:
    fields = {**key._fields(), "fingerprint": key.fingerprint}
    change(fields)
    save_file({"X": key.tensors["X"]}, str(p), metadata={"netmark_key": json.dumps(fields)})


@pytest.mark.parametrize("change,match", [
    (lambda d: d.update(message="0" * 64), "fingerprint"),
    (lambda d: d.update(message="01x"), "malformed message"),
    (lambda d: d.pop("layer"), "missing the field 'layer'"),
    (lambda d: d.update(format_version=99), "format version"),
    (lambda d: d.update(seed="seven"), "malformed field 'seed'"),
    (lambda d: d.update(tensor_names=["Y"]), "holds"),
])
def test_malformed_key_fields(tmp_path: Path, key: WatermarkKey, change, match: str) -> None:
    p = tmp_path / "bad.key"
    _rewrite_meta(p, key, change)
    with pytest.raises(KeyFileError, match=match):
        WatermarkKey.load(p)


def test_tampered_key_tensor_fails_fingerprint(tmp_path: Path, key: WatermarkKey) -> None:
    p = tmp_path / "k.key"
    fields = {**key._fields(), "fingerprint": key.fingerprint}
    save_file({"X": key.tensors["X"] * 2}, str(p), metadata={"netmark_key": json.dumps(fields)})
    with pytest.raises(KeyFileError, match="fingerprint"):
        WatermarkKey.load(p)


@pytest.mark.parametrize("cut", [0, 5, 50, -10])
def test_truncated_key(tmp_path: Path, key: WatermarkKey, cut: int) -> None:
    raw = key.save(tmp_path / "k.key").read_bytes()
    p = tmp_path / "t.key"
    p.write_bytes(raw[:cut])
    with pytest.raises(KeyFileError):
        WatermarkKey.load(p)


def test_model_file_is_not_a_key(tmp_path: Path, cnn) -> None:
    p = save_model(cnn, tmp_path / "m.safetensors")
    with pytest.raises(KeyFileError, match="not a netmark key"):
        WatermarkKey.load(p)


def test_model_round_trip_rebuilds_architecture(tmp_path: Path, cnn) -> None:
    p = save_model(cnn, tmp_path / "m.safetensors", extra={"dataset": "digits"})
    back = load_model(p)
    assert read_metadata(p)["arch"]["name"] == "simple-cnn"
    assert read_metadata(p)["extra"] == {"dataset": "digits"}
    x = torch.rand(3, 1, 8, 8)
    cnn.eval()
    assert torch.equal(back(x), cnn(x))


def test_plain_state_dict_pt_needs_and_uses_arch(tmp_path: Path, cnn, key: WatermarkKey) -> None:
    p = tmp_path / "m.pt"
    torch.save(cnn.state_dict(), p)
    with pytest.raises(ModelFileError, match="no architecture"):
        load_model(p)
    back = load_model(p, arch=key.arch)
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), cnn.state_dict().values(), strict=True))
    torch.save({"state_dict": cnn.state_dict()}, tmp_path / "wrapped.pth")
    assert load_model(tmp_path / "wrapped.pth", arch=key.arch) is not None


class _Payload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_pickle_payload_is_refused_and_never_runs(tmp_path: Path, key: WatermarkKey) -> None:
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pt"
    torch.save({"conv1.weight": _Payload(marker)}, p)
    with pytest.raises(ModelFileError, match="full unpickling"):
        load_model(p, arch=key.arch)
    assert not marker.exists()


def test_truncated_model_file(tmp_path: Path, cnn) -> None:
    raw = save_model(cnn, tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ModelFileError, match="truncated"):
        load_model(tmp_path / "t.safetensors")


def test_wrong_architecture(tmp_path: Path, cnn, key: WatermarkKey) -> None:
    from netmark.models import build

    p = tmp_path / "lenet.pt"
    torch.save(build("lenet5", in_channels=1, image_size=8, num_classes=10, padding=2).state_dict(), p)
    with pytest.raises(ArchitectureError, match="does not fit"):
        load_model(p, arch=key.arch)


def test_nan_weights_refused_on_save_and_load(tmp_path: Path, cnn, key: WatermarkKey) -> None:
    with torch.no_grad():
        cnn.conv1.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ModelFileError, match="NaN"):
        save_model(cnn, tmp_path / "nan.safetensors")
    assert not (tmp_path / "nan.safetensors").exists()
    torch.save(cnn.state_dict(), tmp_path / "nan.pt")
    with pytest.raises(ModelFileError, match="NaN"):
        load_model(tmp_path / "nan.pt", arch=key.arch)


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "nope.safetensors")


def test_plain_state_dict_with_another_head_loads(tmp_path: Path, key: WatermarkKey) -> None:
    """A transfer-learned copy (5-class head) saved as .pt still loads with the key's architecture."""
    from netmark.attacks import replace_head

    five = replace_head(make_cnn(), 5)
    torch.save(five.state_dict(), tmp_path / "five.pt")
    back = load_model(tmp_path / "five.pt", arch=key.arch)
    assert back.fc2.out_features == 5 and torch.equal(back.conv2.weight, five.conv2.weight)


def test_file_permissions_models_public_keys_private(tmp_path: Path, cnn, key: WatermarkKey) -> None:
    old = os.umask(0o022)
    try:
        p = save_model(cnn, tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o644
    assert key.save(tmp_path / "owner.key").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("low_byte", [0x80, 0x50])
def test_safetensors_header_length_never_mistaken_for_a_pickle(tmp_path: Path, cnn, low_byte: int) -> None:
    """A safetensors file starts with its header length (8 bytes, little endian): a length whose low byte
    is 0x80 must not be sniffed as a pickle's PROTO opcode (it used to be: 'records no architecture')."""
    import struct

    for pad in range(0, 512):  # metadata padding until the header length has the wanted low byte
        path = save_model(cnn, tmp_path / f"m{pad}.safetensors", extra={"pad": "x" * pad})
        if path.read_bytes()[0] == low_byte:
            break
    else:
        pytest.fail("no padding gave the wanted header length")
    assert struct.unpack("<Q", path.read_bytes()[:8])[0] % 256 == low_byte
    back = load_model(path)
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), cnn.state_dict().values(), strict=True))
