"""Knockoff-style extraction and Neural Dehydration against marked models: the table of issue 23 (helper h3).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/extraction_attacks.py --seed 0

Scale (a small real one, 2 CPU cores): Fashion-MNIST. The owner trains a simple-cnn (Chen & Wu; 28×28) on
``--owner-size`` training images (default 6000, a seeded draw) for ``--epochs`` (5) epochs of SGD (lr 0.05, batch
64), embedding each scheme (its ``netmark.methods.examples`` config: Adi 100 abstract triggers, 16 per batch; Uchida
on conv2; frontier stitching). The thief's data are other training images, disjoint from the owner's. Test accuracy
is measured on ``--test-size`` (2000) test images; the p-value is the scheme's own verification (Adi / frontier
stitching: the answers to the triggers; Uchida: the weights).

* extraction (``netmark.attacks.extraction``): a fresh simple-cnn trained on the marked model's top-1 answers to
  1 %, 5 %, 10 %, 30 % of the owner's training-set size in thief images (10 epochs of SGD lr 0.05, batch 64).
* neural dehydration (``netmark.attacks.dehydration``, mode "all"): with 1 %, 2 %, 5 % of the owner's training-set
  size in clean labelled thief images; ``--per-class`` (50) recovered images per class, ``--inversion-steps`` (200)
  Adam steps; unlearning as the paper (weight 0.125, 128 recovered images a step, SGD lr 0.01, momentum 0.9,
  weight decay 5e-4) for 40 epochs with batch 32 (the paper: 250 per class, 400 steps on MNIST, batch 128).
* control: plain fine-tuning with the same clean data and schedule (dehydration with ``unlearn_weight=0``), so the
  effect of the unlearning is seen apart from the fine-tuning's.

Prints a markdown table (p-value, test accuracy) per scheme and attack budget.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from typing import Any

import torch

from netmark._util import seeded
from netmark.attacks import ATTACKS
from netmark.attacks.dehydration import NeuralDehydrationConfig
from netmark.attacks.extraction import ExtractionConfig
from netmark.data import load
from netmark.methods import get_method
from netmark.methods.examples import example
from netmark.models import build
from netmark.training import TrainConfig, evaluate


def cell(method: Any, key: Any, model: torch.nn.Module, test: Any) -> dict[str, float]:
    r = method.verify(model, key)
    return {"p": float(r.p_value), "acc": float(evaluate(model, test)["accuracy"]),
            "trig": float(r.details.get("trigger_accuracy", float("nan")))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default="adi,uchida,frontier-stitching")
    ap.add_argument("--owner-size", type=int, default=6000)
    ap.add_argument("--test-size", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--queries", default="0.01,0.05,0.1,0.3", help="extraction budgets, shares of --owner-size")
    ap.add_argument("--clean", default="0.01,0.02,0.05", help="dehydration clean data, shares of --owner-size")
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--inversion-steps", type=int, default=200)
    ap.add_argument("--unlearn-epochs", type=int, default=40)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    full, test_all = load("fashion-mnist", "train"), load("fashion-mnist", "test")
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(args.seed))
    n = args.owner_size
    owner_data = full.subset(order[:n].tolist())
    thief_pool = full.subset(order[n : n + int(0.3 * n) + 1].tolist())  # disjoint from the owner's
    test = test_all.subset(range(args.test_size))
    budgets = [float(s) for s in args.queries.split(",")]
    fractions = [float(s) for s in args.clean.split(",")]
    embed_cfg = TrainConfig(epochs=args.epochs, lr=0.05, batch_size=64, seed=args.seed, progress=False)
    knock_train = TrainConfig(epochs=10, lr=0.05, batch_size=64, progress=False)
    dh = NeuralDehydrationConfig(per_class=args.per_class, inversion_steps=args.inversion_steps, seed=args.seed,
                                 train=replace(NeuralDehydrationConfig().train, epochs=args.unlearn_epochs,
                                               batch_size=32))
    rows: list[tuple[str, str, dict[str, float], float]] = []
    t_all = time.perf_counter()
    for name in args.methods.split(","):
        method = get_method(name)(example(name))
        with seeded(args.seed):
            fresh = build("simple-cnn", in_channels=1, image_size=28, num_classes=10)
        t0 = time.perf_counter()
        model, key, _ = method.embed(fresh, owner_data, embed_cfg, seed=args.seed, warn=False)
        rows.append((name, "marked (no attack)", cell(method, key, model, test), time.perf_counter() - t0))
        print(f"# {name}: marked {rows[-1][2]}", file=sys.stderr, flush=True)
        for b in budgets:
            q = max(1, round(b * n))
            t0 = time.perf_counter()
            att = ATTACKS["extraction"](ExtractionConfig(queries=q, train=knock_train, seed=args.seed))
            out = att(model, thief_pool)
            rows.append((name, f"extraction, {q} queries ({b:.0%})", cell(method, key, out, test),
                         time.perf_counter() - t0))
            print(f"# {name}: {rows[-1][1]} {rows[-1][2]}", file=sys.stderr, flush=True)
        for f in fractions:
            clean = thief_pool.subset(range(max(1, round(f * n))))
            for label, cfg in (("neural dehydration", dh), ("control: fine-tuning only", replace(dh,
                                                                                                  unlearn_weight=0.0))):
                t0 = time.perf_counter()
                out = ATTACKS["neural-dehydration"](cfg)(model, clean)
                rows.append((name, f"{label}, {len(clean)} clean ({f:.0%})", cell(method, key, out, test),
                             time.perf_counter() - t0))
                print(f"# {name}: {rows[-1][1]} {rows[-1][2]}", file=sys.stderr, flush=True)
    print(f"Fashion-MNIST, simple-cnn, owner {n} images × {args.epochs} epochs, test {args.test_size} images, "
          f"seed {args.seed}; dehydration {args.per_class}/class, {args.inversion_steps} inversion steps, "
          f"{args.unlearn_epochs} unlearning epochs; total {time.perf_counter() - t_all:.0f} s\n")
    print("| scheme | attack | p-value | trigger acc | test acc | seconds |")
    print("|---|---|---|---|---|---|")
    for name, attack, c, s in rows:
        trig = "–" if c["trig"] != c["trig"] else f"{c['trig']:.2f}"
        print(f"| {name} | {attack} | {c['p']:.2e} | {trig} | {c['acc']:.3f} | {s:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
