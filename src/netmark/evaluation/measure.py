"""What each kind of cell of a watermark method measures (dispatched by :data:`netmark.evaluation.jobs.JOBS`).

* ``attack``: the marked model attacked at one strength of one sweep: task accuracy and the key's verification;
* ``capacity``: one payload size embedded afresh (same seeds and schedule): is it extracted perfectly?
* ``overhead``: median time of a training step with the method's hook over a plain one, interleaved;
* ``false-positives``: the key verified against every independently trained model.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from netmark.errors import ConfigError, NetmarkError
from netmark.evaluation.cells import Context, Job, failed, independent_run, marked_run, result_fields, verified
from netmark.methods import WatermarkMethod, get_method
from netmark.training import TrainHook, evaluate, iter_batches, make_optimizer, train_step


def attacker_options(options: dict[str, Any]) -> dict[str, Any]:
    """The overwriting attacker's options of the owner's method: the same, but never re-initialising the stolen
    model first (Tartaglione's ``reinit`` would throw away what was stolen)."""
    return {**options, "reinit": False} if "reinit" in options else dict(options)


def attack_cell(ctx: Context, job: Job) -> dict[str, Any]:
    cfg, method = ctx.cfg, str(job.method)
    sweep = cfg.sweeps[job.index]
    base = {"attack": sweep.attack, "label": sweep.label,
            "task": "other-domain" if sweep.data == "other-domain" else "same",
            "test_accuracy": None, "p_value": None, "score": None, "detected": False}
    try:  # an attack config this method rejects, missing other-domain data: this cell's error, not the run's
        _, acfg, parts = ctx.sweep_point(job, method=method, method_options=attacker_options(cfg.methods[method]))
        parts.update({"cell": "attack", "run": ctx.run_fp(marked_run(method)), "alpha": cfg.alpha})
        base.update(ctx.budget(sweep, acfg))
    except NetmarkError as e:
        return {**base, **failed(e)}

    def compute() -> dict[str, Any]:
        model, key, _ = ctx.trained(marked_run(method))
        attacked, test = ctx.attacked(sweep, acfg, model)
        return {"test_accuracy": evaluate(attacked, test)["accuracy"],
                **result_fields(verified(attacked, key, cfg.alpha))}

    return {**base, **ctx.cell(parts, compute)}


# ---------------------------------------------------------------------- capacity


def capacity_param(name: str, options: dict[str, Any]) -> tuple[str, str] | None:
    """``(config field, unit)`` that sets ``name``'s payload size, or None when it has none."""
    cls = get_method(name)
    config = cls.config_cls.from_dict(options)
    kind = cls(config).traits().payload
    param, unit = CAPACITY_PARAMS[kind]
    return (param, unit) if param in {f.name for f in fields(config)} else None


#: payload kind -> (the config field that sets the payload size, the capacity unit)
CAPACITY_PARAMS: dict[str, tuple[str, str]] = {"bits": ("bits", "bits"), "values": ("size", "values"),
                                               "labels": ("size", "triggers")}


def payload_check(method: WatermarkMethod, model: nn.Module, key: Any) -> tuple[bool, str]:
    """Whether ``model`` gives back ``key``'s whole payload, and what was read."""
    ex = method.extract(model, key)
    kind = method.traits().payload
    if kind == "values":
        exact = float(ex.details["exact_8bit"])
        return exact == 1.0, f"{100 * exact:.1f}% of the values exact at 8 bits"
    if kind == "labels":
        acc = float(ex.details["trigger_accuracy"])
        return acc == 1.0, f"{100 * acc:.1f}% of the triggers answered with their label"
    errors = int((ex.bits.to(torch.int64) != key.bits.to(torch.int64)).sum())
    return errors == 0, f"{errors} bit errors"


def capacity_cell(ctx: Context, job: Job) -> dict[str, Any]:
    name, size = str(job.method), job.strength
    found = capacity_param(name, ctx.cfg.methods[name])
    if found is None or not isinstance(size, int):
        raise ConfigError(f"{name} has no payload size to probe")
    param, unit = found
    method = ctx.method(name, **{param: size})
    parts = ctx.run_parts(ctx.cfg.seed, method)

    def compute() -> dict[str, Any]:
        kw: dict[str, Any] = {"null_models": []} if unit == "triggers" else {}  # no calibration: extraction needs none
        model, key, _ = ctx.embed(ctx.cfg.seed, method, **kw)
        perfect, read = payload_check(method, model, key)
        return {"perfect": perfect, "read": read}

    return {"size": size, "unit": unit, "perfect": False, **ctx.cell({"cell": "capacity", **parts}, compute)}


# ---------------------------------------------------------------------- overhead


def _batches(data: Dataset, batch_size: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    while True:
        yield from iter_batches(data, batch_size, shuffle=True, gen=gen)


def timed_step(model: nn.Module, opt: torch.optim.Optimizer, hooks: tuple[TrainHook, ...], x: torch.Tensor,
               y: torch.Tensor) -> float:
    """Seconds of one training step as :func:`netmark.training.train` takes it (hooks included)."""
    t0 = time.perf_counter()
    train_step(model, opt, x, y, hooks)
    return time.perf_counter() - t0


def overhead_cell(ctx: Context, job: Job) -> dict[str, Any]:
    cfg, name = ctx.cfg, str(job.method)
    parts = {"cell": "overhead", "run": ctx.run_fp(marked_run(name)), "rounds": cfg.overhead_rounds,
             "steps": cfg.overhead_steps}

    def compute() -> dict[str, Any]:
        _, key, _ = ctx.trained(marked_run(name))
        if key is None:
            raise ConfigError(f"the marked {name} run has no key")
        method = ctx.method(name)
        plain, marked = ctx.fresh_model(cfg.seed).train(), ctx.fresh_model(cfg.seed).train()
        hook = method.hook(key)
        hook.on_train_start(marked)
        sides: list[tuple[nn.Module, torch.optim.Optimizer, tuple[TrainHook, ...], list[float]]] = [
            (m, make_optimizer(list(m.parameters()), cfg.train), hooks, [])
            for m, hooks in ((plain, ()), (marked, (hook,)))]
        batches = _batches(ctx.data("train"), cfg.train.batch_size, cfg.seed)
        try:
            for r in range(cfg.overhead_rounds + 1):  # round 0 warms both up and is not counted
                for model, opt, hooks, times in sides if r % 2 else sides[::-1]:
                    for _ in range(cfg.overhead_steps):
                        t = timed_step(model, opt, hooks, *next(batches))
                        if r:
                            times.append(t)
        finally:
            hook.on_train_end(marked)
        plain_s, marked_s = statistics.median(sides[0][3]), statistics.median(sides[1][3])
        return {"ratio": marked_s / plain_s, "plain_step_seconds": plain_s, "marked_step_seconds": marked_s}

    out = ctx.cell(parts, compute)
    return {"ratio": None, **out}


# ---------------------------------------------------------------------- false positives


def false_positive_cell(ctx: Context, job: Job) -> dict[str, Any]:
    cfg, name = ctx.cfg, str(job.method)
    others = [independent_run(i) for i in range(cfg.n_independent)]
    parts = {"cell": "false-positives", "run": ctx.run_fp(marked_run(name)),
             "independent": [ctx.run_fp(o) for o in others], "alpha": cfg.alpha}

    def compute() -> dict[str, Any]:
        _, key, _ = ctx.trained(marked_run(name))
        results = [verified(ctx.trained(o)[0], key, cfg.alpha) for o in others]
        p = [r.p_value for r in results]
        return {"n": len(results), "detected": sum(r.detected for r in results), "min_p_value": min(p),
                "p_values": p, "max_score": max(r.score for r in results)}

    out = ctx.cell(parts, compute)
    return {"n": 0, "detected": 0, "min_p_value": None, **out}

