"""Measurements of each experiment (``MEASURES[name](runner, experiment) -> dict``), on cached runs."""

from __future__ import annotations

from typing import Any

from scipy import stats
from torch import Tensor, nn

from netmark.attacks import PruneConfig, prune
from netmark.attacks.prune import PruneOrder
from netmark.bench.measure import false_positives, independents, independents_desc
from netmark.bench.report import criterion
from netmark.bench.runner import Runner, Trained
from netmark.bench.study import MeasureRegistry
from netmark.keys import WatermarkKey
from netmark.methods import verify
from netmark.metrics import histogram_correlation_matrix, layer_weights
from netmark.training import evaluate

from .runs import layer_of, method_of, selected_weights
from .spec import CONV_PREFIX, METHODS, Experiment, all_bits, attacked_run, marked_run, plain_run, seeded_run

#: ``@measure`` registers a measurement under its function name.
MEASURES = measure = MeasureRegistry()
ORDERS: tuple[PruneOrder, ...] = ("ascending", "random", "descending")
HIST_MODELS = ("plain", "uchida", "manu", "auto")


def wm_stats(model: nn.Module, key: WatermarkKey) -> dict[str, Any]:
    """Bit accuracy, matches, detection, p-value and L2 (per-bit BCE) of ``key``'s watermark in ``model``."""
    r = verify(model, key)
    ex = method_of(key).extract(model, key)
    l2 = ex.details["l2_loss"] if key.method == "wang" else ex.details["embed_loss"] / len(key.message)
    return {"bit_accuracy": r.score, "matched_bits": r.matched_bits, "total_bits": r.total_bits,
            "detected": r.detected, "p_value": r.p_value, "log10_p_value": r.details.get("log10_p_value"), "l2": l2}


def detection(model: nn.Module, key: WatermarkKey) -> dict[str, Any]:
    """Bit accuracy, detection and log10 p-value of ``key``'s watermark in ``model``."""
    st = wm_stats(model, key)
    return {k: st[k] for k in ("bit_accuracy", "detected", "log10_p_value")}


def _main(runner: Runner, method: str) -> Trained:
    return runner.get(marked_run(method, runner.scale.bits))


def marked_row(plain: Trained, t: Trained) -> dict[str, Any]:
    """A marked run's fidelity gap to ``plain``, its watermark, and ``plain`` read with its key."""
    return {"test_accuracy": t.test_accuracy, "gap_pp": 100 * (plain.test_accuracy - t.test_accuracy),
            **wm_stats(t.model, t.owner), "plain_with_key": wm_stats(plain.model, t.owner), **selected_weights(t.owner)}


def finetuned_row(after: Trained, key: WatermarkKey) -> dict[str, Any]:
    """``key``'s watermark in a fine-tuned run."""
    a = wm_stats(after.model, key)
    return {"l2_after": a["l2"], "bit_accuracy_after": a["bit_accuracy"], "detected_after": a["detected"],
            "log10_p_value_after": a["log10_p_value"], "test_accuracy_after": after.test_accuracy,
            "train_size": after.train_size}


@measure
def table3(runner: Runner, exp: Experiment) -> dict[str, Any]:
    plain = runner.get("plain")
    rows: dict[str, Any] = {"plain": {"test_accuracy": plain.test_accuracy}}
    for method in METHODS:
        rows[method] = marked_row(plain, _main(runner, method))
    return {"bits": runner.scale.bits, "epochs": runner.scale.train.epochs, "rows": rows,
            "converge_epochs": runner.scale.converge_epochs}


@measure
def table4(runner: Runner, exp: Experiment) -> dict[str, Any]:
    sc = runner.scale
    out: dict[str, Any] = {}
    for method in METHODS:
        before = _main(runner, method)
        b = wm_stats(before.model, before.owner)
        out[method] = {}
        for domain in ("sd", "dd"):
            after = runner.get(attacked_run(method, sc.bits, domain))
            out[method][domain] = {
                "l2_before": b["l2"], "bit_accuracy_before": b["bit_accuracy"],
                "test_accuracy_before": before.test_accuracy, **finetuned_row(after, before.owner),
                "fashion_test_accuracy_after": evaluate(after.model, before.test)["accuracy"]}
    sd, dd = runner.data("sd"), runner.data("dd")
    return {**out, "epochs": sc.finetune_epochs, "lr": sc.train.lr, "optimizer": sc.train.optimizer,
            "sd_data": f"{len(sd[0])} held-out {sd[0].name} training images (the validation split)",
            "dd_data": f"{len(dd[0])} {dd[0].name} images (test: {len(dd[1])})", "dd_source": sc.dd_source}


