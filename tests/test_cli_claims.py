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


def test_image_dependent_labels_need_the_verifiers_reference_models(tmp_path: Path, digits_train) -> None:
    """zhang-noise (one target class): `verify --claim` measures the null on the verifier's `--null-model`s (none:
    not decided, exit 1) and runs the specificity step, also through a prediction URL; `--null-model` without
    `--claim` is refused (exit 2)."""
    from netmark.claims import save_claim
    from netmark.io import save_model
    from netmark.methods import get_method
    from netmark.methods.examples import example
    from netmark.methods.ownership import claimed_key
    from netmark.serve import make_server
    from netmark.training import TrainConfig, train
    from tests.conftest import fixed_identity, fixed_opening, make_cnn

    refs = []
    for seed in (2, 3):
        refs.append(make_cnn(seed=seed))
        train(refs[-1], digits_train, TrainConfig(epochs=3, lr=0.05, seed=seed, progress=False))
        save_model(refs[-1], tmp_path / f"ref{seed}.safetensors")
    method = get_method("zhang-noise")(example("zhang-noise"))
    model = make_cnn(seed=0)
    key, claim = claimed_key(method, model, fixed_identity(0), data=digits_train, opening=fixed_opening(0))
    model, key, _ = method.embed(model, digits_train, TrainConfig(epochs=12, lr=0.05, seed=0, progress=False),
                                 key=key, null_models=refs, warn=False)
    save_model(model, tmp_path / "model.safetensors")
    key.save(tmp_path / "owner.key")
    save_claim(claim, tmp_path / "claim.json")
    args = ["--key", tmp_path / "owner.key", "--claim", tmp_path / "claim.json", "--dataset", "digits"]
    nulls = ["--null-model", tmp_path / "ref2.safetensors", "--null-model", tmp_path / "ref3.safetensors"]
    r = invoke("verify", tmp_path / "model.safetensors", *args)
    assert r.exit_code == 1 and "NO  watermark: not decided" in r.stdout and "--null-model" in r.stdout, r.output
    r = invoke("verify", tmp_path / "model.safetensors", *args, *nulls)
    assert r.exit_code == 0 and "ok  specificity:" in r.stdout and "CLAIM VERIFIED" in r.stdout, r.output
    server = make_server(model, port=0)
    server.start()
    try:
        r = invoke("verify", server.url, *args, *nulls)
        assert r.exit_code == 0 and "ok  specificity:" in r.stdout, r.output
    finally:
        server.shutdown()
    r = invoke("verify", tmp_path / "model.safetensors", "--key", tmp_path / "owner.key", *nulls)
    assert r.exit_code == 2 and "--null-model is for --claim" in r.stderr
