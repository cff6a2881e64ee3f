"""Claimed keys: key material derived from a signed commitment, and the checks a verifier runs (issue 20, items 3, 5).

:func:`claimed_key` makes a key whose every drawn piece comes from a claim's opening (:func:`netmark.claims.root_of`)
and returns it with the signed :class:`~netmark.claims.Claim`. The committed config is the method's config plus
what the owner supplies besides the root: a payload's digest (Tartaglione's logo) and, for methods that make their
key from training images, the digest of those images. A chosen message is refused: under a claim the message (and a
trigger set's labels) are uniformly random by construction.

:func:`check_claim` runs, in order, the steps a court would ask for, each with a reason: the claim's schema and
signature, that it names the key's method, that the key's opening opens its commitment, that the key's root derives
from that opening, that the key's material re-derives from the root (rebuilt on the suspect's architecture and
compared), and finally the watermark itself. ``ok`` only if every step holds.

Limits, stated where they are checked: frontier stitching crafts its triggers on the model being marked, so its
material cannot be re-derived: its triggers are checked for their form instead (each an FGSM step of a committed
training image, with that image's label: :meth:`~netmark.methods.base.WatermarkMethod.check_crafted`); methods that
take their triggers from training images need those images (``data``) to re-derive them. A signature is not a
time: which of two valid claims came first is for the registry (:mod:`netmark.registry`) or a timestamp.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import torch
from cryptography import x509
from torch import nn
from torch.utils.data import Dataset

from netmark._util import canonical_json, tensor_digest
from netmark.claims import Claim, Opening, make_claim, root_of
from netmark.errors import ConfigError, NetmarkError
from netmark.identity import Identity
from netmark.keys import WatermarkKey
from netmark.methods.base import WatermarkMethod
from netmark.methods.dispatch import method_from_key, verify
from netmark.verify import DEFAULT_ALPHA, VerificationResult


def data_sha256(data: Dataset) -> str:
    """The digest of a dataset's images and labels (what a data-derived key commits to)."""
    from netmark.methods.triggerset import dataset_rows

    x, y = dataset_rows(data)
    return tensor_digest(x.float(), y.to(torch.int64))


def committed_config(method: WatermarkMethod, *, data: Dataset | None, payload: torch.Tensor | None) -> dict[str, Any]:
    cfg: dict[str, Any] = method.config.to_dict()
    if payload is not None:
        cfg["payload_sha256"] = tensor_digest(torch.as_tensor(payload, dtype=torch.float32))
    if data is not None and method.traits().needs_data:
        cfg["data_sha256"] = data_sha256(data)
    return dict(json.loads(canonical_json(cfg)))  # as the key file and the commitment hold it (tuples as lists)


def claimed_key(method: WatermarkMethod, model: nn.Module, identity: Identity, *, data: Dataset | None = None,
                payload: torch.Tensor | None = None, opening: Opening | None = None) -> tuple[WatermarkKey, Claim]:
    """A new key for ``model`` drawn from a fresh claim's opening (``opening``: this one, e.g. a test's fixed nonce),
    and the signed claim (module docstring)."""
    config = committed_config(method, data=data, payload=payload)
    claim, opening = make_claim(identity, method.name, config, opening)
    key = method.create_key(model, root=root_of(opening, claim.commitment), data=data, payload=payload)
    return replace(key, opening={"nonce": opening.nonce.hex(), "config": config,
                                 "commitment": claim.commitment}), claim


@dataclass
class ClaimCheck:
    """The verifier's steps: ``(name, passed, reason)`` each; ``ok`` only if all passed."""

    steps: list[tuple[str, bool, str]] = field(default_factory=list)
    result: VerificationResult | None = None
    #: the claim's verified time (an RFC 3161 token's), if a token was given and verifies
    time: datetime | None = None

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(passed for _, passed, _ in self.steps)

    def add(self, name: str, passed: bool, reason: str) -> bool:
        self.steps.append((name, passed, reason))
        return passed

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "steps": [{"step": n, "passed": p, "reason": r} for n, p, r in self.steps]}


def _same_material(method: WatermarkMethod, key: WatermarkKey, rebuilt: WatermarkKey) -> str | None:
    """Why ``key``'s drawn material differs from ``rebuilt``'s (``None``: it is the same)."""
    if key.message != rebuilt.message:
        return "the message is not the one the claim's opening draws"
    trained = set(method.TRAINED_TENSORS)
    if "inputs" in rebuilt.tensors and "labels" in rebuilt.tensors and len(key.tensors.get("labels", ())) < len(
            rebuilt.tensors["labels"]):  # a trigger set selected from its drawn candidates (DeepSigns' black box)
        cand = {(tensor_digest(x), int(y)) for x, y in zip(rebuilt.tensors["inputs"], rebuilt.tensors["labels"],
                                                            strict=True)}
        rows = zip(key.tensors["inputs"], key.tensors["labels"], strict=True)
        if any((tensor_digest(x), int(y)) not in cand for x, y in rows):
            return "a trigger is not among the candidates the claim's opening draws"
        trained |= {"inputs", "labels"}
    for name, t in rebuilt.tensors.items():
        if name in trained:
            continue
        mine = key.tensors.get(name)
        if mine is None or mine.shape != t.shape or not torch.equal(mine.to(t.dtype), t):
            return f"tensor {name!r} is not the one the claim's opening draws"
    return None


