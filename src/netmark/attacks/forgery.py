"""Ownership forgeries: keys and claims a thief builds from a released model alone (issue 20, item 7).

Fan et al.'s ambiguity attack (NeurIPS 2019) and its relatives, for any registered method. None needs the owner's
key; each is what an adaptive adversary who has read netmark's code does:

* :func:`fitted_key` — take a key of the method (the thief's own, or a claimed one) and overwrite its free part
  with what the stolen model shows: the message read through the key's projection/extractor (bits), the values at
  the key's positions (Tartaglione), the model's own answers on the triggers (trigger sets). Declared random.
* :func:`universal_key` — a trigger set of ordinary images with their true labels, declared random: any model that
  learnt the task "verifies".
* :func:`back_dated` / :func:`re_signed` — a claim with its time edited; someone else's commitment signed again
  under the thief's identity.

Without a claim :func:`netmark.methods.verify` accepts the first two (the threat); under a claim
(:func:`netmark.methods.ownership.check_claim`) each is rejected at the step that catches it
(``benchmarks/forgery_claims.py`` measures the table).
"""

from __future__ import annotations

from dataclasses import asdict, replace

import torch
from torch import nn

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


def back_dated(claim: Claim, created: str = "2019-01-01T00:00:00+00:00") -> Claim:
    """``claim`` with its time edited (its signature no longer covers it)."""
    return replace(claim, created=created)


def re_signed(claim: Claim, thief: Identity) -> Claim:
    """Someone else's commitment presented as the thief's: owner field and signature his."""
    bare = Claim(**{**asdict(claim), "owner": thief.public.raw.hex(), "signature": ""})
    return replace(bare, signature=thief.sign(bare.body()).hex())
