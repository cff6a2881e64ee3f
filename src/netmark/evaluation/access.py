"""The anti-piracy section of an evaluation (Chen & Wu 2018; US patent 11,687,623 B2 covers the scheme).

Per transform kind of ``EvaluationConfig.access`` (``fixed``, ``learned``, ``generator``, §3.2) one *protected*
model is trained from the baseline's seed, data and schedule (:func:`netmark.access.protect`, Eq. 3 with the
paper's α = β = 1, γ = 0.01 unless ``access_options`` says otherwise). Three kinds of cell:

* ``protect``: the protected model's *authorized* accuracy (through the owner's transform G) and *unauthorized*
  accuracy (raw inputs: direct piracy, Table 3);
* ``piracy``: the paper's forged-transform attacks (§2.1, Table 3) by a thief holding the released model and the
  attacker's images (:class:`~netmark.evaluation.spec.PiracyAttack`): ``input-only`` (``piracy_trials``
  bipolar perturbations of the Fixed scheme's σ, p: mean and best accuracy), ``one-pair`` (δ = G(x) − x from one
  wiretapped pair, §2.3) and, for a generator, ``pair@f`` (a same-structure generator fitted to G's outputs on a
  share f of the attacker's images, ``piracy_trials`` fits);
* ``access-attack``: every sweep of the evaluation that needs no watermark (not ``overwrite``, not the other
  domain) applied to the released model: authorized and unauthorized accuracy of the result. Fine-tuning and
  distillation use the attacker's raw images (the thief never sees G): how much unauthorized accuracy they buy
  back is the question.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from netmark.access import (
    InputOnlyConfig,
    PairAttackConfig,
    ProtectConfig,
    input_only_attack,
    one_pair_attack,
    pair_attack,
    protect,
    transform_from_key,
    transform_key,
)
from netmark.access.piracy import PIRACY_VERSION
from netmark.access.protect import PROTECT_VERSION
from netmark.bench.cache import fingerprint
from netmark.errors import ConfigError, NetmarkError
from netmark.evaluation.cells import Context, Job, failed
from netmark.evaluation.spec import TRANSFORM_FIELDS, EvaluationConfig, Sweep, piracy_attacks, protect_config
from netmark.training import evaluate


def access_sweeps(config: EvaluationConfig) -> list[tuple[int, Sweep]]:
    """``(index, sweep)`` of the sweeps that apply to a protected model (not overwriting, not the other domain)."""
    return [(i, s) for i, s in enumerate(config.sweeps) if s.attack != "overwrite" and s.data != "other-domain"]


# ---------------------------------------------------------------------- the protected model


def _protected_fp(ctx: Context, kind: str) -> tuple[str, ProtectConfig]:
    cfg = ctx.cfg
    pcfg = protect_config(kind, cfg.access_options, cfg.key_seed)
    parts = ctx.run_parts(cfg.seed, None)
    return fingerprint({**parts, "access": pcfg.to_dict(), "protect_version": PROTECT_VERSION}), pcfg


def protected(ctx: Context, kind: str) -> tuple[Any, Any, dict[str, Any]]:
    """``(model F, transform G, record)`` of the protected model ``kind``, trained and cached first if absent."""
    fp, pcfg = _protected_fp(ctx, kind)

    def make() -> tuple[Any, Any, dict[str, Any]]:
        model, t0 = ctx.fresh_model(ctx.cfg.seed), time.perf_counter()
        res = protect(model, ctx.data("train"), pcfg, replace(ctx.cfg.train, seed=ctx.cfg.seed, progress=False))
        seconds, test = time.perf_counter() - t0, ctx.data("test")
        return res.model, transform_key(res.transform), {
            "seconds": seconds, "authorized": evaluate(res.model, test, transform=res.transform)["accuracy"],
            "unauthorized": evaluate(res.model, test)["accuracy"]}

    model, key, record = ctx.cached(f"protected-{kind}", fp, make)
    return model, transform_from_key(key), record  # type: ignore[arg-type]


# ---------------------------------------------------------------------- cells


def access_attack_cell(ctx: Context, job: Job) -> dict[str, Any]:
    kind, sweep = str(job.method), ctx.cfg.sweeps[job.index]
    base = {"attack": sweep.attack, "label": sweep.label, "authorized": None, "unauthorized": None}
    try:
        _, acfg, parts = ctx.sweep_point(job)
        parts.update({"cell": "access-attack", "run": _protected_fp(ctx, kind)[0]})
    except NetmarkError as e:
        return {**base, **failed(e)}

    def compute() -> dict[str, Any]:
        model, g, _ = protected(ctx, kind)
        attacked, test = ctx.attacked(sweep, acfg, model)
        return {"authorized": evaluate(attacked, test, transform=g)["accuracy"],
                "unauthorized": evaluate(attacked, test)["accuracy"]}

    return {**base, **ctx.cell(parts, compute)}


def piracy_cell(ctx: Context, job: Job) -> dict[str, Any]:
    cfg, kind, attack = ctx.cfg, str(job.method), job.piracy
    if attack is None:
        raise ConfigError("a piracy job names its attack (Job.piracy)")
    base = {"attack": attack.name, "trials": None, "mean": None, "best": None}
    try:
        options = attack.options(cfg)
        parts = {"cell": "piracy", "run": _protected_fp(ctx, kind)[0], "attack": attack.name, "config": options,
                 "piracy_version": PIRACY_VERSION, "data": ctx.digest("attacker"), "test": ctx.digest("test")}
    except NetmarkError as e:
        return {**base, **failed(e)}

    def compute() -> dict[str, Any]:
        model, g, _ = protected(ctx, kind)
        attacker, test = ctx.data("attacker"), ctx.data("test")
        if attack.kind == "input-only":
            res = input_only_attack(model, test, InputOnlyConfig(**options))
        elif attack.kind == "one-pair":
            res = one_pair_attack(model, g, attacker, test, **options)
        else:
            res = pair_attack(model, g, attacker, test, PairAttackConfig(**options))
        extra = {k: v for k, v in res.details.items() if k in ("pairs", "max_abs_error")}
        if "test_mse" in res.details:
            extra["test_mse_mean"] = sum(res.details["test_mse"]) / len(res.details["test_mse"])
        return {"trials": len(res.accuracies), "mean": res.mean, "best": res.best, **extra}

    return {**base, **ctx.cell(parts, compute)}


# ---------------------------------------------------------------------- results.json


def assemble_access(config: EvaluationConfig, by_kind: dict[tuple[str, str | None], list[dict[str, Any]]],
                    baseline: float | None) -> dict[str, Any]:
    """``results["access"]`` from the jobs' results by (kind, transform): per transform its accuracies, piracy
    attacks and attack cells (sweep order)."""
    out: dict[str, Any] = {"options": protect_config("fixed", config.access_options, config.key_seed).to_dict(),
                           "piracy_trials": config.piracy_trials, "transforms": {}}
    out["options"]["transform"] = {k: out["options"]["transform"][k] for k in TRANSFORM_FIELDS}
    order = {(s.label, v): (i, k) for i, s in enumerate(config.sweeps) for k, v in enumerate(s.strengths)}
    for kind in config.access:
        if ("protect", kind) not in by_kind:
            continue
        rec = by_kind[("protect", kind)][0]
        auth = rec.get("authorized")
        cells = sorted(by_kind.get(("access-attack", kind), []), key=lambda r: order[(r["label"], r["strength"])])
        names = [a.name for a in piracy_attacks(config, kind)]
        piracy = sorted(by_kind.get(("piracy", kind), []), key=lambda r: names.index(r["attack"]))
        out["transforms"][kind] = {
            "authorized": auth, "unauthorized": rec.get("unauthorized"), "error": rec.get("error"),
            "fidelity_pp": None if auth is None or baseline is None else 100 * (auth - baseline),
            "train_seconds": rec.get("train_seconds"),
            "piracy": [{k: r.get(k) for k in ("attack", "trials", "mean", "best", "pairs", "max_abs_error",
                                              "test_mse_mean", "error")} for r in piracy],
            "cells": [{k: r.get(k) for k in ("attack", "label", "strength", "authorized", "unauthorized", "seconds",
                                             "error")} for r in cells],
        }
    return out
