"""``netmark identity new / show`` (issue 20, item 2)."""

from __future__ import annotations

import stat
from pathlib import Path

from typer.testing import CliRunner

from netmark.cli import app
from netmark.identity import load_identity, load_public

runner = CliRunner()


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def _one_error_line(r, phrase: str) -> None:
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and phrase in lines[0] and "Traceback" not in r.output, r.stderr


def test_new_and_show(tmp_path: Path) -> None:
    r = invoke("identity", "new", "--out", tmp_path / "owner.id")
    assert r.exit_code == 0, r.output
    priv, pub = tmp_path / "owner.id", tmp_path / "owner.pub"
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    fp = load_public(pub).fingerprint
    assert fp in r.stdout and load_identity(priv).public.fingerprint == fp
    for path in (pub, priv):
        shown = invoke("identity", "show", path)
        assert shown.exit_code == 0 and f"identity {fp}" in shown.stdout and "PUBLIC KEY" in shown.stdout
        assert "PRIVATE" not in shown.stdout and priv.read_text() not in shown.stdout
    before = priv.read_bytes()
    _one_error_line(invoke("identity", "new", "--out", priv), "already exists")
    assert priv.read_bytes() == before
    assert invoke("identity", "new", "--out", priv, "--force").exit_code == 0 and priv.read_bytes() != before


def test_passphrase_file(tmp_path: Path) -> None:
    pw = tmp_path / "pw.txt"
    pw.write_text("correct horse battery staple\n")
    assert invoke("identity", "new", "--out", tmp_path / "a.id", "--passphrase-file", pw).exit_code == 0
    assert b"ENCRYPTED" in (tmp_path / "a.id").read_bytes()
    _one_error_line(invoke("identity", "show", tmp_path / "a.id"), "give its passphrase")
    assert invoke("identity", "show", tmp_path / "a.id", "--passphrase-file", pw).exit_code == 0
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("wrong horse\n")
    _one_error_line(invoke("identity", "show", tmp_path / "a.id", "--passphrase-file", wrong), "wrong passphrase")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    _one_error_line(invoke("identity", "new", "--out", tmp_path / "b.id", "--passphrase-file", empty), "empty")
    assert not (tmp_path / "b.id").exists() and not (tmp_path / "b.pub").exists()
    big = tmp_path / "big.txt"
    big.write_bytes(b"x" * 5000)
    _one_error_line(invoke("identity", "new", "--out", tmp_path / "c.id", "--passphrase-file", big), "passphrase")


def test_bad_identity_files(tmp_path: Path) -> None:
    (tmp_path / "junk.pub").write_bytes(b"\x80\x03cos\nsystem\n.")
    _one_error_line(invoke("identity", "show", tmp_path / "junk.pub"), "not a PEM public key")
    (tmp_path / "junk.id").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    _one_error_line(invoke("identity", "show", tmp_path / "junk.id"), "not a readable identity")
    _one_error_line(invoke("identity", "show", tmp_path / "missing.pub"), "cannot read")
