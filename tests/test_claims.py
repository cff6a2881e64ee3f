"""Committed, signed claims (issue 20, item 3, the claim itself): a forger's edits, replays and bad files."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

from netmark.claims import (
    MAX_CLAIM_BYTES,
    Claim,
    ClaimError,
    Opening,
    commit,
    load_claim,
    make_claim,
    root_of,
    save_claim,
)
from netmark.draws import draw
from netmark.errors import OutputExistsError
from netmark.identity import new_identity

CONFIG = {"layer": "conv2", "bits": 64, "strength": 0.01}


def test_owner_claim_verifies_and_opens() -> None:
    owner = new_identity()
    claim, opening = make_claim(owner, "uchida", CONFIG)
    assert claim.signature_valid() and claim.opens(opening, CONFIG)
    assert claim.public.fingerprint == owner.public.fingerprint
    assert not claim.opens(opening, {**CONFIG, "bits": 65})  # the config is committed
    assert not claim.opens(Opening.fresh(), CONFIG)  # another nonce does not open it
    assert opening.nonce.hex() not in claim.to_json() and "secret" in repr(opening)


def test_edited_back_dated_and_replayed_claims_are_rejected() -> None:
    owner, thief = new_identity(), new_identity()
    claim, opening = make_claim(owner, "uchida", CONFIG)
    back_dated = replace(claim, created="2019-01-01T00:00:00+00:00")
    assert not back_dated.signature_valid()
    for field, value in (("method", "wang"), ("commitment", "00" * 32)):
        assert not replace(claim, **{field: value}).signature_valid()
    # the thief re-signs the owner's commitment under his own identity: a valid signature, but he cannot open
    # it, and with the owner's nonce (had he stolen it) the commitment does not open under his key
    replayed = Claim(**{**asdict(claim), "owner": thief.public.raw.hex(), "signature": ""})
    replayed = replace(replayed, signature=thief.sign(replayed.body()).hex())
    assert replayed.signature_valid()
    assert not replayed.opens(Opening.fresh(), CONFIG) and not replayed.opens(opening, CONFIG)
    # the owner's signature does not verify under the thief's key
    assert not replace(claim, owner=thief.public.raw.hex()).signature_valid()


def test_key_material_is_a_function_of_the_opening_alone() -> None:
    owner = new_identity()
    claim, opening = make_claim(owner, "uchida", CONFIG)
    root = root_of(opening, claim.commitment)  # what a claimed key's material is drawn from (netmark.draws)
    a = draw(root, 0).randint(0, 2, (4096,))
    assert torch.equal(a, draw(root_of(opening, claim.commitment), 0).randint(0, 2, (4096,)))
    assert not torch.equal(a, draw(root, 1).randint(0, 2, (4096,)))  # another stream
    other = Opening.fresh()
    assert not torch.equal(a, draw(root_of(other, commit("uchida", CONFIG, owner.public, other)), 0).randint(
        0, 2, (4096,)))
    assert abs(float(a.float().mean()) - 0.5) < 0.05  # 4096 fair bits: |mean - 0.5| < 0.05 fails with p ~ 1e-10


def test_round_trip_and_no_overwrite(tmp_path: Path) -> None:
    claim, _ = make_claim(new_identity(), "adi", {"size": 100})
    path = save_claim(claim, tmp_path / "claim.json")
    assert load_claim(path) == claim and load_claim(path).signature_valid()
    with pytest.raises(OutputExistsError):
        save_claim(claim, path)


def test_bad_claim_files_are_refused(tmp_path: Path) -> None:
    claim, _ = make_claim(new_identity(), "adi", {"size": 100})
    good = asdict(claim)
    bad = {
        "not json": b"{\"schema\": ",
        "not an object": b"[1, 2]",
        "wrong schema": json.dumps({**good, "schema": "netmark-claim/0"}).encode(),
        "extra field": json.dumps({**good, "null_counts": [0]}).encode(),
        "missing field": json.dumps({k: v for k, v in good.items() if k != "signature"}).encode(),
        "short key": json.dumps({**good, "owner": "ab"}).encode(),
        "not hex": json.dumps({**good, "commitment": "zz" * 32}).encode(),
        "number": json.dumps({**good, "created": 2019}).encode(),
        "bad time": json.dumps({**good, "created": "yesterday"}).encode(),
        "binary": b"\x80\x03cos\nsystem\n.",
        "huge": b" " * (MAX_CLAIM_BYTES + 1),
    }
    for name, data in bad.items():
        p = tmp_path / f"{name}.json"
        p.write_bytes(data)
        with pytest.raises(ClaimError) as err:
            load_claim(p)
        assert "\n" not in str(err.value), name
    with pytest.raises(ClaimError, match="cannot read"):
        load_claim(tmp_path / "missing.json")
    with pytest.raises(ClaimError, match="128 bits"):
        Opening(b"short")
