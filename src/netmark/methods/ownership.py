"""Claimed keys: key material derived from a signed commitment, and the checks a verifier runs (issue 20, items 3, 5).

:func:`claimed_key` makes a key whose every drawn piece comes from a claim's opening (:func:`netmark.claims.root_of`)
and returns it with the signed :class:`~netmark.claims.Claim`. The committed config is the method's config plus
what the owner supplies besides the root: a payload's digest (Tartaglione's logo) and, for methods that make their
key from training images, the digest of those images. A chosen message is refused: under a claim the message (and a
trigger set's labels) are uniformly random by construction.

:func:`check_claim` runs, in order, the steps a court would ask for, each with a reason: the claim's schema and
signature, that it names the key's method, that the key's opening opens its commitment, that the key's root derives
from that opening, that the key's material re-derives from the root (rebuilt on the suspect's architecture and
compared), and finally the watermark itself, decided on the re-derived key: its config, its labels' randomness and
its null are the verifier's, never what the presented key declares (a key's stored null calibration, its
``message_random`` flag and its ``num_classes`` are a forger's to write). Nulls measured on models come from the
verifier's own reference models (``null_models``); Wang's is measured again on the suspect. Single-target trigger
sets (Zhang et al.) add a step ``specificity``: a Monte Carlo test that the suspect favours the claimed triggers
over keys drawn from other roots, since a model that learnt a public stamp answers anyone's stamped images.
``ok`` only if every step holds.

Limits, stated where they are checked: frontier stitching crafts its triggers on the model being marked, so its
material cannot be re-derived: its triggers are checked for their form (each an FGSM step of a committed training
image, with that image's label: :meth:`~netmark.methods.base.WatermarkMethod.check_crafted`), and then the step
``binding`` fails, because a thief can craft steps of that form that fit the stolen model; methods that take their
triggers from training images need those images (``data``) to re-derive them. A signature is not a
time: which of two valid claims came first is for the registry (:mod:`netmark.registry`) or a timestamp.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import torch
from cryptography import x509
from torch import nn
from torch.utils.data import Dataset

from netmark._util import canonical_json, tensor_digest
from netmark.claims import Claim, Opening, make_claim, root_of
from netmark.draws import derived_root
from netmark.errors import ConfigError, NetmarkError
from netmark.identity import Identity
from netmark.keys import WatermarkKey
from netmark.methods.base import WatermarkMethod
from netmark.methods.dispatch import method_from_key, verify
from netmark.methods.triggerset import Predictor, dataset_rows, model_predictor, query
from netmark.verify import DEFAULT_ALPHA, VerificationResult

#: what a committed config holds beside the method's options (digests of what the owner supplied)
DIGESTS = ("payload_sha256", "data_sha256")
#: why a claim cannot bind a key crafted on the model being marked (frontier stitching)
UNBOUND = ("{method}'s triggers are crafted on the model, so the claim fixes only their form (FGSM steps of committed "
           "images, with their labels), not which steps: a thief who crafts steps that the stolen model answers "
           "right and his own models wrong passes every other check (benchmarks/forgery_claims.py); such a claim "
           "is no evidence of ownership")
#: keys from other roots the specificity step compares a claimed single-target trigger set with
REDRAWS = 999


def data_sha256(data: Dataset) -> str:
    """The digest of a dataset's images and labels (what a data-derived key commits to)."""
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
                roots: list[x509.Certificate] | None = None, predict: Predictor | None = None,
                null_models: Sequence[nn.Module | Predictor] | None = None, redraws: int = REDRAWS,
                redraw_root: bytes | None = None) -> ClaimCheck:
    """The steps of verifying ``model`` against ``key`` under ``claim`` (module docstring); with an RFC 3161
    ``token`` (and the TSA's ``roots``) also the step ``time``.

    ``predict``: the suspect's answers, when ``model`` only gives the architecture (a suspect behind a prediction
    URL). ``null_models``: the verifier's reference models (trained without the key), for labels whose null is
    measured on models. ``redraws``: how many keys drawn from other roots the specificity step compares the claimed
    triggers with; they derive from ``redraw_root``, by default from the claim's public commitment, so that every
    verifier of a claim gets the same answer (a forger who tries commitment after commitment meets new redraws
    each time)."""
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
    method = method_from_key(key)
    ok, why, rebuilt = _rederive(method, model, key, op["config"], root, data)
    if not out.add("material", ok, why):
        return out
    if rebuilt is None and not out.add("binding", False, UNBOUND.format(method=key.method)):
        return out
    decision = _decision_key(method, key, rebuilt)
    try:
        method = method_from_key(decision)  # the committed config, not the presented key's
        decision = method.null_for_verifier(decision, model, null_models=null_models)
        out.result = (method.verify_query(predict, decision, alpha=alpha) if predict is not None
                      else verify(model, decision, alpha=alpha))
    except NetmarkError as e:
        out.add("watermark", False, f"not decided: {e}")
        return out
    d = out.result.details
    null = (f"measured here on {d['null_samples']} null samples" if "null_samples" in d
            else str(d.get("null", "exact")))
    if not out.add("watermark", out.result.detected, f"p-value {out.result.p_value:.3g} vs alpha {alpha:g} "
                   f"(null: {null}; none taken from the key)"):
        return out
    if rebuilt is not None and not decision.message_random and "inputs" in decision.tensors:
        base = redraw_root if redraw_root is not None else derived_root(bytes.fromhex(claim.commitment), 0)
        out.add("specificity", *_specificity(method, model, decision, data, predict or model_predictor(model),
                                             redraws, base))
    return out


