"""Do forged ownership claims get through? Every forgery kind × every method, with and without ``--claim``.

    .venv/bin/python benchmarks/forgery_claims.py [--methods uchida,adi] [--out forgery.json]

Per registered method (its example config): the owner makes an identity and a claimed key
(``netmark.methods.ownership.claimed_key``) and embeds it into a fresh simple-cnn on digits (1,437 training images,
12 epochs SGD lr 0.05, batch 64, seed 0; frontier stitching: 12 plain epochs first, its key is crafted on a trained
model). A thief holding only the released model then tries (``netmark.attacks.forgery``):

* fresh — his own claim and claimed key (valid, but its material is random);
* fitted — that key with its message / payload / trigger labels read off the stolen model (Fan et al.);
* universal — (trigger sets) that key with 100 digits test images and their true labels as triggers;
* back-dated — the owner's claim with its time edited;
* replayed — the owner's commitment re-signed under the thief's identity, with the fitted key.

The fitted and universal forgeries are also made against an independent model (same architecture and data, seed 1,
trained without any mark: "indep." columns, "no claim / claim"): a universal key "detects" any model.

Each cell: ``accepted`` or the verifier step that rejects it (``check_claim``); "no claim" columns: whether plain
``verify`` detects the forged key (the threat a claim removes; ``undecided``: verify refuses the key). The thief's
images for data-derived keys are the same training images (any would do: his claim commits to them).
Prints a markdown table; ``--out`` also writes JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from netmark._util import seeded
from netmark.attacks.forgery import back_dated, fitted_key, re_signed, universal_key
from netmark.data import load
from netmark.errors import NetmarkError
from netmark.identity import new_identity
from netmark.methods import METHODS, get_method, verify
from netmark.methods.examples import example
from netmark.methods.ownership import check_claim, claimed_key
from netmark.models import build
from netmark.training import TrainConfig, train

TRAIN = TrainConfig(epochs=12, lr=0.05, batch_size=64, seed=0, progress=False)


def fresh_cnn() -> torch.nn.Module:
    with seeded(0):
        return build("simple-cnn", in_channels=1, image_size=8, num_classes=10)


def verdict(check: Any) -> str:
    if check.ok:
        return "ACCEPTED"
    name = next(n for n, p, _ in check.steps if not p)
    return f"rejected: {name}"


def plain(model: torch.nn.Module, key: Any) -> str:
    try:
        return "detected" if verify(model, key).detected else "not detected"
    except NetmarkError:
        return "undecided"


def one(name: str, tr: Any, te: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    method = get_method(name)(example(name))
    owner, thief = new_identity(), new_identity()
    model = fresh_cnn()
    if method.traits().needs_trained_model:
        train(model, tr, TRAIN)
    data = tr if method.traits().needs_data else None
    key, claim = claimed_key(method, model, owner, data=data)
    model, key, _ = method.embed(model, tr, TRAIN, key=key, warn=False)
    row: dict[str, Any] = {"method": name, "owner": verdict(check_claim(model, key, claim, data=data))}
    thief_data = data  # the thief's images for a data-derived key (any will do: his claim commits to them)
    tk, tc = claimed_key(method, model, thief, data=thief_data)
    fk = fitted_key(model, tk)
    forged = {"fresh": (tk, tc, thief_data), "fitted": (fk, tc, thief_data),
              "back-dated": (key, back_dated(claim), data), "replayed": (fk, re_signed(claim, thief), thief_data)}
    if "inputs" in tk.tensors:
        forged["universal"] = (universal_key(tk, te.x[:100], te.y[:100]), tc, thief_data)
    for kind, (k, c, d) in forged.items():
        row[kind] = verdict(check_claim(model, k, c, data=d))
        if kind in ("fresh", "fitted", "universal"):
            row[f"{kind} (no claim)"] = plain(model, k)
    with seeded(1):
        indep = build("simple-cnn", in_channels=1, image_size=8, num_classes=10)
    train(indep, tr, TRAIN)
    ik, ic = claimed_key(method, indep, thief, data=thief_data)
    targets = {"indep. fitted": fitted_key(indep, ik)}
    if "inputs" in ik.tensors:
        targets["indep. universal"] = universal_key(ik, te.x[:100], te.y[:100])
    for kind, k in targets.items():
        row[kind] = f"{plain(indep, k)} / {verdict(check_claim(indep, k, ic, data=thief_data))}"
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


COLUMNS = ("owner", "fresh (no claim)", "fresh", "fitted (no claim)", "fitted", "universal (no claim)", "universal",
           "back-dated", "replayed", "indep. fitted", "indep. universal", "seconds")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="all", help="comma-separated method names (default: every registered one)")
    ap.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = ap.parse_args()
    names = sorted(METHODS) if args.methods == "all" else args.methods.split(",")
    tr, te = load("digits", "train"), load("digits", "test")
    torch.set_num_threads(1)
    rows = []
    print("| method | " + " | ".join(COLUMNS) + " |")
    print("|---|" + "---|" * len(COLUMNS))
    for n in names:
        r = one(n, tr, te)
        rows.append(r)
        print(f"| {n} | " + " | ".join(str(r.get(c, "—")) for c in COLUMNS) + " |", flush=True)
    accepted = sum(str(v).endswith("ACCEPTED") for r in rows for k, v in r.items() if k not in ("owner", "method"))
    print(f"\nforgeries accepted under a claim: {accepted}; owner claims verified: "
          f"{sum(r['owner'] == 'ACCEPTED' for r in rows)}/{len(rows)}")
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
