"""Fig. 4's pruning with both extractors: netmark's *specific* one (the reproduction's default) and the paper's.

The reproduction's MANU/AUTO use a specific extractor (:mod:`netmark.methods.wang`): besides the host weights → m
it is trained on null inputs (U(−1, 1) vectors and host-weight copies with 70-100% of the weights permuted) → the
complement 1 − m, and on host-weight copies magnitude-pruned (smallest first) at random rates in [0, 0.9) → m. The
paper's extractor (``negatives=0, augment=0``) sees the host weights alone. This module trains MANU and AUTO with
each extractor on the same data, seeds and key, prunes the host layer in the three orders and records, per rate,
the task accuracy, the bit accuracy, the detection and two probes of *why* the bits flip:

* ``complement``: the share of the extracted bits equal to 1 − m (1 − bit accuracy);
* ``cosine``: the cosine between the pruned host weights and the unpruned ones (how "null-like" the input looks);

and the bits the extractor reads on 256 fresh null inputs of each family (``null``: share equal to 1 − m).

Run::

    python -m netmark.experiments.wang.extractors --train-size 12000 --epochs 15 --out reports/wang/results.json

which adds ``experiments["extractors"]`` (its command, scale, seconds and measurements) to that results.json
(``--force`` replaces an earlier one); ``netmark report reports/wang`` shows it beside Fig. 4.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from netmark.attacks import PruneConfig, prune
from netmark.attacks.prune import PruneOrder
from netmark.bench.report import read_results, write_json
from netmark.bench.roles import fresh_model
from netmark.data import load
from netmark.errors import ConfigError, NetmarkError
from netmark.methods import verify
from netmark.methods.wang import PAPER_TRAIN_MLP, Wang, extractor_logits, paper_config
from netmark.training import evaluate

log = logging.getLogger(__name__)
RATES = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
ORDERS: tuple[PruneOrder, ...] = ("ascending", "random", "descending")
EXTRACTORS = ("specific", "paper")


def _null_probe(w: torch.Tensor, key: Any, n: int, seed: int) -> dict[str, float]:
    """Share of complement bits the extractor reads on ``n`` U(−1, 1) vectors and ``n`` permutations of ``w``."""
    g = torch.Generator().manual_seed(seed)
    sel, W1, W2 = (key.tensors[k].float() for k in ("selection", "W1", "W2"))
    m = key.bits.float()
    out = {}
    for name, x in (("uniform", torch.rand(n, w.numel(), generator=g) * 2 - 1),
                    ("permuted", w[torch.rand(n, w.numel(), generator=g).argsort(dim=1)])):
        bits = (extractor_logits(x, sel, W1, W2) > 0).float()
        out[name] = float((bits == 1 - m).float().mean())
    return out


def measure_one(variant: str, extractor: str, *, train: Any, test: Any, epochs: int, bits: int,
                key_seed: int, converge_epochs: int) -> dict[str, Any]:
    cfg = replace(paper_config("mlp", variant, bits, specific=extractor == "specific"),  # type: ignore[arg-type]
                  layer="fc2", converge_epochs=converge_epochs, harden_steps=0)  # as committed (before issue 18)
    model = fresh_model("mlp", train, 0)
    t0 = time.perf_counter()
    model, key, _ = Wang(cfg).embed(model, train, replace(PAPER_TRAIN_MLP, epochs=epochs, seed=0, progress=False),
                                    seed=key_seed, warn=False)
    seconds = time.perf_counter() - t0
    w0 = model.get_parameter("fc2.weight").detach().reshape(-1).clone()
    curves: dict[str, list[dict[str, Any]]] = {}
    for order in ORDERS:
        rows = []
        for rate in RATES:
            m = prune(model, PruneConfig(rate=rate, order=order, layer="fc2", seed=key_seed))
            w = m.get_parameter("fc2.weight").detach().reshape(-1)
            r = verify(m, key)
            rows.append({"rate": rate, "test_accuracy": evaluate(m, test)["accuracy"], "bit_accuracy": r.score,
                         "complement": 1 - r.score, "detected": bool(r.detected),
                         "cosine": float(torch.nn.functional.cosine_similarity(w, w0, dim=0))})
        curves[order] = rows
    return {"variant": variant, "extractor": extractor, "train_seconds": seconds,
            "test_accuracy": curves["ascending"][0]["test_accuracy"], "pruning": curves,
            "null": _null_probe(w0, key, 256, key_seed + 1)}


def run(train_size: int, epochs: int, bits: int, converge_epochs: int, key_seed: int = 2020) -> dict[str, Any]:
    train = load("fashion-mnist", "train", train_size=train_size, val_size=12000, split_seed=0)
    test = load("fashion-mnist", "test")
    t0 = time.perf_counter()
    cells = [measure_one(v, e, train=train, test=test, epochs=epochs, bits=bits, key_seed=key_seed,
                         converge_epochs=converge_epochs)
             for v in ("manu", "auto") for e in EXTRACTORS]
    return {"title": "Fig. 4 with the specific and the paper's extractor",
            "scale": {"dataset": "fashion-mnist", "model": "mlp", "layer": "fc2", "train_size": len(train),
                      "test_size": len(test), "epochs": epochs, "optimizer": "adam", "lr": 1e-3, "batch_size": 32,
                      "bits": bits, "converge_epochs": converge_epochs, "model_seed": 0, "train_seed": 0,
                      "key_seed": key_seed, "prune_seed": key_seed, "torch_threads": torch.get_num_threads()},
            "rates": list(RATES), "cells": cells, "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m netmark.experiments.wang.extractors",
                                description=(__doc__ or "").split("\n")[0])
    p.add_argument("--train-size", type=int, default=12000)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--bits", type=int, default=512)
    p.add_argument("--converge-epochs", type=int, default=6)
    p.add_argument("--out", type=Path, required=True, help="the Wang reproduction's results.json to add it to")
    p.add_argument("--force", action="store_true", help="replace an earlier experiments['extractors']")
    a = p.parse_args(argv)
    try:
        res = read_results(a.out)
        if res.get("experiment") != "wang2020":
            raise ConfigError(f"{a.out} is not a Wang reproduction's results")
        if "extractors" in res.get("experiments", {}) and not a.force:
            raise ConfigError(f"{a.out} already holds experiments['extractors']; pass --force to replace it")
        if a.epochs <= a.converge_epochs:
            raise ConfigError("--epochs must exceed --converge-epochs (MANU selects after them)")
        out = run(a.train_size, a.epochs, a.bits, a.converge_epochs)
    except NetmarkError as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    out["command"] = "python -m netmark.experiments.wang.extractors " + " ".join(argv if argv is not None
                                                                                   else sys.argv[1:])
    res = read_results(a.out)  # again: the measurement took minutes
    res["experiments"]["extractors"] = out
    write_json(a.out, res, force=True)
    sys.stdout.write(json.dumps({"seconds": round(out["seconds"])}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