def _decision_key(method: WatermarkMethod, key: WatermarkKey, rebuilt: WatermarkKey | None) -> WatermarkKey:
    """What the watermark step decides with: the re-derived key (its config, layer, material and whether its labels
    are random), with the trained tensors of ``key``; a key crafted on the marked model keeps its material, and its
    labels (the images' own) are not random. A selected trigger subset (DeepSigns' black box: selected by the marked
    model's answers, which a forger can do too) is decided on the whole candidate set the root draws."""
    if rebuilt is None:
        return replace(key, message_random=False)
    trained = {n: key.tensors[n] for n in method.TRAINED_TENSORS if n in key.tensors}
    return replace(rebuilt, tensors={**rebuilt.tensors, **trained}, opening=key.opening)


def _specificity(method: WatermarkMethod, model: nn.Module, key: WatermarkKey, data: Dataset | None,
                 predict: Predictor, redraws: int, base: bytes) -> tuple[bool, str]:
    """Labels that depend on the images (one target class for all): a suspect that learnt the method's public part
    (a stamp, a kind of noise) answers the target on anyone's triggers of that kind, so the watermark step alone
    cannot tell this claim's owner from a forger who claims the same config. Monte Carlo test of the null "the
    suspect is independent of this claim's root": the claimed triggers' matches against those of ``redraws`` keys
    drawn from other roots; exchangeable under the null, so p = (1 + #redraws matching as many) / (redraws + 1)."""
    c = int(key.config["num_classes"])

    def matches(k: WatermarkKey) -> int:
        return int((query(predict, k.tensors["inputs"], c) == k.tensors["labels"].to(torch.int64)).sum())

    mine = matches(key)
    higher = sum(matches(method.create_key(model, root=derived_root(base, i), data=data)) >= mine
                 for i in range(redraws))
    p = (1 + higher) / (redraws + 1)
    if higher:
        return False, (f"{higher} of {redraws} keys drawn from other roots match the suspect as well as the claimed "
                       f"one ({mine} of {len(key.tensors['labels'])}; p = {p:.3g}): what it learnt is not specific to "
                       "this claim (a forger claiming the same config would pass the watermark step too)")
    return True, (f"the claimed triggers match the suspect more than each of {redraws} keys drawn from other roots "
                  f"(p = {p:.3g}, the least a test of this size gives: a forger passes it once in {redraws + 1} "
                  "claims; time order settles the rest)")


def _rederive(method: WatermarkMethod, model: nn.Module, key: WatermarkKey, config: dict[str, Any], root: bytes,
              data: Dataset | None) -> tuple[bool, str, WatermarkKey | None]:
    """Whether ``key``'s material is what ``root`` draws (why not), and the re-derived key (``None`` for a key
    crafted on the model being marked)."""
    if method.traits().needs_data:
        if data is None:
            return False, f"{key.method} draws its key from training images: give them (--dataset) to re-derive it", \
                None
        if data_sha256(data) != config.get("data_sha256"):
            return False, "these are not the training images the claim committed to", None
    options = {k: v for k, v in config.items() if k not in DIGESTS}
    if not method.REDERIVABLE:  # crafted on the model being marked: check its form against the committed images
        if {k: v for k, v in key.config.items() if k not in method.KEY_CONFIG_EXTRAS} != options:
            return False, "the key's config is not the one the claim committed to", None
        why = method.check_crafted(key, data)
        return why is None, why or (f"{key.method}'s triggers are crafted on the model being marked (not re-derivable);"
                                    " each is an FGSM step of a committed training image with that image's label"), None
    payload = None
    if "payload_sha256" in config:
        payload = key.tensors["payload"].reshape(key.config.get("payload_shape") or [-1])
        if tensor_digest(payload.float()) != config["payload_sha256"]:
            return False, "the key's payload is not the one the claim committed to", None
    try:
        cls = type(method)
        rebuilt = cls(cls.config_cls.from_dict(options)).create_key(model, root=root, data=data, payload=payload)
    except (NetmarkError, ConfigError) as e:
        return False, f"cannot re-derive the key on this model: {e}", None
    why = _same_material(method, key, rebuilt)
    return why is None, why or "the key's material re-derives from its root", rebuilt
