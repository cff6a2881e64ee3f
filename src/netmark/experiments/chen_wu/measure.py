"""Measurements of each experiment (``MEASURES[name](runner, experiment) -> dict``), on cached runs."""

from __future__ import annotations

import math
from typing import Any

import torch

from netmark._util import generator
from netmark.access import KINDS, AntiPiracyTransform
from netmark.access.piracy import (
    InputOnlyConfig,
    PairAttackConfig,
    direct_piracy,
    input_only_attack,
    one_pair_attack,
    pair_attack,
)
from netmark.bench.report import criterion
from netmark.bench.runner import Runner, Trained
from netmark.bench.study import MeasureRegistry
from netmark.data import ArrayDataset
from netmark.training import evaluate

from .runs import authorized_accuracy, transform_of
from .spec import Experiment, run_name

#: ``@measure`` registers a measurement under its function name.
MEASURES = measure = MeasureRegistry()
FIG2_IMAGES = 4


def _transform(t: Trained) -> AntiPiracyTransform:
    g = transform_of(t)
    if g is None:
        raise ValueError(f"run {t.spec.name} has no transform")
    return g


def _pct(acc: float) -> float:
    return 100.0 * acc


@measure
def table2(runner: Runner, exp: Experiment) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for arch, epochs in runner.scale.archs:
        base = runner.get(run_name(arch, None))
        row: dict[str, Any] = {"epochs": epochs, "baseline": _pct(base.test_accuracy), "baseline_seconds": base.seconds}
        for kind in KINDS:
            t = runner.get(run_name(arch, kind))
            auth = _pct(authorized_accuracy(t) or math.nan)
            row[kind] = {"authorized": auth, "unauthorized": _pct(t.test_accuracy), "seconds": t.seconds,
                         "gap_pp": auth - row["baseline"]}
        rows[arch] = row
    return {"rows": rows, "test_size": len(runner.data("main")[1]), "train_size": len(runner.data("main")[0])}


@measure
def fig2(runner: Runner, exp: Experiment) -> dict[str, Any]:
    arch = runner.scale.main_arch
    test = runner.data("main")[1]
    x = test.x[:FIG2_IMAGES]

    def images(t: torch.Tensor) -> list[Any]:  # grey images without their channel axis
        return t.squeeze(1).tolist() if x.shape[1] == 1 else t.tolist()

    out: dict[str, Any] = {"arch": arch, "raw": images(x), "labels": test.y[:FIG2_IMAGES].tolist(), "transforms": {}}
    for kind in KINDS:
        g = _transform(runner.get(run_name(arch, kind)))
        with torch.no_grad():
            xp = g.eval()(x.to(runner.device)).cpu()
        d = xp - x
        out["transforms"][kind] = {
            "processed": images(xp), "perturbation": images(d), "mean_abs": float(d.abs().mean()),
            "max_abs": float(d.abs().max()), "l2_per_input": float(d.flatten(1).norm(dim=1).mean())}
    return out


def attack_subset(runner: Runner) -> ArrayDataset:
    """The fixed random subset of the test set every attack is scored on (the scale's ``attack_test_size``)."""
    test = runner.data("main")[1]
    n = runner.scale.attack_test_size
    if n is None or n >= len(test):
        return test
    idx = torch.randperm(len(test), generator=generator(runner.scale.split_seed))[:n]
    return test.subset(idx)


@measure
def table3(runner: Runner, exp: Experiment) -> dict[str, Any]:
    return attack_results(runner)


def attack_results(runner: Runner) -> dict[str, Any]:
    """Every attack of Table 3 on every protected model, run once per runner (shared by ``acceptance``)."""
    if "attacks" not in runner.memo:
        runner.memo["attacks"] = _attacks(runner)
    return runner.memo["attacks"]


def _attacks(runner: Runner) -> dict[str, Any]:
    sc = runner.scale
    sub = attack_subset(runner)
    train_data = runner.data("main")[0]
    out: dict[str, Any] = {"test_size": len(sub), "rows": {}}
    for arch, _ in sc.archs:
        rows: dict[str, Any] = {}
        for kind in KINDS:
            t = runner.get(run_name(arch, kind))
            g = _transform(t)
            runner.say(f"  attacks on {t.spec.name}")
            row: dict[str, Any] = {
                "authorized": _pct(evaluate(t.model, sub, transform=g)["accuracy"]),
                "direct": _pct(direct_piracy(t.model, sub).mean),
                "input_only": _summ(input_only_attack(t.model, sub, InputOnlyConfig(
                    trials=sc.input_only_trials, sigma=sc.sigma, p=sc.p, seed=sc.attack_seed)).to_dict()),
            }
            one = one_pair_attack(t.model, g, train_data, sub)
            row["one_pair"] = {"accuracy": _pct(one.mean), "max_abs_error": one.details["max_abs_error"]}
            if kind == "generator":
                row["pair"] = {}
                for f in sc.pair_fractions:
                    res = pair_attack(t.model, g, train_data, sub, PairAttackConfig(
                        fraction=f, trials=sc.pair_trials, epochs=sc.pair_epochs, seed=sc.attack_seed)).to_dict()
                    row["pair"][f"{f:g}"] = {**_summ(res), "pairs": res["pairs"],
                                             "test_mse_mean": sum(res["test_mse"]) / len(res["test_mse"])}
                    runner.say(f"    pair attack {f:.0%}: mean {row['pair'][f'{f:g}']['mean']:.2f}%, "
                               f"best {row['pair'][f'{f:g}']['best']:.2f}%")
            rows[kind] = row
        out["rows"][arch] = rows
    out["pair_config"] = {"optimizer": "adam", "lr": PairAttackConfig().lr, "batch_size": PairAttackConfig().batch_size,
                          "epochs": sc.pair_epochs, "trials": sc.pair_trials}
    return out


def _summ(res: dict[str, Any]) -> dict[str, Any]:
    accs = [_pct(a) for a in res["accuracies"]]
    return {"mean": sum(accs) / len(accs), "best": max(accs), "worst": min(accs), "trials": len(accs)}


@measure
def acceptance(runner: Runner, exp: Experiment) -> dict[str, Any]:
    sc = runner.scale
    t2 = table2(runner, exp)["rows"]
    t3 = attack_results(runner)
    criteria: dict[str, dict[str, Any]] = {}
    main = t2[sc.main_arch]
    for kind in KINDS:
        gap = main[kind]["authorized"] - main["baseline"]
        criteria[f"{sc.main_arch}_{kind}_authorized_minus_baseline_pp"] = criterion(gap, "|gap| <= 1", abs(gap) <= 1.0)
        raw = main[kind]["unauthorized"]
        criteria[f"{sc.main_arch}_{kind}_unauthorized_pct"] = criterion(raw, "<= 5", raw <= 5.0)
    for arch, rows in t3["rows"].items():
        gen = rows["generator"]
        io = gen["input_only"]["mean"]
        criteria[f"{arch}_input_only_vs_generator_mean_pct"] = criterion(io, "<= 10", io <= 10.0)
        full = gen["pair"].get("1")
        if full is not None:
            gap = gen["authorized"] - full["best"]
            criteria[f"{arch}_pair_100_best_below_authorized_pp"] = criterion(gap, ">= 5", gap >= 5.0)
    return {"criteria": criteria, "all_passed": all(c["passed"] for c in criteria.values())}
