"""The anti-piracy section of an evaluation (Chen & Wu 2018; US patent 11,687,623 B2 covers the scheme).

Per transform kind of ``EvaluationConfig.access`` (``fixed``, ``learned``, ``generator``, §3.2) one *protected*
model is trained from the baseline's seed, data and schedule (:func:`netmark.access.protect`, Eq. 3 with the
paper's α = β = 1, γ = 0.01 unless ``access_options`` says otherwise). Three kinds of cell:

* ``protect``: the protected model's *authorized* accuracy (through the owner's transform G) and *unauthorized*
  accuracy (raw inputs: direct piracy, Table 3);
* ``piracy``: the paper's forged-transform attacks (§2.1, Table 3) by a thief holding the released model and the
  attacker's images: ``input-only`` (``piracy_trials`` bipolar perturbations of the Fixed scheme's σ, p: mean and
  best accuracy), ``one-pair`` (δ = G(x) − x from one wiretapped pair, §2.3) and, for a generator, ``pair@f``
  (a same-structure generator fitted to G's outputs on a share f of the attacker's images, ``piracy_trials``
  fits);
* ``access-attack``: every sweep of the evaluation that needs no watermark (not ``overwrite``, not the other
  domain) applied to the released model: authorized and unauthorized accuracy of the result. Fine-tuning and
  distillation use the attacker's raw images (the thief never sees G): how much unauthorized accuracy they buy
  back is the question.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
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
from netmark.attacks import ATTACKS
from netmark.bench.cache import fingerprint
from netmark.errors import ConfigError, NetmarkError
from netmark.evaluation.access_config import TRANSFORM_FIELDS, protect_config
from netmark.evaluation.cells import Context, Job
from netmark.evaluation.spec import EvaluationConfig, Sweep
from netmark.training import evaluate

ACCESS_JOB_KINDS = ("protect", "access-attack", "piracy")


def access_sweeps(config: EvaluationConfig) -> list[tuple[int, Sweep]]:
    """``(index, sweep)`` of the sweeps that apply to a protected model (not overwriting, not the other domain)."""
    return [(i, s) for i, s in enumerate(config.sweeps) if s.attack != "overwrite" and s.data != "other-domain"]


def piracy_attacks(config: EvaluationConfig, kind: str) -> list[str]:
    """The forged-transform attacks on transform ``kind``: ``input-only``, ``one-pair`` and ``pair@<fraction>``
    (generator only)."""
    names = ["input-only", "one-pair"]
    if kind == "generator":
        names += [f"pair@{f:g}" for f in config.pair_fractions]
    return names


def plan_protect(config: EvaluationConfig, cache_dir: str) -> list[Job]:
    return [Job("protect", config, cache_dir, kind) for kind in config.access]


def plan_access(config: EvaluationConfig, cache_dir: str, kinds: list[str]) -> list[Job]:
    """Phase-2 jobs of the protected models ``kinds`` (training attacks and pair fits first)."""
    slow: list[Job] = []
    fast: list[Job] = []
    for kind in kinds:
        for i, sweep in access_sweeps(config):
            cells = [Job("access-attack", config, cache_dir, kind, index=i, strength=s) for s in sweep.strengths]
            (slow if ATTACKS[sweep.attack].needs_data else fast).extend(cells)
        for name in piracy_attacks(config, kind):
            (slow if name.startswith("pair@") else fast).append(Job("piracy", config, cache_dir, kind, strength=name))
    return slow + fast


# ---------------------------------------------------------------------- the protected model


def _protected_fp(ctx: Context, kind: str) -> tuple[str, ProtectConfig]:
    cfg = ctx.cfg
    pcfg = protect_config(kind, cfg.access_options, cfg.key_seed)
    parts = ctx.run_parts(cfg.seed, None)
    return fingerprint({**parts, "access": pcfg.to_dict(), "protect_version": PROTECT_VERSION}), pcfg


def protected(ctx: Context, kind: str) -> tuple[Any, Any, dict[str, Any]]:
    """``(model F, transform G, record)`` of the protected model ``kind``, trained and cached first if absent."""
    name = f"protected-{kind}"
    fp, pcfg = _protected_fp(ctx, kind)
    hit = ctx.runs.load(name, fp)
    if hit is not None:
        model, key, record, _ = hit
        return model, transform_from_key(key), {**record, "cached": True}  # type: ignore[arg-type]
    model, t0 = ctx.fresh_model(ctx.cfg.seed), time.perf_counter()
    res = protect(model, ctx.data("train"), pcfg, replace(ctx.cfg.train, seed=ctx.cfg.seed, progress=False))
    seconds = time.perf_counter() - t0
    test = ctx.data("test")
    record = {"run": name, "seconds": seconds,
              "authorized": evaluate(res.model, test, transform=res.transform)["accuracy"],
              "unauthorized": evaluate(res.model, test)["accuracy"]}
    ctx.runs.save(name, fp, res.model, transform_key(res.transform), record)
    return res.model, res.transform, {**record, "cached": False}


def protect_job(ctx: Context, job: Job) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        _, _, rec = protected(ctx, str(job.method))
    except NetmarkError as e:
        return {"error": f"{type(e).__name__}: {e}", "cached": False, "seconds": time.perf_counter() - t0}
    return {"authorized": rec["authorized"], "unauthorized": rec["unauthorized"], "train_seconds": rec["seconds"],
            "cached": rec["cached"], "error": None, "seconds": time.perf_counter() - t0}


# ---------------------------------------------------------------------- cells


def access_attack_cell(ctx: Context, job: Job) -> dict[str, Any]:
    cfg, kind = ctx.cfg, str(job.method)
    sweep = cfg.sweeps[job.index]
    strength = job.strength if job.strength is not None else sweep.strengths[0]
    base = {"attack": sweep.attack, "label": sweep.label, "authorized": None, "unauthorized": None}
    try:
        acfg = sweep.attack_config(strength, train=cfg.train, seed=cfg.attack_seed)
        parts = {"cell": "access-attack", "run": _protected_fp(ctx, kind)[0], "attack": sweep.attack,
                 "attack_version": ATTACKS[sweep.attack].VERSION, "config": acfg.to_dict(),
                 "data": ctx.digest("attacker") if sweep.data == "attacker" else None, "test": ctx.digest("test")}
    except NetmarkError as e:
        return {**base, "error": f"{type(e).__name__}: {e}", "seconds": 0.0, "cached": False}

    def compute() -> dict[str, Any]:
        model, g, _ = protected(ctx, kind)
        attacked = ATTACKS[sweep.attack](acfg)(model, ctx.data("attacker") if sweep.data == "attacker" else None)
        test = ctx.data("test")
        return {"authorized": evaluate(attacked, test, transform=g)["accuracy"],
                "unauthorized": evaluate(attacked, test)["accuracy"]}

    return {**base, **ctx.cell(parts, compute)}


def _piracy_config(cfg: EvaluationConfig, name: str) -> dict[str, Any]:
    pcfg = protect_config("fixed", cfg.access_options, cfg.key_seed).transform
    if name == "input-only":
        return asdict(InputOnlyConfig(trials=cfg.piracy_trials, sigma=pcfg.sigma, p=pcfg.p, seed=cfg.attack_seed))
    if name.startswith("pair@"):
        return asdict(PairAttackConfig(fraction=float(name.removeprefix("pair@")), trials=cfg.piracy_trials,
                                seed=cfg.attack_seed))
    if name == "one-pair":
        return {"index": 0}
    raise ConfigError(f"unknown piracy attack {name!r}")


def piracy_cell(ctx: Context, job: Job) -> dict[str, Any]:
    cfg, kind, name = ctx.cfg, str(job.method), str(job.strength)
    base = {"attack": name, "trials": None, "mean": None, "best": None}
    try:
        options = _piracy_config(cfg, name)
        parts = {"cell": "piracy", "run": _protected_fp(ctx, kind)[0], "attack": name, "config": options,
                 "piracy_version": PIRACY_VERSION, "data": ctx.digest("attacker"), "test": ctx.digest("test")}
    except NetmarkError as e:
        return {**base, "error": f"{type(e).__name__}: {e}", "seconds": 0.0, "cached": False}

    def compute() -> dict[str, Any]:
        model, g, _ = protected(ctx, kind)
        attacker, test = ctx.data("attacker"), ctx.data("test")
        if name == "input-only":
            res = input_only_attack(model, test, InputOnlyConfig(**options))
        elif name == "one-pair":
            res = one_pair_attack(model, g, attacker, test, **options)
        else:
            res = pair_attack(model, g, attacker, test, PairAttackConfig(**options))
        extra = {k: v for k, v in res.details.items() if k in ("pairs", "max_abs_error")}
        if "test_mse" in res.details:
            extra["test_mse_mean"] = sum(res.details["test_mse"]) / len(res.details["test_mse"])
        return {"trials": len(res.accuracies), "mean": res.mean, "best": res.best, **extra}

    return {**base, **ctx.cell(parts, compute)}


MEASURES = {"protect": protect_job, "access-attack": access_attack_cell, "piracy": piracy_cell}


# ---------------------------------------------------------------------- results.json


def assemble_access(config: EvaluationConfig, done: list[dict[str, Any]], baseline: float | None) -> dict[str, Any]:
    """``results["access"]``: per transform its accuracies, piracy attacks and attack cells (sweep order)."""
    out: dict[str, Any] = {"options": protect_config("fixed", config.access_options, config.key_seed).to_dict(),
                           "piracy_trials": config.piracy_trials, "transforms": {}}
    out["options"]["transform"] = {k: out["options"]["transform"][k] for k in TRANSFORM_FIELDS}
    order = {(s.label, v): (i, k) for i, s in enumerate(config.sweeps) for k, v in enumerate(s.strengths)}
    for kind in config.access:
        rec = next((r for r in done if r["kind"] == "protect" and r["method"] == kind), None)
        if rec is None:
            continue
        auth = rec.get("authorized")
        cells = sorted((r for r in done if r["kind"] == "access-attack" and r["method"] == kind),
                       key=lambda r: order[(r["label"], r["strength"])])
        names = piracy_attacks(config, kind)
        piracy = sorted((r for r in done if r["kind"] == "piracy" and r["method"] == kind),
                        key=lambda r: names.index(r["attack"]))
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
