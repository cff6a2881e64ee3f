"""An append-only, hash-chained registry of claims: time order without a network (issue 20, item 4, offline part).

A registry is a JSON-lines file; entry ``i`` holds the claim, the time it was added (the registrar's clock, UTC),
the hash of entry ``i - 1`` (``prev``; 64 zeros for the first) and its own ``hash`` = SHA-256 of the canonical JSON
of everything else. Editing, deleting or reordering an entry breaks the chain (:func:`verify_registry` names the
first broken entry). The last hash, the *head*, is what a registrar publishes (a web page, a newspaper, a public
repository): a registry that no longer contains a published head has been rewritten or truncated.

What the order proves: a claim that sits before a published head was registered before that head was published.
Who runs the registry and where its heads appear is outside netmark; a registrar can still back-date entries it has
not yet published, which is what RFC 3161 timestamps (signed by a third party) add.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from netmark._util import atomic_write_text, canonical_json, read_bounded, sha256_hex
from netmark.claims import Claim, ClaimError
from netmark.errors import NetmarkError

GENESIS = "0" * 64
#: a registry line is one claim; a larger one is not
MAX_LINE_BYTES = 64 * 1024
MAX_REGISTRY_BYTES = 256 * 1024 * 1024


class RegistryError(NetmarkError):
    """An unreadable registry file, or one whose chain is broken (edited, deleted or reordered entries)."""


@dataclass(frozen=True)
class Entry:
    index: int
    added: str
    prev: str
    claim: Claim
    hash: str

    def body(self) -> dict[str, Any]:
        return {"index": self.index, "added": self.added, "prev": self.prev, "claim": json.loads(self.claim.to_json())}

    def line(self) -> str:
        return canonical_json({**self.body(), "hash": self.hash})


def _hash(body: dict[str, Any]) -> str:
    return sha256_hex(canonical_json(body).encode())


def read_registry(path: str | os.PathLike[str]) -> list[Entry]:
    """The entries of the registry at ``path`` (absent: none), each checked against the chain."""
    p = Path(path)
    if not p.exists():
        return []
    try:
        lines = read_bounded(p, MAX_REGISTRY_BYTES, "claim registry", RegistryError).decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise RegistryError(f"{p}: not a claim registry (not UTF-8 text)") from None
    out: list[Entry] = []
    prev = GENESIS
    for i, line in enumerate(lines):
        where = f"{p} entry {i}"
        if len(line) > MAX_LINE_BYTES:
            raise RegistryError(f"{where}: a line longer than {MAX_LINE_BYTES} bytes is not an entry")
        try:
            d = json.loads(line)
            if not isinstance(d, dict) or set(d) != {"index", "added", "prev", "claim", "hash"}:
                raise ValueError
            entry = Entry(d["index"], d["added"], d["prev"], Claim.from_dict(d["claim"], where), d["hash"])
        except (ValueError, TypeError, ClaimError):
            raise RegistryError(f"{where}: not a registry entry (damaged or edited)") from None
        if entry.index != i:
            raise RegistryError(f"{where}: index {entry.index!r} out of order (entries deleted or reordered)")
        if entry.prev != prev:
            raise RegistryError(f"{where}: does not follow entry {i - 1} (entries deleted, inserted or reordered)")
        if _hash(entry.body()) != entry.hash:
            raise RegistryError(f"{where}: its hash does not match its content (edited)")
        out.append(entry)
        prev = entry.hash
    return out


def head(entries: list[Entry]) -> str:
    return entries[-1].hash if entries else GENESIS


def add_claim(path: str | os.PathLike[str], claim: Claim) -> Entry:
    """Append ``claim`` (signature checked; a claim already registered is refused) and return its entry. The file is
    rewritten atomically, so a crash leaves the old registry."""
    if not claim.signature_valid():
        raise RegistryError("the claim's signature does not verify: not registered")
    entries = read_registry(path)
    if any(e.claim.commitment == claim.commitment for e in entries):
        raise RegistryError(f"claim {claim.commitment[:16]}… is already registered")
    body = {"index": len(entries), "added": datetime.now(UTC).isoformat(timespec="seconds"), "prev": head(entries),
            "claim": json.loads(claim.to_json())}
    entry = Entry(body["index"], body["added"], body["prev"], claim, _hash(body))
    atomic_write_text(path, "".join(e.line() + "\n" for e in [*entries, entry]), force=True)
    return entry


def verify_registry(path: str | os.PathLike[str], published: str | None = None) -> list[Entry]:
    """The registry's entries if its chain is whole and (``published``) it still contains that published head."""
    entries = read_registry(path)
    if published is not None and published not in {e.hash for e in entries} | {GENESIS}:
        raise RegistryError(f"the published head {published[:16]}… is not in the registry (rewritten or truncated)")
    return entries


def position(entries: list[Entry], claim: Claim) -> int | None:
    """Where ``claim`` (by its commitment and signature) sits in the registry; ``None``: not registered."""
    return next((e.index for e in entries if e.claim == claim), None)