def pruned(runner: Runner, t: Trained, rate: float, order: PruneOrder) -> nn.Module:
    layer = layer_of(runner, t.spec)
    return prune(t.model, PruneConfig(rate=rate, order=order, layer=layer, seed=runner.scale.key_seed))


def prune_curve(runner: Runner, t: Trained, order: PruneOrder) -> list[dict[str, Any]]:
    rows = []
    for a in runner.scale.prune_rates:
        m = pruned(runner, t, a, order)
        st = wm_stats(m, t.owner)
        rows.append({"rate": a, "test_accuracy": evaluate(m, t.test)["accuracy"], "l2": st["l2"],
                     "bit_accuracy": st["bit_accuracy"], "detected": st["detected"],
                     "log10_p_value": st["log10_p_value"]})
    return rows


def plain_pruning(runner: Runner, plain: Trained) -> dict[str, list[dict[str, Any]]]:
    """The test accuracy of an unmarked run pruned at every rate, in every order."""
    return {o: [{"rate": a, "test_accuracy": evaluate(pruned(runner, plain, a, o), plain.test)["accuracy"]}
                for a in runner.scale.prune_rates] for o in ORDERS}


@measure
def fig4(runner: Runner, exp: Experiment) -> dict[str, Any]:
    out: dict[str, Any] = {"rates": list(runner.scale.prune_rates), "layer": runner.scale.layer,
                           "bits": runner.scale.bits, "plain": plain_pruning(runner, runner.get("plain"))}
    for method in METHODS:
        out[method] = {o: prune_curve(runner, _main(runner, method), o) for o in ORDERS}
    return out


@measure
def table5(runner: Runner, exp: Experiment) -> dict[str, Any]:
    sc = runner.scale
    plain = runner.get("plain")
    cells: dict[str, dict[str, Any]] = {}
    for bits in sc.capacity_bits:
        cells[str(bits)] = {}
        for method in METHODS:
            t = runner.get(marked_run(method, bits))
            st = wm_stats(t.model, t.owner)
            cells[str(bits)][method] = {"test_accuracy": t.test_accuracy, "bit_accuracy": st["bit_accuracy"],
                                        "detected": st["detected"], "l2": st["l2"],
                                        "log10_p_value": st["log10_p_value"], "seconds": t.seconds,
                                        **selected_weights(t.owner)}
    return {"bits": list(sc.capacity_bits), "cells": cells, "plain_test_accuracy": plain.test_accuracy,
            "epochs": sc.train.epochs, "train_size": plain.train_size}


@measure
def table7(runner: Runner, exp: Experiment) -> dict[str, Any]:
    sc = runner.scale
    out: dict[str, Any] = {"layer": sc.layer, "bin_width": 0.1}
    for label, bits in (("main", sc.bits), ("largest", max(sc.capacity_bits))):
        models: dict[str, nn.Module | Tensor] = {"plain": runner.get("plain").model,
                  **{m: runner.get(marked_run(m, bits)).model for m in ("auto", "manu", "uchida")}}
        out[label] = {"bits": bits, "matrix": histogram_correlation_matrix(models, layer=sc.layer)}
    out["weights"] = {m: [round(float(v), 5) for v in layer_weights(
        runner.get("plain").model if m == "plain" else runner.get(marked_run(m, sc.bits)).model, sc.layer)]
        for m in HIST_MODELS}
    return out


