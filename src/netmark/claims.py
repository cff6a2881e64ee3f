"""Committed, signed ownership claims (issue 20, item 3; after Adi et al., USENIX Security 2018, §4's commitments).

An owner with an :class:`~netmark.identity.Identity` draws a secret ``nonce`` (:data:`NONCE_BYTES` from the OS
CSPRNG) and commits to ``(method, config, nonce, owner public key)``:

    commitment = SHA-256(canonical JSON of {"domain": "netmark-commitment/1", method, config, nonce, owner})

The public :class:`Claim` (``claim.json``) holds the commitment, the method, the owner's public key and the time, and
is signed with the owner's Ed25519 key; the secret :class:`Opening` (the nonce) stays in the owner's key file. Every
piece of secret key material is derived from the opening (:func:`root_of`: HKDF-SHA256 of the nonce, salted with
the commitment, is the key's root, whose streams :func:`netmark.draws.draw` draws from), so no party can choose a
message, projection or trigger labels to fit an existing model and then claim them: the commitment fixes them before
the model exists, and drawn messages and labels are uniformly random by construction (labels that depend on the
trigger images, as zhang's and frontier stitching's, still take their calibrated null from the key).

What a claim proves, and what it does not: a valid claim shows that the holder of the identity's private key
committed to this key material; it does not show *when* (a signature is not a time: that is what a timestamp token
or the registry adds) nor that the identity belongs to a given person.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from netmark._util import atomic_write_text, canonical_json, read_bounded, sha256_hex
from netmark.errors import NetmarkError
from netmark.identity import Identity, PublicIdentity

SCHEMA = "netmark-claim/1"
COMMITMENT_DOMAIN = "netmark-commitment/1"
NONCE_BYTES = 32
#: a claim is a few hundred bytes (a timestamp token a few kB); larger files are refused before parsing
MAX_CLAIM_BYTES = 256 * 1024


class ClaimError(NetmarkError):
    """A malformed, oversized or unreadable claim file, or an opening that does not fit its claim."""


@dataclass(frozen=True)
class Opening:
    """The secret that opens a commitment (kept in the owner's key file, never in a claim)."""

    nonce: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.nonce, bytes) or len(self.nonce) < 16:
            raise ClaimError("an opening's nonce is at least 16 bytes (128 bits)")

    def __repr__(self) -> str:
        return "Opening(<secret>)"

    @classmethod
    def fresh(cls) -> Opening:
        """:data:`NONCE_BYTES` from the OS CSPRNG."""
        return cls(secrets.token_bytes(NONCE_BYTES))


def commit(method: str, config: Mapping[str, Any], owner: PublicIdentity, opening: Opening) -> str:
    """The hex commitment to ``(method, config, nonce, owner)`` (binding: SHA-256; hiding: the 256-bit nonce)."""
    body = {"domain": COMMITMENT_DOMAIN, "method": method, "config": dict(config), "nonce": opening.nonce.hex(),
            "owner": owner.raw.hex()}
    return sha256_hex(canonical_json(body).encode())


def root_of(opening: Opening, commitment: str) -> bytes:
    """The secret root a claimed key's material is drawn from (:mod:`netmark.draws`): HKDF-SHA256 of the nonce,
    salted with the commitment, so the material is bound to the whole commitment (method, config, owner)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=bytes.fromhex(commitment),
                info=b"netmark-key-root/1").derive(opening.nonce)


@dataclass(frozen=True)
class Claim:
    """The public half of a committed key: what an owner hands to a verifier or a court (``claim.json``).

    ``created`` is what the owner says; only a timestamp token or a registry entry orders claims in time."""

    method: str
    commitment: str
    owner: str
    created: str
    signature: str = ""
    schema: str = SCHEMA

    def body(self) -> bytes:
        """The signed bytes: canonical JSON of every field but the signature."""
        d = asdict(self)
        d.pop("signature")
        return canonical_json(d).encode()

    @property
    def public(self) -> PublicIdentity:
        return PublicIdentity.from_raw(bytes.fromhex(self.owner))

    def signature_valid(self) -> bool:
        try:
            return self.public.verify(bytes.fromhex(self.signature), self.body())
        except (ValueError, NetmarkError):
            return False

    def opens(self, opening: Opening, config: Mapping[str, Any]) -> bool:
        """Whether ``opening`` with ``config`` opens this claim's commitment (constant-time compare)."""
        return hmac.compare_digest(commit(self.method, config, self.public, opening), self.commitment)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, d: Any, where: str = "claim") -> Claim:
        if not isinstance(d, dict):
            raise ClaimError(f"{where}: a claim is a JSON object")
        names = {f.name for f in fields(cls)}
        if d.get("schema") != SCHEMA:
            raise ClaimError(f"{where}: schema {d.get('schema')!r} is not {SCHEMA!r}")
        if set(d) != names:
            raise ClaimError(f"{where}: fields {sorted(set(d) ^ names)} missing or unknown")
        if not all(isinstance(d[n], str) for n in names):
            raise ClaimError(f"{where}: every field of a claim is a string")
        for n, size in (("commitment", 32), ("owner", 32), ("signature", 64)):
            try:
                ok = len(bytes.fromhex(d[n])) == size
            except ValueError:
                ok = False
            if not ok:
                raise ClaimError(f"{where}: {n} is not {size} bytes of hex")
        try:
            datetime.fromisoformat(d["created"])
        except ValueError:
            raise ClaimError(f"{where}: created {d['created'][:40]!r} is not an ISO time") from None
        return cls(**d)


def make_claim(identity: Identity, method: str, config: Mapping[str, Any],
               opening: Opening | None = None) -> tuple[Claim, Opening]:
    """A signed claim on ``(method, config)`` under a fresh opening (or ``opening``): ``(claim, opening)``."""
    opening = opening or Opening.fresh()
    claim = Claim(method, commit(method, config, identity.public, opening), identity.public.raw.hex(),
                  datetime.now(UTC).isoformat(timespec="seconds"))
    signed = Claim(**{**asdict(claim), "signature": identity.sign(claim.body()).hex()})
    return signed, opening


def save_claim(claim: Claim, path: str | os.PathLike[str], *, force: bool = False) -> Path:
    return atomic_write_text(path, claim.to_json(), force=force)


def load_claim(path: str | os.PathLike[str]) -> Claim:
    """The claim in ``path``, schema-checked (not yet verified: see :meth:`Claim.signature_valid`)."""
    p = Path(path)
    try:
        d = json.loads(read_bounded(p, MAX_CLAIM_BYTES, "claim", ClaimError).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ClaimError(f"{p}: not a JSON claim file") from None
    return Claim.from_dict(d, str(p))
