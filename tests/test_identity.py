"""Owner identities (issue 20, item 2): Ed25519 key pairs from the ``cryptography`` library."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from netmark.errors import OutputExistsError
from netmark.identity import (
    MAX_IDENTITY_BYTES,
    IdentityError,
    PublicIdentity,
    load_identity,
    load_public,
    new_identity,
    public_path,
    save_identity,
)


def _private_raw(ident) -> bytes:
    return ident.private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                       serialization.NoEncryption())


def test_round_trip_signs_and_keeps_the_private_half_private(tmp_path: Path) -> None:
    ident = new_identity()
    priv, pub = save_identity(ident, tmp_path / "owner.id")
    assert pub == tmp_path / "owner.pub" == public_path(priv)
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    again, public = load_identity(priv), load_public(pub)
    assert public.fingerprint == again.public.fingerprint == ident.public.fingerprint
    sig = again.sign(b"claim bytes")
    assert public.verify(sig, b"claim bytes") and not public.verify(sig, b"claim bytez")
    assert not new_identity().public.verify(sig, b"claim bytes")  # another owner's key rejects it
    raw = _private_raw(ident)
    assert raw not in pub.read_bytes() and raw.hex() not in repr(ident) and raw.hex() not in repr(public)
    assert PublicIdentity.from_raw(public.raw).fingerprint == public.fingerprint
    with pytest.raises(IdentityError, match="32 bytes"):
        PublicIdentity.from_raw(b"\0" * 31)


def test_identities_come_from_the_os_csprng() -> None:
    keys = {new_identity().public.fingerprint for _ in range(8)}
    assert len(keys) == 8


def test_passphrase_protects_the_private_key(tmp_path: Path) -> None:
    ident = new_identity()
    path, _ = save_identity(ident, tmp_path / "owner.id", passphrase=b"correct horse")
    assert b"ENCRYPTED" in path.read_bytes() and _private_raw(ident) not in path.read_bytes()
    with pytest.raises(IdentityError, match="encrypted: give its passphrase"):
        load_identity(path)
    with pytest.raises(IdentityError, match="wrong passphrase"):
        load_identity(path, b"wrong horse")
    assert load_identity(path, b"correct horse").public.fingerprint == ident.public.fingerprint
    with pytest.raises(IdentityError, match="empty passphrase"):
        save_identity(ident, tmp_path / "other.id", passphrase=b"")
    plain, _ = save_identity(ident, tmp_path / "plain.id")
    with pytest.raises(IdentityError, match="not encrypted"):
        load_identity(plain, b"anything")


def test_never_overwrites_without_force(tmp_path: Path) -> None:
    first = new_identity()
    path, pub = save_identity(first, tmp_path / "owner.id")
    before = (path.read_bytes(), pub.read_bytes())
    with pytest.raises(OutputExistsError):
        save_identity(new_identity(), path)
    assert (path.read_bytes(), pub.read_bytes()) == before
    pub.unlink()  # only the public half is missing: still refused, nothing written
    with pytest.raises(OutputExistsError):
        save_identity(new_identity(), path)
    assert not pub.exists() and path.read_bytes() == before[0]
    second = new_identity()
    save_identity(second, path, force=True)
    assert load_identity(path).public.fingerprint == second.public.fingerprint != first.public.fingerprint


def test_bad_identity_files_are_refused(tmp_path: Path) -> None:
    path, pub = save_identity(new_identity(), tmp_path / "owner.id")
    cases = {
        "missing": tmp_path / "nope.id",
        "truncated": tmp_path / "trunc.id",
        "garbage": tmp_path / "garbage.id",
        "huge": tmp_path / "huge.id",
        "ecdsa": tmp_path / "ec.id",
    }
    cases["truncated"].write_bytes(path.read_bytes()[:60])
    cases["garbage"].write_bytes(b"\x80\x03cos\nsystem\n(S'echo pwned'\ntR.")  # a pickle payload
    cases["huge"].write_bytes(b"A" * (MAX_IDENTITY_BYTES + 1))
    cases["ecdsa"].write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    for name, p in cases.items():
        with pytest.raises(IdentityError) as err:
            load_identity(p)
        assert "\n" not in str(err.value), name
    with pytest.raises(IdentityError, match="not a PEM public key"):
        load_public(path)  # the private file is not a public identity
    with pytest.raises(IdentityError, match="Ed25519"):
        ec_pub = tmp_path / "ec.pub"
        ec_pub.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        load_public(ec_pub)