@measure
def acceptance(runner: Runner, exp: Experiment) -> dict[str, Any]:
    sc = runner.scale
    plain = runner.get("plain")
    big = max(sc.capacity_bits)
    capacity: dict[str, Any] = {}
    for method in METHODS:
        t = runner.get(marked_run(method, big))
        capacity[method] = {"bits": big, "test_accuracy": t.test_accuracy, **detection(t.model, t.owner),
                            "gap_pp": 100 * (plain.test_accuracy - t.test_accuracy),
                            "last5_gap_pp": 100 * (last_mean(plain) - last_mean(t))}
        if method in sc.fidelity_methods and sc.fidelity_seeds > 1:
            capacity[method]["seeds"] = paired_gaps(runner, method, big)
    pruning: dict[str, Any] = {}
    for name in (marked_run("auto", sc.bits), marked_run("manu", sc.bits), marked_run("auto", big),
                 marked_run("manu", big)):
        t = runner.get(name)
        m = pruned(runner, t, 0.9, "ascending")
        pruning[name] = {**detection(m, t.owner), "test_accuracy": evaluate(m, t.test)["accuracy"]}
    finetuning: dict[str, Any] = {}
    for method in METHODS:
        key = _main(runner, method).owner
        for domain in ("sd", "dd"):
            t = runner.get(attacked_run(method, sc.bits, domain))
            finetuning[f"{method}-{domain}"] = {**detection(t.model, key), "epochs": sc.finetune_epochs}
    indep = independents(runner, sc.n_independent)
    desc = independents_desc(len(indep), sc.model, f"{indep[0].train_size} {sc.dataset} images",
                             f"{sc.small_train.epochs} epochs") + " + the plain baseline"
    models = [t.model for t in indep] + [plain.model]
    fps = {name: _fp(runner.get(name).owner, models, desc)
           for name in dict.fromkeys([marked_run("auto", big), marked_run("manu", big), marked_run("auto", sc.bits),
                                      marked_run("manu", sc.bits)])}
    a_auto, a_manu = capacity["auto"], capacity["manu"]
    p90 = pruning[marked_run("auto", sc.bits)]
    sd = finetuning["auto-sd"]
    n_fp = sum(f["n_detected"] for f in fps.values())
    criteria = {
        f"auto_{big}_bit_accuracy": criterion(a_auto["bit_accuracy"], "== 1", a_auto["bit_accuracy"] == 1.0),
        f"manu_{big}_bit_accuracy": criterion(a_manu["bit_accuracy"], "== 1", a_manu["bit_accuracy"] == 1.0),
        **{f"{m}_{big}_fidelity_gap_pp": _fidelity_criterion(capacity[m]) for m in ("auto", "manu")},
        "auto_pruned_90_ascending_bit_accuracy": criterion(p90["bit_accuracy"], "== 1", p90["bit_accuracy"] == 1.0),
        "auto_sd_finetuned_bit_accuracy": criterion(sd["bit_accuracy"], "== 1", sd["bit_accuracy"] == 1.0),
        "false_positives": criterion(n_fp, "== 0", n_fp == 0),
    }
    return {"plain_test_accuracy": plain.test_accuracy, "plain_seeds": plain_spread(runner),
            "capacity": capacity, "pruned_90_ascending": pruning,
            "finetuned": finetuning, "false_positives": fps, "criteria": criteria,
            "epochs": sc.train.epochs, "bits_main": sc.bits, "bits_largest": big,
            "all_bits": all_bits(sc), "all_passed": all(c["passed"] for c in criteria.values())}


def _fidelity_criterion(c: dict[str, Any]) -> dict[str, Any]:
    """|gap| <= 0.5 pp: on the mean of the paired seeds where the scale trains several, else seed 0."""
    s = c.get("seeds")
    if s is None:
        return {"value": c["gap_pp"], "threshold": "|gap| <= 0.5 (seed 0)", "passed": abs(c["gap_pp"]) <= 0.5}
    return {"value": s["mean_gap_pp"], "threshold": f"|mean gap of {len(s['gap_pp'])} paired seeds| <= 0.5",
            "passed": abs(s["mean_gap_pp"]) <= 0.5}


