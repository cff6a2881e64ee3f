"""White-box watermarks against function-preserving obfuscation, with alignment-aware verification (issue 21).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/alignment.py --train-size 6000 --epochs 3 --independent 20

Per method (Fashion-MNIST, ``--train-size`` stratified training images, ``--epochs`` of SGD lr 0.01 momentum 0.9,
batch 64, key seed ``--seed``; the settings of issue 21): Uchida in LeNet5 ``conv2`` (256 bits) and in the MLP's
``fc2`` (784-64-10, 48 bits: M = 64), Wang AUTO in the MLP's ``fc2`` (256 bits), Tartaglione in LeNet5 (1800 values,
4 replicas, split batch), DeepSigns white in the MLP's ``fc1`` (32 bits, the example config); ``--bits`` changes them.

First ``2 × --independent`` models of each architecture are trained without any key (seeds 100, 101, ...; same data
and schedule): the first half calibrates the key's aligned null (``embed(..., null_models=...)``: issue 21, item 3),
the second half measures false positives. (a) The marked model is attacked with the registered attacks: ``permute``,
``rescale``, ``dummy-neurons`` (k = 50 % of every hidden layer's width; ``zero`` and ``split`` modes), the three
combined (``obfuscate`` with 0 epochs: dummy, permute, rescale) and the three then fine-tuned one epoch (``obfuscate``,
SGD lr 0.01 on all training images); each row: max |Δ logits| on 256 test images (the fine-tuned row: the change
fine-tuning made too), the raw p-value (or "unreadable": the host changed shape), the aligned one (calibrated), which
decided and the alignment quality. (b) The held-out independent models verified with the key: the largest raw and
aligned match count (Tartaglione: ρ), false positives at alpha 1e-6 of the decision and of "always aligned"
(calibrated), the largest alignment quality, and the calibration null (mean, largest). (c) The time of one in-process
verification of the LeNet5 Uchida key with and without its alignment reference.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from netmark._util import seeded
from netmark.attacks import ATTACKS
from netmark.data import load
from netmark.methods import get_method
from netmark.methods.alignment import without_reference
from netmark.methods.alignment_null import ALIGN_NULL
from netmark.methods.deepsigns import DeepSignsConfig
from netmark.methods.tartaglione import TartaglioneConfig
from netmark.methods.uchida import UchidaConfig
from netmark.methods.wang import WangConfig
from netmark.models import build
from netmark.training import TrainConfig, train

CASES: dict[str, tuple[str, Any, str]] = {
    "uchida-lenet5": ("uchida", UchidaConfig(layer="conv2", bits=256), "lenet5"),
    "uchida-mlp": ("uchida", UchidaConfig(layer="fc2", bits=48), "mlp"),
    "wang-mlp": ("wang", WangConfig(layer="fc2", bits=256), "mlp"),
    "tartaglione-lenet5": ("tartaglione", TartaglioneConfig(), "lenet5"),
    "deepsigns-mlp": ("deepsigns", DeepSignsConfig(mode="white", layer="fc1"), "mlp"),
}
#: (row, registered attack, config changes); ``obfuscate`` runs dummy-neurons (50 %), permute, rescale (+ training)
ATTACK_ROWS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("permute", "permute", {}), ("rescale", "rescale", {}), ("dummy-neurons 50%", "dummy-neurons", {}),
    ("dummy-neurons 50% split", "dummy-neurons", {"mode": "split"}),
    ("all three", "obfuscate", {"train": TrainConfig(epochs=0, progress=False)}),
    ("all three + 1 epoch fine-tuning", "obfuscate", {}))
ALPHA = 1e-6


def new_model(arch: str, seed: int) -> nn.Module:
    with seeded(seed):
        return build(arch, in_channels=1, image_size=28, num_classes=10)


def max_logit_change(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((a.eval()(x) - b.eval()(x)).abs().max())


def fmt(p: float | None) -> str:
    return "unreadable" if p is None else f"{p:.2g}"


def count(part: dict[str, Any]) -> float:
    """Matched bits, or (Tartaglione) Pearson's rho."""
    return float(part["matched_bits"]) if part.get("matched_bits") is not None else float(part["score"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train-size", type=int, default=6000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--independent", type=int, default=20, help="models to calibrate with, and as many to test")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bits", default="", help="other message lengths, e.g. uchida-mlp=64,deepsigns-mlp=128")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = load("fashion-mnist", "train", train_size=args.train_size)
    test = load("fashion-mnist", "test")
    probe = test.x[:256].float()
    tc = TrainConfig(epochs=args.epochs, seed=args.seed, progress=False)
    n = args.independent
    print(f"# Fashion-MNIST, {len(data)} training images, {args.epochs} epochs (SGD lr 0.01 m 0.9, batch 64), "
          f"key seed {args.seed}; {n} independent models calibrate the aligned null (seeds 100..{99 + n}), {n} others "
          f"test false positives (seeds {100 + n}..{99 + 2 * n})\n")
    others: dict[str, list[nn.Module]] = {}
    for case in args.cases.split(","):
        name, config, arch = CASES[case]
        bits_for = dict(item.split("=") for item in args.bits.split(",") if item)
        if case in bits_for:
            config = replace(config, bits=int(bits_for[case]))
        method = get_method(name)(config)
        if arch not in others:
            t0 = time.time()
            others[arch] = []
            for i in range(2 * n):
                m = new_model(arch, 100 + i)
                train(m, data, replace(tc, seed=100 + i))
                others[arch].append(m.eval())
            print(f"({2 * n} independent {arch} models trained in {time.time() - t0:.0f} s)", file=sys.stderr)
        calibration, held_out = others[arch][:n], others[arch][n:]
        t0 = time.time()
        model, key, _ = method.embed(new_model(arch, args.seed), data, replace(tc), seed=args.seed, warn=False,
                                     null_models=calibration)
        model.eval()
        own = method.verify(model, key)
        null = key.tensors[ALIGN_NULL]
        bits = own.total_bits
        print(f"## {case}: {name} {arch}, {bits or 'rho over ' + str(own.details.get('size'))}"
              f"{' bits' if bits else ''} (embedded and calibrated in {time.time() - t0:.0f} s; owner p = "
              f"{own.p_value:.2g}; aligned null on {len(null)} independent models: mean {float(null.mean()):.3g}, "
              f"largest {float(null.max()):.3g})")
        print("| attack | max dlogit | raw p | aligned p (calibrated) | aligned p (exact null) | decided by | quality "
              "| detected |")
        print("|---|---|---|---|---|---|---|---|")
        for row, attack, changes in ATTACK_ROWS:
            cls = ATTACKS[attack]
            cfg = cls.example_config() if attack == "obfuscate" else cls.config_cls()
            cfg = replace(cfg, seed=args.seed + 1, **changes)
            suspect = cls(cfg)(model, data if cls.needs_data else None).eval()
            res = method.verify(suspect, key)
            info = res.details["alignment"]
            uncal = res.details.get("log10_p_uncalibrated")
            print(f"| {row} | {max_logit_change(model, suspect, probe):.1e} | {fmt(info['raw'].get('p_value'))} | "
                  f"{fmt(info['aligned']['p_value'])} | {'-' if uncal is None else fmt(10.0 ** uncal)} | "
                  f"{info['used']} | {info['quality']:.3f} | {res.detected} |")
        rows = []
        for m in held_out:
            res = method.verify(m, key)
            info = res.details["alignment"]
            rows.append((count(info["raw"]), count(info["aligned"]), info["raw"]["p_value"],
                         info["aligned"]["p_value"], info["quality"], res.detected))
        raw_c, al_c, raw_p, al_p, q, det = (list(x) for x in zip(*rows, strict=True))
        print(f"\nheld-out independent ({len(rows)}): largest raw {max(raw_c):.3g}, largest aligned {max(al_c):.3g}"
              f"{f' of {bits}' if bits else ' (rho)'} (mean {sum(al_c) / len(al_c):.3g}); smallest raw p "
              f"{min(raw_p):.2g}, aligned p (calibrated) {min(al_p):.2g}; false positives at {ALPHA:g}: decision "
              f"{sum(det)}, always-aligned {sum(p <= ALPHA for p in al_p)}; largest quality {max(q):.3f}\n")
    if "uchida-lenet5" in args.cases.split(","):
        name, config, arch = CASES["uchida-lenet5"]
        method = get_method(name)(config)
        model, key, _ = method.embed(new_model(arch, args.seed), data, replace(tc, epochs=1), seed=args.seed,
                                     warn=False)
        suspect = ATTACKS["obfuscate"](replace(ATTACKS["obfuscate"].example_config(), seed=1,
                                               train=TrainConfig(epochs=0, progress=False)))(model, data)
        old = without_reference(key)
        for label, k, m in (("no reference", old, model), ("reference, unattacked", key, model),
                            ("reference, all three obfuscations", key, suspect)):
            t0 = time.perf_counter()
            for _ in range(10):
                method.verify(m, k)
            print(f"LeNet5 Uchida verify, {label}: {(time.perf_counter() - t0) * 100:.1f} ms")


if __name__ == "__main__":
    main()
