"""Measurements of each experiment (``MEASURES[name](runner, experiment) -> dict``), on cached runs."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

from torch import nn

from netmark.attacks import PruneConfig, prune
from netmark.attacks.prune import ORDERS, PruneOrder
from netmark.bench.measure import false_positives, independents, independents_desc, series
from netmark.bench.report import criterion
from netmark.bench.runner import Runner, Trained
from netmark.bench.study import MeasureRegistry
from netmark.keys import WatermarkKey
from netmark.methods import verify
from netmark.methods.uchida import (
    Uchida,
    embed_without_training,
    embedding_loss,
    host_module,
    host_vector,
    host_weight_of,
)
from netmark.training import evaluate
from netmark.verify import log10_binomial_tail

from .runs import host_size
from .spec import Experiment, capacity_run

#: ``@measure`` registers a measurement under its function name.
MEASURES = measure = MeasureRegistry()
KEY_TYPES = ("direct", "diff", "random")
HIST_ALPHAS = (0.65, 0.95)


def wm_stats(model: nn.Module, key: WatermarkKey) -> dict[str, Any]:
    """BER, matches, p-value and E_R (per bit and summed) of ``key``'s watermark in ``model``."""
    r = verify(model, key)
    w = host_vector(host_weight_of(host_module(model, key.layer or ""))).detach().float().cpu()
    er = float(embedding_loss(w, key.tensors["X"].float(), key.bits, "mean"))
    return {"ber": r.bit_error_rate, "matched_bits": r.matched_bits, "total_bits": r.total_bits,
            "detected": r.detected, "p_value": r.p_value, "log10_p_value": r.details["log10_p_value"],
            "embed_loss": er, "embed_loss_sum": er * len(key.message)}


def test_error(model: nn.Module, t: Trained) -> float:
    return 1.0 - evaluate(model, t.test)["accuracy"]


def correct_prob(model: nn.Module, key: WatermarkKey) -> list[float]:
    """σ(Xw) oriented toward each embedded bit (σ((2b−1)·Xw)): the paper's histogram for its
    all-ones message; values > 0.5 are correctly extracted bits."""
    s = Uchida.from_key(key).extract(model, key).scores.double()
    p = s.where(key.bits.bool(), 1.0 - s)
    return [round(float(v), 5) for v in p]


@measure
def fig1(runner: Runner, exp: Experiment) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in exp.runs:
        t = runner.get(name)
        h, marked = t.history, t.key is not None
        out[name] = {"epoch": series(h, "epoch"), "test_error": [1 - a for a in series(h, "test_accuracy")],  # type: ignore[operator]
                     "train_loss": series(h, "loss"), "task_loss": series(h, "task_loss"),
                     "embed_loss": series(h, "embed_loss_raw", 1.0 / len(t.owner.message)) if marked else None,
                     "ber": series(h, "bit_error_rate") if marked else None}
    return out


@measure
def table4(runner: Runner, exp: Experiment) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for name, label in (("plain", "none"), ("direct", "direct"), ("diff", "diff"), ("random", "random")):
        t = runner.get(name)
        errs = [1 - h["test_accuracy"] for h in t.history]
        row: dict[str, Any] = {"test_error": 1 - t.test_accuracy, "best_test_error": min(errs) if errs else None,
                               "final_train_loss": t.history[-1]["loss"] if t.history else None}
        row.update(wm_stats(t.model, t.key) if t.key is not None else {"embed_loss": None, "ber": None})
        rows[label] = row
    rows["none"]["embed_loss_owner_key"] = wm_stats(runner.get("plain").model, runner.get("random").owner)["embed_loss"]
    return rows


@measure
def fig2(runner: Runner, exp: Experiment) -> dict[str, Any]:
    plain = runner.get("plain").model
    out: dict[str, Any] = {}
    for kt in KEY_TYPES:
        t = runner.get(kt)
        emb, not_emb = correct_prob(t.model, t.owner), correct_prob(plain, t.owner)
        out[kt] = {"embedded": emb, "not_embedded": not_emb, "embedded_min": min(emb),
                   "not_embedded_min": min(not_emb), "embedded_correct": sum(v > 0.5 for v in emb)}
    return out


@measure
def table6(runner: Runner, exp: Experiment) -> dict[str, Any]:
    sc = runner.scale
    cells: dict[str, dict[str, Any]] = {}
    for layer in sc.capacity_layers:
        cells[layer] = {}
        for bits in sc.capacity_bits:
            t = runner.get(capacity_run(layer, bits))
            cells[layer][str(bits)] = {"test_error": 1 - t.test_accuracy, **wm_stats(t.model, t.owner)}
    base = runner.get("capacity-plain")
    return {"layers": {la: host_size(runner, la) for la in sc.capacity_layers}, "bits": list(sc.capacity_bits),
            "cells": cells, "plain_test_error": 1 - base.test_accuracy, "train_size": base.train_size,
            "epochs": sc.capacity_train.epochs}


@measure
def table7(runner: Runner, exp: Experiment) -> dict[str, Any]:
    plain, owner = runner.get("plain"), runner.get("random").owner
    out: dict[str, Any] = {"steps": runner.scale.table7_steps, "optimizer": "adam lr 1e-3"}
    for reduction in ("mean", "sum"):
        key = replace(owner, config={**owner.config, "reduction": reduction})
        rows: dict[str, Any] = {}
        for lam in runner.scale.table7_lams:
            m = copy.deepcopy(plain.model)
            res = embed_without_training(m, key, lam=lam, steps=runner.scale.table7_steps)
            st = wm_stats(m, owner)
            rows[f"{lam:g}"] = {"weight_distance": res["weight_distance"], "embed_loss": st["embed_loss"],
                                "test_error": test_error(m, plain), "ber": st["ber"], "detected": st["detected"]}
        out[reduction] = rows
    return out


