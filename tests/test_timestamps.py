"""RFC 3161 timestamps on claims (issue 20, item 4), against a local ``openssl ts`` TSA on 127.0.0.1 (tests/tsa.py)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netmark.claims import make_claim
from netmark.cli import app
from netmark.timestamps import TimestampError, load_roots, request_token, token_time
from tests.conftest import fixed_identity, two_valid_claims
from tests.tsa import local_tsa

pytest.importorskip("rfc3161_client")
runner = CliRunner()


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def tsa():
    with local_tsa() as t:
        yield t


def test_a_token_dates_exactly_its_claim(tsa, tmp_path: Path) -> None:
    claim, _ = make_claim(fixed_identity(0), "uchida", {"bits": 64})
    token = request_token(claim, tsa.url)
    roots = load_roots(tsa.root_pem)
    when = token_time(token, claim, roots)
    assert abs((dt.datetime.now(dt.UTC) - when).total_seconds()) < 120
    with pytest.raises(TimestampError, match="does not verify"):
        token_time(token, replace(claim, created="2019-01-01T00:00:00+00:00"), roots)  # back-dated claim
    with pytest.raises(TimestampError, match="does not verify"):
        token_time(token, make_claim(fixed_identity(1), "uchida", {"bits": 64})[0], roots)  # another claim
    with local_tsa() as other, pytest.raises(TimestampError):  # checked against another authority's root
        token_time(token, claim, load_roots(other.root_pem))
    with pytest.raises(TimestampError, match="not a timestamp token"):
        token_time(token[:100], claim, roots)
    with pytest.raises(TimestampError, match="did not answer"):
        request_token(claim, "http://127.0.0.1:9/", timeout=2)
    (tmp_path / "x.pem").write_text("not a certificate")
    with pytest.raises(TimestampError, match="not a PEM certificate"):
        load_roots(tmp_path / "x.pem")


@pytest.fixture(scope="module")
def parties(tmp_path_factory, digits_train, tsa) -> Path:
    """Two claims that both hold on the thief's release (tests.conftest.two_valid_claims), the owner's timestamped
    first."""
    d = two_valid_claims(tmp_path_factory.mktemp("parties"), digits_train)
    for name in ("owner", "thief"):
        r = invoke("timestamp", d / f"{name}.json", "--tsa", tsa.url)
        assert r.exit_code == 0 and (d / f"{name}.tsr").is_file(), r.output
    return d


def test_cli_timestamp_and_verify(parties: Path, tsa) -> None:
    d = parties
    assert invoke("timestamp", d / "owner.json", "--tsa", tsa.url).exit_code == 2  # owner.tsr exists: no --force
    base = ["verify", d / "thief.safetensors", "--key", d / "owner.key", "--claim", d / "owner.json",
            "--tsa-root", tsa.root_pem]
    r = invoke(*base, "--timestamp", d / "owner.tsr")
    assert r.exit_code == 0 and "ok  time: timestamped" in r.stdout and "CLAIM VERIFIED" in r.stdout, r.output
    r = invoke(*base, "--timestamp", d / "thief.tsr")  # the thief's token is not the owner's claim's
    assert r.exit_code == 1 and "CLAIM REJECTED (time" in r.stdout, r.output
    r = invoke("verify", d / "thief.safetensors", "--key", d / "owner.key", "--timestamp", d / "owner.tsr")
    assert r.exit_code == 2 and "--claim" in r.stderr
    (d / "damaged.tsr").write_bytes((d / "owner.tsr").read_bytes()[:200])  # bad input: exit 2, one line
    r = invoke(*base, "--timestamp", d / "damaged.tsr")
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1 and "not a timestamp token" in r.stderr
    (d / "junk.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    r = invoke(*base[:-2], "--tsa-root", d / "junk.pem", "--timestamp", d / "owner.tsr")
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, r.output


def test_dispute_by_timestamp(parties: Path, tsa) -> None:
    d = parties
    two = ["--claim", d / "owner.json", "--key", d / "owner.key", "--claim", d / "thief.json", "--key",
           d / "thief.key", "--tsa-root", tsa.root_pem]
    r = invoke("dispute", d / "thief.safetensors", *two, "--timestamp", d / "owner.tsr", "--timestamp",
               d / "thief.tsr", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["winner"] == str(d / "owner.json") and all(p["valid"] and p["time"] for p in out["parties"])
    # the thief presenting the owner's (earlier) token for his claim: his time step fails, the owner wins alone
    r = invoke("dispute", d / "thief.safetensors", *two, "--timestamp", d / "owner.tsr", "--timestamp",
               d / "owner.tsr")
    assert r.exit_code == 0 and "REJECTED (time" in r.stdout and "owner.json wins" in r.stdout, r.output
