"""Do forged ownership claims get through? Every forgery kind × every method, with and without ``--claim``.

    .venv/bin/python benchmarks/forgery_claims.py [--methods uchida,adi] [--out forgery.json]

The forgery section of ``netmark evaluate`` (:mod:`netmark.evaluation.forgery`, where the forgeries are described)
on a larger model: per registered method (its example config) the owner marks a fresh simple-cnn on digits under a
claim (1,437 training images, 12 epochs SGD lr 0.05, batch 64, seed 0; frontier stitching: 12 plain epochs first,
its key crafted on the trained model). The independent suspect is a simple-cnn of seed 1, the verifier's reference
models seeds 2 and 3, the thief's own models (``selected``) seeds 4 and 5, all trained alike without any mark; the
thief's images are the same training images (any would do: his claim commits to them); the universal triggers are
100 digits test images. Identities and nonces are derived from seed 0 (reproducible; in use they come from the OS).

Each cell: what plain ``verify`` answers without a claim → the claim check's verdict, or the step that rejects it.
Prints a markdown table; ``--out`` also writes JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from netmark._util import seeded
from netmark.data import load
from netmark.evaluation.forgery import INDEPENDENT_KINDS, KINDS, Parties, accepted, forgery_row, mark_under_claim
from netmark.methods import METHODS, get_method
from netmark.methods.examples import example
from netmark.models import build
from netmark.training import TrainConfig, train

TRAIN = TrainConfig(epochs=12, lr=0.05, batch_size=64, seed=0, progress=False)


def trained_cnn(seed: int, data: Any) -> torch.nn.Module:
    model = fresh_cnn(seed)
    train(model, data, replace(TRAIN, seed=seed))
    return model


def fresh_cnn(seed: int) -> torch.nn.Module:
    with seeded(seed):
        return build("simple-cnn", in_channels=1, image_size=8, num_classes=10)


def one(name: str, tr: Any, te: Any, models: dict[int, torch.nn.Module]) -> dict[str, Any]:
    t0 = time.perf_counter()
    method, parties = get_method(name)(example(name)), Parties.from_seed(0)
    model, key, claim = mark_under_claim(method, fresh_cnn(0), tr, TRAIN, parties)
    data = tr if method.traits().needs_data else None
    row = forgery_row(method, model, key, claim, owner_data=data, thief_data=tr, independent=models[1],
                      refs=[models[2], models[3]], thief_models=[models[4], models[5]], images=te.x[:100],
                      labels=te.y[:100], parties=parties, alpha=1e-6)
    return {"method": name, **row, "accepted": accepted(row), "seconds": round(time.perf_counter() - t0, 1)}


def cell(v: dict[str, Any] | None) -> str:
    if v is None:
        return "—"
    return str(v["claim"]) if v.get("plain") is None else f"{v['plain']} → {v['claim']}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="all", help="comma-separated method names (default: every registered one)")
    ap.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = ap.parse_args()
    names = sorted(METHODS) if args.methods == "all" else args.methods.split(",")
    tr, te = load("digits", "train"), load("digits", "test")
    torch.set_num_threads(1)
    models = {s: trained_cnn(s, tr) for s in (1, 2, 3, 4, 5)}
    rows = []
    columns = [*KINDS, *(f"indep. {k}" for k in INDEPENDENT_KINDS)]
    print("| method | owner's claim | " + " | ".join(columns) + " | seconds |")
    print("|---|---|" + "---|" * len(columns) + "---|")
    for n in names:
        r = one(n, tr, te, models)
        rows.append(r)
        cells = [cell(r["forgeries"].get(k)) for k in KINDS]
        cells += [cell(r["independent"].get(k)) for k in INDEPENDENT_KINDS]
        print(f"| {n} | {r['owner']} | " + " | ".join(cells) + f" | {r['seconds']} |", flush=True)
    print(f"\nforgeries accepted under a claim: {sum(r['accepted'] for r in rows)}; owners' claims verified: "
          f"{sum(r['owner'] == 'accepted' for r in rows)}/{len(rows)}")
    for r in rows:
        if r["owner"] != "accepted":
            print(f"- {r['method']}: owner's claim {r['owner']}: {r['owner_reason']}")
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