@measure
def table8(runner: Runner, exp: Experiment) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, before_name, after_name in (("same", "random", "finetune-same"),
                                           ("different", "random-domain-a", "finetune-domain-b")):
        before, after = runner.get(before_name), runner.get(after_name)
        b, a = wm_stats(before.model, before.owner), wm_stats(after.model, before.owner)
        out[label] = {"embed_loss_before": b["embed_loss"], "embed_loss_after": a["embed_loss"],
                      "ber_before": b["ber"], "ber_after": a["ber"], "detected_after": a["detected"],
                      "log10_p_value_after": a["log10_p_value"], "test_error_before": 1 - before.test_accuracy,
                      "test_error": 1 - after.test_accuracy, "train_size": after.train_size,
                      "epochs": runner.scale.train.epochs, "lr": runner.scale.finetune_lr or runner.scale.train.lr}
    sc = runner.scale
    out["domains"] = {"embed_classes": list(sc.domain_a), "finetune_classes": list(sc.domain_b)}
    return out


def pruned(runner: Runner, t: Trained, rate: float, order: PruneOrder) -> nn.Module:
    return prune(t.model, PruneConfig(rate=rate, order=order, layer=t.key.layer if t.key else None,
                                      seed=runner.scale.key_seed))


@measure
def fig5(runner: Runner, exp: Experiment) -> dict[str, Any]:
    owner = runner.get("random")
    key = owner.owner
    rates = list(runner.scale.prune_rates)
    out: dict[str, Any] = {"rates": rates, "layer": key.layer}
    for order in ORDERS:
        rows = []
        for a in rates:
            m = pruned(runner, owner, a, order)
            st = wm_stats(m, key)
            rows.append({"embed_loss": st["embed_loss"], "ber": st["ber"], "detected": st["detected"],
                         "test_error": test_error(m, owner) if order == "ascending" else None})
        out[order] = rows
    hist = {f"{a:g}": correct_prob(pruned(runner, owner, a, "ascending"), key) for a in HIST_ALPHAS}
    hist["not_embedded"] = correct_prob(runner.get("plain").model, key)
    out["histograms"] = hist
    return out


@measure
def overwrite(runner: Runner, exp: Experiment) -> dict[str, Any]:
    owner, atk = runner.get("random"), runner.get("overwrite")
    attacker = atk.extra["attacker_key"]
    assert attacker is not None
    o, a = wm_stats(atk.model, owner.owner), wm_stats(atk.model, attacker)
    return {"layer": owner.owner.layer, "owner_ber": o["ber"], "owner_detected": o["detected"],
            "owner_log10_p_value": o["log10_p_value"], "owner_embed_loss": o["embed_loss"],
            "attacker_ber": a["ber"], "attacker_detected": a["detected"],
            "test_error_before": 1 - owner.test_accuracy, "test_error": 1 - atk.test_accuracy,
            "epochs": runner.scale.train.epochs, "attacker_key_seed": attacker.seed}


@measure
def acceptance(runner: Runner, exp: Experiment) -> dict[str, Any]:
    sc = runner.scale
    plain, owner = runner.get("plain"), runner.get("random")
    key = owner.owner
    gap_pp = 100.0 * (plain.test_accuracy - owner.test_accuracy)
    own = wm_stats(owner.model, key)
    pr = wm_stats(pruned(runner, owner, 0.65, "ascending"), key)
    ft = wm_stats(runner.get("finetune-same").model, key)
    dd = wm_stats(runner.get("finetune-domain-b").model, key)
    ow = wm_stats(runner.get("overwrite").model, key)
    indep = independents(runner, sc.n_independent)
    T = len(key.message)
    desc = independents_desc(len(indep), sc.model, f"{indep[0].train_size} images", f"{sc.small_train.epochs} epochs")
    fp_d, _ = false_positives([t.model for t in indep] + [plain.model], key, desc + " + the plain baseline",
                              independent_test_error_mean=sum(1 - t.test_accuracy for t in indep) / len(indep))
    fp_d["log10_min_p_value"] = log10_binomial_tail(fp_d["max_matched_bits"] or 0, T)
    criteria = {
        "fidelity_gap_pp": criterion(gap_pp, "<= 0.5", gap_pp <= 0.5),
        "ber_owner": criterion(own["ber"], "== 0", own["ber"] == 0),
        "ber_pruned_65_ascending": criterion(pr["ber"], "== 0", pr["ber"] == 0),
        "ber_finetuned_same_domain": criterion(ft["ber"], "== 0", ft["ber"] == 0),
        "false_positives": criterion(fp_d["n_detected"], "== 0", fp_d["n_detected"] == 0),
    }
    return {
        "fidelity": {"plain_test_accuracy": plain.test_accuracy, "watermarked_test_accuracy": owner.test_accuracy,
                     "gap_pp": gap_pp, "ber": own["ber"], "detected": own["detected"],
                     "log10_p_value": own["log10_p_value"], "bits": T, "layer": key.layer,
                     "epochs": sc.train.epochs, "same_seed": True},
        "pruned_65": {"ber": pr["ber"], "detected": pr["detected"], "log10_p_value": pr["log10_p_value"]},
        "finetuned_same_domain": {"ber": ft["ber"], "detected": ft["detected"], "epochs": sc.train.epochs},
        "finetuned_different_domain": {"ber": dd["ber"], "detected": dd["detected"]},
        "overwritten": {"ber": ow["ber"], "detected": ow["detected"]},
        "false_positives": fp_d,
        "criteria": criteria,
        "all_passed": all(c["passed"] for c in criteria.values()),
    }
