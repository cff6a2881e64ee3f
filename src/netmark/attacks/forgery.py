"""Ownership forgeries: keys and claims a thief builds from a released model alone (issue 20, item 7).

Fan et al.'s ambiguity attack (NeurIPS 2019) and its relatives, for any registered method. None needs the owner's
key; each is what an adaptive adversary who has read netmark's code does:

* :func:`fitted_key` — take a key of the method (the thief's own, or a claimed one) and overwrite its free part
  with what the stolen model shows: the message read through the key's projection/extractor (bits), the values at
  the key's positions (Tartaglione), the model's own answers on the triggers (trigger sets). Declared random.
* :func:`universal_key` — a trigger set of ordinary images with their true labels, declared random: any model that
  learnt the task "verifies".
* :func:`declared_null` — a key that declares its own null: labels "random", a calibration of zero matches.
* :func:`selected_triggers` — frontier stitching's triggers chosen by the thief (FGSM steps of training images the
  stolen model answers right and his own models wrong).
* :func:`back_dated` / :func:`re_signed` — a claim with its time edited; someone else's commitment signed again
  under the thief's identity.

Without a claim :func:`netmark.methods.verify` accepts most of them (the threat); under a claim
(:func:`netmark.methods.ownership.check_claim`) each is rejected at the step that catches it
(``benchmarks/forgery_claims.py`` measures the table).
"""

from __future__ import annotations

from dataclasses import asdict, replace

import torch
from torch import nn
from torch.utils.data import Dataset

from netmark.claims import Claim
from netmark.identity import Identity
from netmark.keys import WatermarkKey
from netmark.methods import method_from_key


def fitted_key(model: nn.Module, key: WatermarkKey) -> WatermarkKey:
    """``key`` with its message, trigger labels or payload replaced by what ``model`` reads under it."""
    method = method_from_key(key)
    ex = method.extract(model, key)
    kind = method.traits().payload
    if kind == "bits":
        return replace(key, message="".join(str(int(b)) for b in ex.bits.reshape(-1)), message_random=True)
    if kind == "values":
        return replace(key, tensors={**key.tensors, "payload": ex.scores.detach().float().reshape(-1).clamp(0, 1)})
    drop = {"null_counts", "null_rates"}  # the stored null would no longer fit: declare the labels random instead
    tensors = {k: v for k, v in key.tensors.items() if k not in drop}
    return replace(key, tensors={**tensors, "labels": ex.bits.to(torch.int64).reshape(-1)}, message_random=True)


def universal_key(key: WatermarkKey, images: torch.Tensor, labels: torch.Tensor) -> WatermarkKey:
    """A trigger-set ``key`` whose triggers are ordinary ``images`` with their true ``labels``, declared random."""
    if "inputs" not in key.tensors:
        raise ValueError(f"a {key.method} key has no trigger set")
    tensors = {k: v for k, v in key.tensors.items() if k not in ("null_counts", "null_rates")}
    return replace(key, message_random=True, tensors={**tensors, "inputs": images.float().contiguous(),
                                                      "labels": labels.to(torch.int64).contiguous()})


def declared_null(key: WatermarkKey) -> WatermarkKey:
    """``key`` declaring a null under which any answer is significant: a trigger set's labels "random" with a
    calibration of zero matches at rates of 0.001, Wang's null inputs matching no bit."""
    if "labels" not in key.tensors and "null_counts" not in key.tensors:
        return key  # an exact null (Uchida, Tartaglione, DeepSigns' white box): nothing the key could declare
    n = len(key.tensors["labels"]) if "labels" in key.tensors else len(key.message)
    null = {"null_counts": torch.zeros(8, dtype=torch.int64), "null_rates": torch.full((n,), 1e-3)}
    return replace(key, message_random=True, tensors={**key.tensors, **null})


def selected_triggers(model: nn.Module, key: WatermarkKey, data: Dataset, proxies: list[nn.Module]) -> WatermarkKey:
    """A frontier-stitching ``key`` (crafted, not re-derived) whose triggers the thief selects: FGSM steps (the key's
    ``eps``) of training images of his choice, kept where the stolen ``model`` answers their label and his own
    ``proxies`` (models he trained) do not — each still an FGSM step of a committed image with its label."""
    from netmark.methods.frontier import fgsm
    from netmark.methods.triggerset import dataset_rows, logits_of
    from netmark.training import evaluating

    xs, ys = dataset_rows(data)
    with evaluating(model):
        adv = fgsm(model, xs.float(), ys, float(key.config["eps"]))
    keep = logits_of(model, adv).argmax(1) == ys
    for p in proxies:
        keep &= logits_of(p, adv).argmax(1) != ys
    idx = keep.nonzero().reshape(-1)[: len(key.tensors["labels"])]
    tensors = {k: v for k, v in key.tensors.items() if k not in ("null_counts", "null_rates")}
    return replace(key, tensors={**tensors, "inputs": adv[idx].contiguous(), "labels": ys[idx].contiguous()})


def back_dated(claim: Claim, created: str = "2019-01-01T00:00:00+00:00") -> Claim:
    """``claim`` with its time edited (its signature no longer covers it)."""
    return replace(claim, created=created)


def re_signed(claim: Claim, thief: Identity) -> Claim:
    """Someone else's commitment presented as the thief's: owner field and signature his."""
    bare = Claim(**{**asdict(claim), "owner": thief.public.raw.hex(), "signature": ""})
    return replace(bare, signature=thief.sign(bare.body()).hex())
