"""How often does a Wang extractor read a null input as (nearly) the whole message? With and without hardening.

    .venv/bin/python benchmarks/wang_null_tail.py --seeds 0-11 --harden-steps 0,200

Wang's specific extractor (netmark.methods.wang) maps null inputs to the complement of the message, but all bits
hang on one learned "is this the host?" score: the rare null input it scores positive reads the whole message,
and the calibrated p-value of the owner's own model is then no better than that input's empirical rate
(~1/4097: refused at alpha 1e-6). Per seed and ``harden_steps`` this embeds the test suite's setting (digits,
MLP ``fc2``, 64 bits, 8 epochs Adam 2e-3, batch 32; one torch thread), calibrates on 16,384 fresh null inputs
(half U(-1, 1), half shuffled host weights) and prints: the owner's verification (detected, p), the most bits
any null input matched, how many matched >= 3/4 of the bits, and the seconds; then whether the key is detected in
an independently trained MLP (seed + 100), after magnitude-pruning 80 % of ``fc2``, and after fine-tuning 5 epochs
(SGD 0.01) on the 360 digits test images. Then per setting: refused keys and detections over the seeds.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from netmark._util import seeded
from netmark.attacks.finetune import Finetune, FinetuneConfig
from netmark.attacks.prune import Prune, PruneConfig
from netmark.data import load
from netmark.methods.wang import Wang, WangConfig, calibrate
from netmark.models import build
from netmark.training import TrainConfig, train

TRAIN = TrainConfig(epochs=8, optimizer="adam", lr=0.002, batch_size=32, progress=False)
BITS = 64


def seeds_arg(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=seeds_arg, default=seeds_arg("0-11"))
    ap.add_argument("--harden-steps", default="0,200", help="comma-separated values of WangConfig.harden_steps")
    ap.add_argument("--null-samples", type=int, default=16_384)
    args = ap.parse_args()
    torch.set_num_threads(1)
    train_set, test_set = load("digits", "train"), load("digits", "test")
    for steps in (int(s) for s in args.harden_steps.split(",")):
        cfg = WangConfig(layer="fc2", bits=BITS, harden_steps=steps)
        refused, detections = 0, {"independent": 0, "pruned 80%": 0, "fine-tuned": 0}
        print(f"harden_steps={steps}")
        for seed in args.seeds:
            with seeded(seed):
                model = build("mlp", in_channels=1, image_size=8, num_classes=10)
            t0 = time.perf_counter()
            model, key, _ = Wang(cfg).embed(model, train_set, replace(TRAIN, seed=seed), seed=seed, warn=False)
            seconds = time.perf_counter() - t0
            result = Wang(cfg).verify(model, key)
            refused += not result.detected
            with seeded(100 + seed):
                independent = build("mlp", in_channels=1, image_size=8, num_classes=10)
            train(independent, train_set, replace(TRAIN, seed=100 + seed))
            suspects = {"independent": independent, "pruned 80%": Prune(PruneConfig(rate=0.8, layer="fc2"))(model),
                        "fine-tuned": Finetune(FinetuneConfig(train=TrainConfig(epochs=5, lr=0.01, progress=False,
                                                                                seed=seed)))(model, test_set)}
            found = {name: Wang(cfg).verify(m, key).detected for name, m in suspects.items()}
            for name, hit in found.items():
                detections[name] += hit
            counts = calibrate(model, key, samples=args.null_samples,  # last: overwrites the key's null
                               seed=10_000 + seed)["null_counts"]
            print(f"  seed {seed:2d}: detected {result.detected!s:5} p = {result.p_value:.2e}; null inputs: max "
                  f"{int(counts.max())}/{BITS} bits, {int((counts >= 3 * BITS // 4).sum())} of {counts.numel()} "
                  f">= {3 * BITS // 4}; {seconds:.1f} s; " + ", ".join(f"{k} {v}" for k, v in found.items()),
                  flush=True)
        print(f"  refused (not detected): {refused} of {len(args.seeds)}; detected in "
              + ", ".join(f"{k} {v}/{len(args.seeds)}" for k, v in detections.items()))


if __name__ == "__main__":
    main()
