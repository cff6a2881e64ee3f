"""``netmark embed --identity`` / ``netmark verify --claim`` (issue 20, items 3 and 5) on digits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from netmark.cli import app
from netmark.identity import load_identity

runner = CliRunner()
EMBED = ["embed", "--model", "simple-cnn", "--dataset", "digits", "--epochs", "12", "--lr", "0.05", "--bits", "64",
         "-q"]


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def owner(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("owner")
    assert invoke("identity", "new", "--out", d / "owner.id").exit_code == 0
    r = invoke(*EMBED, "--identity", d / "owner.id", "--out", d / "run")
    assert r.exit_code == 0, r.output
    assert "claim.json" in r.stdout
    return d


def test_the_owners_claim_verifies_step_by_step(owner: Path) -> None:
    run = owner / "run"
    r = invoke("verify", run / "model.safetensors", "--key", run / "owner.key", "--claim", run / "claim.json")
    assert r.exit_code == 0 and "CLAIM VERIFIED" in r.stdout, r.output
    for step in ("signature", "method", "opening", "root", "material", "watermark"):
        assert f"ok  {step}:" in r.stdout
    d = json.loads(invoke("verify", run / "model.safetensors", "--key", run / "owner.key", "--claim",
                          run / "claim.json", "--json").stdout)
    assert d["claim"]["ok"] is True and d["detected"] is True and d["key_seeded"] is False


def test_without_a_claim_the_answer_says_it_is_unverified(owner: Path) -> None:
    run = owner / "run"
    r = invoke("verify", run / "model.safetensors", "--key", run / "owner.key")
    assert r.exit_code == 0 and "unverified claim" in r.stdout
    d = json.loads(invoke("verify", run / "model.safetensors", "--key", run / "owner.key", "--json").stdout)
    assert d["claim"] is None


def test_back_dated_and_foreign_claims_are_rejected(owner: Path, tmp_path: Path) -> None:
    run = owner / "run"
    c = json.loads((run / "claim.json").read_text())
    c["created"] = "2019-01-01T00:00:00+00:00"
    (tmp_path / "old.json").write_text(json.dumps(c))
    r = invoke("verify", run / "model.safetensors", "--key", run / "owner.key", "--claim", tmp_path / "old.json")
    assert r.exit_code == 1 and "CLAIM REJECTED (signature" in r.stdout, r.output
    # a thief's own valid claim (his identity, his key on the stolen model) does not open with the owner's key
    assert invoke("identity", "new", "--out", tmp_path / "thief.id").exit_code == 0
    r = invoke(*EMBED, "--epochs", "1", "--identity", tmp_path / "thief.id", "--allow-undetected", "--out",
               tmp_path / "thief")
    assert r.exit_code == 0, r.output
    r = invoke("verify", run / "model.safetensors", "--key", run / "owner.key", "--claim",
               tmp_path / "thief" / "claim.json")
    assert r.exit_code == 1 and "CLAIM REJECTED (opening" in r.stdout, r.output
    # and his own key under his own claim is not in the owner's model
    r = invoke("verify", run / "model.safetensors", "--key", tmp_path / "thief" / "owner.key", "--claim",
               tmp_path / "thief" / "claim.json")
    assert r.exit_code == 1 and "CLAIM REJECTED (watermark" in r.stdout, r.output


def test_bad_input_and_no_private_material_anywhere(owner: Path, tmp_path: Path) -> None:
    run = owner / "run"
    (tmp_path / "bad.json").write_text('{"schema": "netmark-claim/1"')
    r = invoke("verify", run / "model.safetensors", "--key", run / "owner.key", "--claim", tmp_path / "bad.json")
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1 and "not a JSON claim" in r.stderr
    r = invoke(*EMBED, "--identity", owner / "owner.id", "--key-seed", "1", "--out", tmp_path / "x")
    assert r.exit_code == 2 and "--key-seed" in r.stderr and not (tmp_path / "x" / "owner.key").exists()
    raw = load_identity(owner / "owner.id").private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    for f in run.iterdir():
        data = f.read_bytes()
        assert raw not in data and raw.hex().encode() not in data, f.name


def test_a_claim_through_a_prediction_url(tmp_path: Path) -> None:
    """Adi behind `netmark serve`'s server on 127.0.0.1: the claim's material is re-derived on a fresh model of the
    key's architecture, the watermark decided from the server's answers."""
    from netmark.io import load_model
    from netmark.serve import make_server

    assert invoke("identity", "new", "--out", tmp_path / "owner.id").exit_code == 0
    r = invoke("embed", "--method", "adi", "--model", "simple-cnn", "--dataset", "digits", "--epochs", "12", "--lr",
               "0.05", "--method-arg", "per_batch=16", "-q", "--identity", tmp_path / "owner.id", "--out",
               tmp_path / "run")
    assert r.exit_code == 0, r.output
    run = tmp_path / "run"
    server = make_server(load_model(run / "model.safetensors"), port=0)
    server.start()
    try:
        r = invoke("verify", server.url, "--key", run / "owner.key", "--claim", run / "claim.json")
        assert r.exit_code == 0 and "CLAIM VERIFIED" in r.stdout and "ok  material:" in r.stdout, r.output
        c = json.loads((run / "claim.json").read_text())
        c["created"] = "2019-01-01T00:00:00+00:00"
        (tmp_path / "old.json").write_text(json.dumps(c))
        r = invoke("verify", server.url, "--key", run / "owner.key", "--claim", tmp_path / "old.json")
        assert r.exit_code == 1 and "CLAIM REJECTED (signature" in r.stdout, r.output
    finally:
        server.shutdown()