def check_claim(model: nn.Module, key: WatermarkKey, claim: Claim, *, data: Dataset | None = None,
                alpha: float = DEFAULT_ALPHA, token: bytes | None = None,
                roots: list[x509.Certificate] | None = None,
                decide: Callable[[WatermarkKey], VerificationResult] | None = None) -> ClaimCheck:
    """The steps of verifying ``model`` against ``key`` under ``claim`` (module docstring); with an RFC 3161
    ``token`` (and the TSA's ``roots``) also the step ``time``. ``decide``: how the watermark step is decided when
    ``model`` only gives the architecture (a suspect behind a prediction URL: its answers to the key's triggers);
    default: :func:`netmark.methods.verify` on ``model``."""
    out = ClaimCheck()
    if not out.add("signature", claim.signature_valid(), "the claim is signed by its owner key "
                   f"{claim.public.fingerprint[:16]}…" if claim.signature_valid() else
                   "the signature does not verify under the claim's owner key (edited or forged claim)"):
        return out
    if token is not None:
        from netmark.timestamps import TimestampError, token_time

        try:
            out.time = token_time(token, claim, roots or [])
        except TimestampError as e:
            out.add("time", False, str(e))
            return out
        out.add("time", True, f"timestamped {out.time.isoformat()} by a TSA chained to the given root")
    if not out.add("method", claim.method == key.method, f"claim and key name {key.method!r}"
                   if claim.method == key.method else f"the claim is for {claim.method!r}, the key for {key.method!r}"):
        return out
    op = key.opening
    if op is None:
        out.add("opening", False, "the key holds no opening: it was not made under a claim (or it is not this "
                "claim's key)")
        return out
    try:
        opening = Opening(bytes.fromhex(str(op["nonce"])))
        opens = claim.opens(opening, op["config"])
    except (ValueError, NetmarkError):
        opens = False
    if not out.add("opening", opens, "the key's opening opens the claim's commitment" if opens else
                   "the key's opening does not open this claim's commitment (another owner's, or edited)"):
        return out
    root = root_of(opening, claim.commitment)
    if not out.add("root", key.root == root.hex(), "the key's material root derives from the opening"
                   if key.root == root.hex() else "the key's root is not the one its opening derives"):
        return out
    out.add("material", *_rederive(method_from_key(key), model, key, op["config"], root, data))
    if out.ok:
        try:
            out.result = decide(key) if decide is not None else verify(model, key, alpha=alpha)
        except NetmarkError as e:  # e.g. a key whose null is not calibrated yet
            out.add("watermark", False, f"not decided: {e}")
            return out
        out.add("watermark", out.result.detected, f"p-value {out.result.p_value:.3g} vs alpha {alpha:g}")
    return out


def _rederive(method: WatermarkMethod, model: nn.Module, key: WatermarkKey, config: dict[str, Any], root: bytes,
              data: Dataset | None) -> tuple[bool, str]:
    if method.traits().needs_data:
        if data is None:
            return False, f"{key.method} draws its key from training images: give them (--dataset) to re-derive it"
        if data_sha256(data) != config.get("data_sha256"):
            return False, "these are not the training images the claim committed to"
    if not method.REDERIVABLE:  # crafted on the model being marked: check its form against the committed images
        why = method.check_crafted(key, data)
        return why is None, why or (f"{key.method}'s triggers are crafted on the model being marked (not re-derivable);"
                                    " each is an FGSM step of a committed training image with that image's label")
    payload = None
    if "payload_sha256" in config:
        payload = key.tensors["payload"].reshape(key.config.get("payload_shape") or [-1])
        if tensor_digest(payload.float()) != config["payload_sha256"]:
            return False, "the key's payload is not the one the claim committed to"
    try:
        cls = type(method)
        rebuilt = cls(cls.config_cls.from_dict(
            {k: v for k, v in config.items() if k not in ("payload_sha256", "data_sha256")})).create_key(
            model, root=root, data=data, payload=payload)
    except (NetmarkError, ConfigError) as e:
        return False, f"cannot re-derive the key on this model: {e}"
    why = _same_material(method, key, rebuilt)
    return why is None, why or "the key's material re-derives from its root"