def paired_gaps(runner: Runner, method: str, bits: int) -> dict[str, Any]:
    """Fidelity gap per seed: unmarked seed i minus ``method`` at ``bits`` trained with seed i (same key),
    with the mean, its standard error and a 95% Student-t interval."""
    seeds = list(range(runner.scale.fidelity_seeds))
    plain = [runner.get(plain_run(i)) for i in seeds]
    marked = [runner.get(seeded_run(method, bits, i)) for i in seeds]
    gaps = [100 * (p.test_accuracy - m.test_accuracy) for p, m in zip(plain, marked, strict=True)]
    n = len(gaps)
    mean, sd = mean_sd(gaps)
    half = float(stats.t.ppf(0.975, n - 1)) * sd / n ** 0.5
    return {"seeds": seeds, "test_accuracy": [m.test_accuracy for m in marked],
            "bit_accuracy": [wm_stats(m.model, m.owner)["bit_accuracy"] for m in marked],
            "gap_pp": gaps, "mean_gap_pp": mean, "sd_pp": sd, "ci95_pp": [mean - half, mean + half],
            "last5_gap_pp": [100 * (last_mean(p) - last_mean(m)) for p, m in zip(plain, marked, strict=True)]}


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN for one value)."""
    mean = sum(values) / len(values)
    n = len(values)
    return mean, (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else float("nan")


def last_mean(t: Trained, k: int = 5) -> float:
    """Mean test accuracy of the last ``k`` epochs (the final epoch alone swings by tenths of a pp)."""
    accs = [h["test_accuracy"] for h in t.history if "test_accuracy" in h][-k:]
    return sum(accs) / len(accs) if accs else float("nan")


def plain_spread(runner: Runner) -> dict[str, Any]:
    """Test accuracies of the unmarked seeds: the noise floor of every fidelity gap."""
    accs = [runner.get(plain_run(i)).test_accuracy for i in range(runner.scale.plain_seeds)]
    mean, sd = mean_sd(accs)
    last = [last_mean(runner.get(plain_run(i))) for i in range(runner.scale.plain_seeds)]
    return {"seeds": list(range(len(accs))), "test_accuracy": accs, "mean": mean, "sd": sd,
            "range_pp": 100 * (max(accs) - min(accs)), "last5_mean": last}


def _fp(key: WatermarkKey, models: list[nn.Module], desc: str) -> dict[str, Any]:
    return false_positives(models, key, desc, key_bits=len(key.message))[0]


@measure
def conv(runner: Runner, exp: Experiment) -> dict[str, Any]:
    """The convolutional case (paper: VGG16 on CIFAR-10, Tables 3-4 and Fig. 4) on the scale's small CNN."""
    sc = runner.scale
    if sc.conv_model is None:
        return {"skipped": "this scale has no convolutional case (conv_model=None)"}
    plain = runner.get(plain_run(0, "conv"))
    out: dict[str, Any] = {"model": sc.conv_model, "layer": sc.conv_layer, "bits": sc.bits,
                           "epochs": sc.conv_train.epochs if sc.conv_train else None,
                           "optimizer": sc.conv_train.optimizer if sc.conv_train else None,
                           "lr": sc.conv_train.lr if sc.conv_train else None,
                           "converge_epochs": sc.conv_converge_epochs, "train_size": plain.train_size,
                           "host_M": int(plain.model.get_parameter(f"{sc.conv_layer}.weight").numel()),
                           "plain": {"test_accuracy": plain.test_accuracy, "pruning": plain_pruning(runner, plain)}}
    indep = [t.model for t in independents(runner, sc.conv_n_independent, CONV_PREFIX)]
    for method in METHODS:
        t = runner.get(marked_run(method, sc.bits, "conv"))
        row = {**marked_row(plain, t), "pruning": {o: prune_curve(runner, t, o) for o in ORDERS}}
        for domain in ("sd", "dd"):
            after = runner.get(attacked_run(method, sc.bits, domain, "conv"))
            row[domain] = {**finetuned_row(after, t.owner), "data": after.test.name}
        if indep:
            row["false_positives"] = _fp(t.owner, indep, independents_desc(
                len(indep), str(sc.conv_model), f"{sc.conv_small_epochs} epochs"))
        out[method] = row
    sd, dd = runner.data("conv-sd"), runner.data("conv-dd")
    out["finetune"] = {"epochs": sc.conv_finetune_epochs, "sd_data": f"{len(sd[0])} held-out {sd[0].name} images",
                       "dd_data": f"{len(dd[0])} {dd[0].name} images (test {len(dd[1])}), new 10-way head"}
    return out
