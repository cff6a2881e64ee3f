"""An owner's identity: an Ed25519 key pair that signs ownership claims (issue 20, item 2).

``netmark identity new --out owner.id`` writes the private key (PKCS#8 PEM, file mode 0600, encrypted with the
``cryptography`` library's best available scheme when a passphrase is given) and beside it ``owner.pub``, the public
key an owner publishes (SubjectPublicKeyInfo PEM). All cryptography is the ``cryptography`` library's: the key pair
comes from the OS CSPRNG through it, and nothing here hand-writes a primitive.

The private key never leaves :class:`Identity`: it is not part of ``repr``, of a model, a key file, a claim, a report
or a log line; :meth:`Identity.public` is what other parties see.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from netmark._util import atomic_write, check_writable, read_bounded
from netmark.errors import NetmarkError

#: identity files are a few hundred bytes; anything larger is refused before it is parsed
MAX_IDENTITY_BYTES = 64 * 1024
PUBLIC_SUFFIX = ".pub"


class IdentityError(NetmarkError):
    """A missing, corrupt, oversized or wrongly protected identity file, or a wrong passphrase."""


@dataclass(frozen=True)
class PublicIdentity:
    """An owner's public key: verifies signatures; ``fingerprint`` names it (sha256 of the raw 32-byte key)."""

    key: Ed25519PublicKey = field(repr=False)

    @property
    def raw(self) -> bytes:
        return self.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    def pem(self) -> bytes:
        return self.key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def verify(self, signature: bytes, data: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of ``data``."""
        try:
            self.key.verify(signature, data)
        except InvalidSignature:
            return False
        return True

    @classmethod
    def from_raw(cls, raw: bytes) -> PublicIdentity:
        if len(raw) != 32:
            raise IdentityError(f"an Ed25519 public key is 32 bytes, got {len(raw)}")
        return cls(Ed25519PublicKey.from_public_bytes(raw))

    def __repr__(self) -> str:
        return f"PublicIdentity(fingerprint={self.fingerprint[:16]}…)"


@dataclass(frozen=True)
class Identity:
    """An owner's key pair. ``sign`` signs; :attr:`public` is the part to publish."""

    private: Ed25519PrivateKey = field(repr=False)

    @property
    def public(self) -> PublicIdentity:
        return PublicIdentity(self.private.public_key())

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)

    def __repr__(self) -> str:
        return f"Identity(public={self.public.fingerprint[:16]}…)"


def new_identity() -> Identity:
    """A fresh key pair from the OS CSPRNG (``cryptography``'s Ed25519 key generation)."""
    return Identity(Ed25519PrivateKey.generate())


def public_path(path: str | os.PathLike[str]) -> Path:
    """Where the public half of the identity file ``path`` is written: ``owner.id`` -> ``owner.pub``."""
    p = Path(path)
    return p.with_suffix(PUBLIC_SUFFIX) if p.suffix != PUBLIC_SUFFIX else p.with_name(p.name + PUBLIC_SUFFIX)


def save_identity(identity: Identity, path: str | os.PathLike[str], *, passphrase: bytes | None = None,
                  force: bool = False) -> tuple[Path, Path]:
    """Write the private key to ``path`` (0600; encrypted under ``passphrase`` if given) and the public key beside
    it (:func:`public_path`). Neither file is overwritten without ``force``; both are written atomically, the
    public one first, so a refused or failed private write leaves no orphan private key."""
    if passphrase is not None and not passphrase:
        raise IdentityError("an empty passphrase protects nothing: give a non-empty one or none")
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption())
    private = identity.private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    pub = public_path(path)
    for p in (Path(path), pub):  # refuse before writing either
        check_writable(p, force)
    atomic_write(pub, lambda t: t.write_bytes(identity.public.pem()), force=force)
    atomic_write(path, lambda t: t.write_bytes(private), force=force, private=True)
    return Path(path), pub


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    return read_bounded(path, MAX_IDENTITY_BYTES, f"{what} file", IdentityError)


def load_identity(path: str | os.PathLike[str], passphrase: bytes | None = None) -> Identity:
    """The identity in ``path`` (a wrong or missing passphrase, another key type or a damaged file:
    :class:`IdentityError`, without the file's content in the message)."""
    data = _read(path, "identity")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase or None)
    except TypeError:  # encrypted without a passphrase, or a passphrase for an unencrypted key
        raise IdentityError(f"{path}: " + ("the identity is encrypted: give its passphrase" if not passphrase
                                           else "the identity is not encrypted: give no passphrase")) from None
    except (ValueError, UnsupportedAlgorithm):
        raise IdentityError(f"{path}: not a readable identity (damaged file or wrong passphrase)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"{path}: an identity is an Ed25519 private key, this is a {type(key).__name__}")
    return Identity(key)


def load_public(path: str | os.PathLike[str]) -> PublicIdentity:
    """The public identity in ``path`` (an ``owner.pub`` PEM file)."""
    data = _read(path, "public identity")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise IdentityError(f"{path}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise IdentityError(f"{path}: an owner's public identity is an Ed25519 key, this is a {type(key).__name__}")
    return PublicIdentity(key)
