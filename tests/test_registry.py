"""The claim registry (issue 20, item 4, offline part) and ``netmark dispute`` (item 6)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netmark.claims import make_claim
from netmark.cli import app
from netmark.identity import new_identity
from netmark.registry import GENESIS, RegistryError, add_claim, head, position, read_registry, verify_registry
from tests.conftest import fixed_identity, two_valid_claims

runner = CliRunner()


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def _three(path: Path) -> list:
    return [add_claim(path, make_claim(new_identity(), "uchida", {"bits": i})[0]) for i in range(3)]


def test_chain_appends_and_finds_claims(tmp_path: Path) -> None:
    reg = tmp_path / "reg.jsonl"
    assert read_registry(reg) == [] and head([]) == GENESIS
    entries = _three(reg)
    got = verify_registry(reg, published=entries[1].hash)
    assert [e.index for e in got] == [0, 1, 2] and got[1].prev == got[0].hash and head(got) == entries[2].hash
    assert position(got, entries[2].claim) == 2 and position(got, make_claim(new_identity(), "adi", {})[0]) is None
    with pytest.raises(RegistryError, match="already registered"):
        add_claim(reg, entries[0].claim)
    with pytest.raises(RegistryError, match="signature"):
        add_claim(reg, replace(make_claim(new_identity(), "adi", {})[0], created="2019-01-01T00:00:00+00:00"))
    assert len(read_registry(reg)) == 3  # refused claims leave it as it was


@pytest.mark.parametrize("tamper, phrase", [
    (lambda ls: [ls[0], ls[1].replace('"method":"uchida"', '"method":"adi"'), ls[2]], "entry 1"),  # edited
    (lambda ls: [ls[0], ls[2]], "entry 1"),  # deleted
    (lambda ls: [ls[1], ls[0], ls[2]], "entry 0"),  # reordered
    (lambda ls: [ls[0], "{not json", ls[2]], "entry 1"),  # damaged
])
def test_tampering_is_found(tmp_path: Path, tamper, phrase: str) -> None:
    reg = tmp_path / "reg.jsonl"
    _three(reg)
    before = reg.read_text()
    reg.write_text("\n".join(tamper(before.splitlines())) + "\n")
    assert reg.read_text() != before  # the tamper changed the file
    with pytest.raises(RegistryError, match=phrase):
        read_registry(reg)
    r = invoke("registry", "verify", "--registry", reg)
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1


def test_truncation_is_found_against_a_published_head(tmp_path: Path) -> None:
    reg = tmp_path / "reg.jsonl"
    entries = _three(reg)
    published = entries[2].hash
    reg.write_text("\n".join(reg.read_text().splitlines()[:2]) + "\n")  # the last entry cut off: still a chain
    assert len(verify_registry(reg)) == 2
    with pytest.raises(RegistryError, match="published head"):
        verify_registry(reg, published=published)
    assert invoke("registry", "verify", "--registry", reg, "--head", published).exit_code == 2


@pytest.fixture(scope="module")
def two_claims(tmp_path_factory, digits_train) -> Path:
    """Both claims hold on the thief's release (tests.conftest.two_valid_claims)."""
    return two_valid_claims(tmp_path_factory.mktemp("dispute"), digits_train)


def _parties(d: Path, thief_claim: str = "thief.json") -> list[Path | str]:
    return ["--claim", d / "owner.json", "--key", d / "owner.key", "--claim", d / thief_claim, "--key", d / "thief.key"]


def test_dispute_orders_valid_claims_by_registry(two_claims: Path, tmp_path: Path) -> None:
    """Both claims hold on the thief's release; without a verified time the dispute is undecided, the registry's
    order decides it, and a back-dated copy of the thief's claim is rejected outright."""
    d = two_claims
    r = invoke("dispute", d / "thief.safetensors", *_parties(d))
    assert r.exit_code == 1 and "undecided" in r.stdout, r.output
    reg = tmp_path / "reg.jsonl"
    assert invoke("registry", "add", d / "owner.json", "--registry", reg).exit_code == 0
    assert invoke("registry", "add", d / "thief.json", "--registry", reg).exit_code == 0
    r = invoke("dispute", d / "thief.safetensors", *_parties(d), "--registry", reg, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["winner"] == str(d / "owner.json") and all(p["valid"] for p in out["parties"])
    c = json.loads((d / "thief.json").read_text())
    c["created"] = "2019-01-01T00:00:00+00:00"
    (tmp_path / "thief-old.json").write_text(json.dumps(c))
    r = invoke("dispute", d / "thief.safetensors", "--claim", d / "owner.json", "--key", d / "owner.key",
               "--claim", tmp_path / "thief-old.json", "--key", d / "thief.key")
    assert r.exit_code == 0 and "REJECTED (signature" in r.stdout and "owner.json wins" in r.stdout, r.output
    assert invoke("dispute", d / "thief.safetensors", "--claim", d / "owner.json", "--key",
                  d / "owner.key").exit_code == 2  # one party is no dispute


def test_a_replayed_claim_loses_the_dispute(two_claims: Path, tmp_path: Path) -> None:
    """The thief re-signs the owner's commitment under his own identity and presents it with the owner's key (which
    he would need to have stolen too): the commitment names the owner's public key, so the opening fails and the owner
    wins without any registry."""
    from netmark.attacks.forgery import re_signed
    from netmark.claims import load_claim, save_claim

    d = two_claims
    save_claim(re_signed(load_claim(d / "owner.json"), fixed_identity(1)), tmp_path / "replayed.json")
    r = invoke("dispute", d / "owner.safetensors", "--claim", d / "owner.json", "--key", d / "owner.key",
               "--claim", tmp_path / "replayed.json", "--key", d / "owner.key")
    assert r.exit_code == 0 and "REJECTED (opening" in r.stdout and "owner.json wins" in r.stdout, r.output


def test_dispute_cross_test_finds_the_source(two_claims: Path) -> None:
    """Both claims hold on the thief's release and neither has a verified time; the parties' originals decide: the
    owner's mark is in the thief's original, the thief's is not in the owner's."""
    d = two_claims
    r = invoke("dispute", d / "thief.safetensors", *_parties(d), "--json")
    assert r.exit_code == 1 and all(p["valid"] for p in json.loads(r.stdout)["parties"]), r.output  # undecided
    r = invoke("dispute", d / "thief.safetensors", *_parties(d), "--original", d / "owner.safetensors",
               "--original", d / "thief.safetensors", "--json")
    out = json.loads(r.stdout)
    assert r.exit_code == 0 and out["winner"] == str(d / "owner.json"), r.output
    assert out["cross_test"]["found"] == [[True, True], [False, True]] and out["cross_test"]["source"] == 0
