"""Spread over seeds of the accuracies that tests/test_access.py bounds (issue 18: a bound must come from a measured
spread over >= 5 seeds, not from one run).

    .venv/bin/python benchmarks/access_bounds.py --seeds 0-7

Runs exactly the tests' protections (same data, model, schedule; one torch thread, as the tests) with the model,
shuffling and transform seeds shifted by each seed, and prints, per case, every run and the min / max of the
authorized and unauthorized test accuracies.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from netmark._util import seeded
from netmark.access import ProtectConfig, TransformConfig, access_accuracy, protect
from netmark.data import load
from netmark.models import build
from netmark.training import TrainConfig

#: case -> (architecture, architecture options, transform kind, epochs, lr milestones): the tests' settings
CASES = {
    "simple-cnn/fixed": ("simple-cnn", {}, "fixed", 24, ()),
    "simple-cnn/fixed-12-epochs": ("simple-cnn", {}, "fixed", 12, ()),  # what the test ran before issue 18
    "simple-cnn/learned": ("simple-cnn", {}, "learned", 12, ()),
    "simple-cnn/generator": ("simple-cnn", {}, "generator", 12, ()),
    "resnet8/generator": ("resnet", {"depth": 8}, "generator", 8, (5, 7)),
    "resnet8/generator-constant-lr": ("resnet", {"depth": 8}, "generator", 8, ()),  # before issue 18
}


def run(case: str, seed: int) -> dict[str, float]:
    arch, opts, kind, epochs, milestones = CASES[case]
    train_set, test_set = load("digits", "train"), load("digits", "test")
    with seeded(seed):
        model = build(arch, in_channels=1, image_size=8, num_classes=10, **opts)
    res = protect(model, train_set, ProtectConfig(TransformConfig(kind, seed=11 + seed)),  # type: ignore[arg-type]
                  TrainConfig(epochs=epochs, batch_size=64, lr=0.05, momentum=0.9, progress=False, seed=seed,
                                      milestones=milestones))
    return access_accuracy(res.model, res.transform, test_set)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0-4", help="a range a-b (inclusive) or a comma-separated list")
    ap.add_argument("--cases", default=",".join(CASES))
    args = ap.parse_args()
    if "-" in args.seeds:
        lo, hi = (int(s) for s in args.seeds.split("-"))
        seeds = list(range(lo, hi + 1))
    else:
        seeds = [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(1)
    for case in args.cases.split(","):
        t0 = time.perf_counter()
        accs = [run(case, s) for s in seeds]
        for s, a in zip(seeds, accs, strict=True):
            sys.stdout.write(f"{case} seed {s}: authorized {a['authorized']:.4f} "
                             f"unauthorized {a['unauthorized']:.4f}\n")
        auth = [a["authorized"] for a in accs]
        raw = [a["unauthorized"] for a in accs]
        sys.stdout.write(f"{case}: {len(seeds)} seeds, authorized {min(auth):.4f}..{max(auth):.4f}, unauthorized "
                         f"{min(raw):.4f}..{max(raw):.4f} ({time.perf_counter() - t0:.0f} s)\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
