"""Measurements of each experiment (``MEASURES[name](runner, experiment) -> dict``), on cached runs."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from netmark._util import seeded
from netmark.attacks import FixedPointConfig, RoundTripConfig, fixed_point_model, roundtrip
from netmark.attacks.roundtrip import DTYPES
from netmark.bench.measure import false_positives, independents, independents_desc, series
from netmark.bench.report import criterion
from netmark.bench.runner import Runner, Trained
from netmark.bench.study import MeasureRegistry
from netmark.keys import WatermarkKey
from netmark.methods import verify
from netmark.methods.tartaglione import Tartaglione, initialise, pearson, watermark_masks
from netmark.training import TrainHook, evaluate, make_optimizer, train_step

from .runs import method_config, payload_of
from .spec import (
    FULL_RUN,
    REFERENCE_R,
    Experiment,
    finetuned_run,
    lr_sweep_runs,
    marked_run,
    marked_runs,
)

#: ``@measure`` registers a measurement under its function name.
MEASURES = measure = MeasureRegistry()
REF = marked_run(REFERENCE_R)
HIST_BINS = 60


def wm_stats(model: nn.Module, key: WatermarkKey) -> dict[str, Any]:
    """Pearson ρ, detection, p-value, mean absolute error and exact 8-bit share of ``key``'s payload."""
    r = verify(model, key)
    return {"pearson": r.score, "detected": r.detected, "log10_p_value": r.details.get("log10_p_value"),
            "mean_abs_error": r.details.get("mean_abs_error"), "exact_8bit": r.details.get("exact_8bit")}


def _error(model: nn.Module, t: Trained) -> float:
    return 100.0 * (1.0 - evaluate(model, t.test)["accuracy"])


@measure
def table1(runner: Runner, exp: Experiment) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for name in exp.resolve_runs(runner.scale):
        t = runner.get(name)
        row: dict[str, Any] = {"test_accuracy": t.test_accuracy, "test_error": 100.0 * (1.0 - t.test_accuracy),
                               "seconds": t.seconds, "epochs": len(t.history), "replicas": t.spec.replicas,
                               "replica_batch": t.spec.replica_batch if t.key else None}
        if t.key is not None:
            row.update(wm_stats(t.model, t.key), payload_size=len(t.key.tensors["payload"]),
                       final_gamma=t.history[-1].get("tartaglione_gamma") if t.history else None)
        rows[name] = row
    return {"epochs": runner.scale.train.epochs, "train_size": runner.get("plain").train_size, "rows": rows}


@measure
def fig4a(runner: Runner, exp: Experiment) -> dict[str, Any]:
    curves: dict[str, Any] = {}
    for name in marked_runs(runner.scale):
        parent, ft = runner.get(name), runner.get(finetuned_run(name))
        key, hist = parent.owner, ft.history
        curves[name] = {"replicas": parent.spec.replicas, "replica_batch": parent.spec.replica_batch,
                        "epochs": list(range(len(hist) + 1)),
                        "pearson": [verify(parent.model, key).score, *series(hist, "pearson")],
                        "test_accuracy": [parent.test_accuracy, *series(hist, "test_accuracy")],
                        "after": {**wm_stats(ft.model, key), "test_accuracy": ft.test_accuracy},
                        "drift": layer_drift(parent.model, ft.model, key)}
    cfg = runner.scale.train
    sweep: dict[str, Any] = {}  # attacker learning rate -> parent -> Pearson per epoch and after
    for lr in runner.scale.finetune_lrs:
        for name in lr_sweep_runs(runner.scale):
            parent, ft = runner.get(name), runner.get(finetuned_run(name, lr))
            sweep.setdefault(f"{lr:g}", {})[name] = {
                "pearson": [curves[name]["pearson"][0], *series(ft.history, "pearson")],
                "after": {**wm_stats(ft.model, parent.owner), "test_accuracy": ft.test_accuracy}}
    return {"epochs": cfg.epochs, "optimizer": cfg.optimizer, "lr": cfg.lr, "weight_decay": cfg.weight_decay,
            "train_size": runner.get("plain").train_size, "series": curves, "lr_sweep": sweep}


def layer_drift(before: nn.Module, after: nn.Module, key: WatermarkKey) -> dict[str, dict[str, float]]:
    """Per parameter tensor: how far the attack moved the watermarked entries (RMS), against their
    spread before it (std of the locked values); Pearson stays near 1 only while drift << spread."""
    masks = watermark_masks(before, key)
    b, a = dict(before.named_parameters()), dict(after.named_parameters())
    out: dict[str, dict[str, float]] = {}
    for name, mask in masks.items():
        m = mask.bool()
        if int(m.sum()) < 2:
            continue
        v0, v1 = b[name].detach()[m], a[name].detach()[m]
        out[name] = {"n": int(m.sum()), "drift_rms": float((v1 - v0).pow(2).mean().sqrt()),
                     "spread": float(v0.std()), "pearson": pearson(v0, v1)}
    return out


def _train_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(F.cross_entropy(model(x), y))


def landscape(model: nn.Module, key: WatermarkKey, x: torch.Tensor, y: torch.Tensor, steps: list[float],
              directions: int, noise: float, seed: int) -> dict[str, Any]:
    """Fig. 2 as numbers: the mean rise of the loss on ``(x, y)`` when Gaussian noise of std ``t·noise`` (``t`` in
    ``steps``) is added to the watermarked entries only, or to as many free entries drawn from the same tensors, ±
    each of ``directions`` random directions; and the mean |∂L/∂w| of both sets at the model's point. The model
    is left exactly as it came (its entries are restored after each perturbation)."""
    gen = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    sets: dict[str, dict[str, torch.Tensor]] = {"watermarked": {}, "free": {}}
    for name, mask in watermark_masks(model, key).items():
        flat = mask.reshape(-1).cpu()
        marked, free = (flat != 0).nonzero().squeeze(1), (flat == 0).nonzero().squeeze(1)
        if len(marked) == 0:
            continue
        sets["watermarked"][name] = marked
        sets["free"][name] = free[torch.randperm(len(free), generator=gen)[: len(marked)]]
    was_training = model.training
    model.eval()
    try:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        # backward() just filled every .grad read here
        grads = {kind: float(torch.cat([params[n].grad.reshape(-1).cpu()[i]  # type: ignore[union-attr]
                                        for n, i in idx.items()]).abs().mean())
                 for kind, idx in sets.items()}
        model.zero_grad(set_to_none=True)
        base = _train_loss(model, x, y)
        rises: dict[str, list[float]] = {kind: [] for kind in sets}
        for t in steps:
            for kind, idx in sets.items():
                total = []
                for _ in range(directions):
                    delta = {n: torch.randn(len(i), generator=gen) * (t * noise) for n, i in idx.items()}
                    for sign in (1.0, -1.0):
                        saved = {n: params[n].detach().reshape(-1)[i.to(params[n].device)].clone()
                                 for n, i in idx.items()}
                        with torch.no_grad():
                            for n, i in idx.items():
                                flat = params[n].view(-1)
                                flat[i.to(flat.device)] += sign * delta[n].to(flat.device, flat.dtype)
                        total.append(_train_loss(model, x, y) - base)
                        with torch.no_grad():
                            for n, i in idx.items():
                                params[n].view(-1)[i.to(params[n].device)] = saved[n]
                rises[kind].append(statistics.fmean(total))
    finally:
        model.train(was_training)
    return {"base_loss": base, "steps": list(steps), "rise": rises, "grad_abs_mean": grads,
            "n": sum(len(i) for i in sets["watermarked"].values())}


@measure
def fig2(runner: Runner, exp: Experiment) -> dict[str, Any]:
    """The loss landscape along the watermarked and the free dimensions of every watermarked run (Fig. 2); the
    plain run (no watermark) at the reference run's key positions is the control."""
    sc = runner.scale
    tr = runner.data("main")[0]
    n = min(sc.landscape_images, len(tr))
    idx = torch.randperm(len(tr), generator=torch.Generator().manual_seed(sc.landscape_seed))[:n]
    x, y = tr.x[idx], tr.y[idx]
    runs = {}
    for name in exp.resolve_runs(sc):
        t = runner.get(name)
        dev = next(t.model.parameters()).device
        key = t.key if t.key is not None else runner.get(REF).owner  # plain: the same positions, never locked
        runs[name] = landscape(t.model, key, x.to(dev), y.to(dev), list(sc.landscape_steps),
                               sc.landscape_directions, sc.noise, sc.landscape_seed)
    return {"images": n, "noise": sc.noise, "directions": sc.landscape_directions, "plain_positions_of": REF,
            "runs": runs}


def _compressed(model: nn.Module, t: Trained) -> dict[str, Any]:
    return {"test_error": _error(model, t), **wm_stats(model, t.owner)}


@measure
def fig4b(runner: Runner, exp: Experiment) -> dict[str, Any]:
    t = runner.get(REF)
    rows = [{"bits": b, **_compressed(fixed_point_model(t.model, FixedPointConfig(bits=b, rounding="mask")), t)}
            for b in runner.scale.fixed_point_bits]
    trips = {d: _compressed(roundtrip(t.model, RoundTripConfig(dtype=d)), t) for d in DTYPES}
    return {"run": REF, "rounding": "mask", "float32": _compressed(t.model, t), "fixed_point": rows,
            "roundtrip": trips}


def _flat(model: nn.Module, names: list[str]) -> torch.Tensor:
    params = dict(model.named_parameters())
    return torch.cat([params[n].detach().reshape(-1).float().cpu() for n in names])


@measure
def fig3(runner: Runner, exp: Experiment) -> dict[str, Any]:
    """The layer's parameters at init (Eq. 2), after writing the payload (Eq. 4) and after training."""
    from scipy.stats import ks_2samp

    sc, t = runner.scale, runner.get(REF)
    key = t.owner
    tr = runner.data("main")[0]
    init = runner.fresh_model(tr, t.spec.model_seed)
    if sc.reinit:
        initialise(init, key)
    written = runner.fresh_model(tr, t.spec.model_seed)
    Tartaglione.from_key(key).hook(key).on_train_start(written)
    # the init drawn here must be the one the hook drew: equal free weights everywhere
    masks, after = watermark_masks(written, key), dict(written.named_parameters())
    same = all(bool(torch.equal(p.detach()[masks[n] == 0], after[n].detach()[masks[n] == 0])) if n in masks
               else bool(torch.equal(p.detach(), after[n].detach())) for n, p in init.named_parameters())
    names = [n for n, _ in written.get_submodule(sc.layer).named_parameters(prefix=sc.layer)]
    mask = torch.cat([(masks[n] if n in masks else torch.zeros_like(after[n])).reshape(-1).cpu() != 0
                      for n in names])
    stages: dict[str, Any] = {}
    for stage, model in (("init", init), ("written", written), ("trained", t.model)):
        v = _flat(model, names)
        wm, free = v[mask], v[~mask]
        lo, hi = float(v.min()), float(v.max())
        edges = torch.linspace(lo, hi if hi > lo else lo + 1e-6, HIST_BINS + 1)
        ks = ks_2samp(wm.numpy(), free.numpy())
        stages[stage] = {"edges": [round(float(e), 7) for e in edges],
                         "counts_all": torch.histc(v, HIST_BINS, float(edges[0]), float(edges[-1])).int().tolist(),
                         "counts_watermarked": torch.histc(wm, HIST_BINS, float(edges[0]),
                                                           float(edges[-1])).int().tolist(),
                         "mean": float(v.mean()), "std": float(v.std()), "watermarked_mean": float(wm.mean()),
                         "watermarked_std": float(wm.std()), "free_std": float(free.std()),
                         "ks_statistic": float(ks.statistic), "ks_p_value": float(ks.pvalue)}
    return {"run": REF, "layer": sc.layer, "parameters": int(mask.numel()), "watermarked": int(mask.sum()),
            "watermarked_fraction": float(mask.float().mean()), "reinit": sc.reinit, "init_matches_hook": same,
            "stages": stages}


# ----------------------------------------------------------------------------- step cost


def _step(case: tuple[nn.Module, list[TrainHook], torch.optim.Optimizer], x: torch.Tensor, y: torch.Tensor) -> None:
    model, hooks, opt = case
    train_step(model, opt, x, y, hooks)


def step_costs(runner: Runner) -> dict[str, Any]:
    """Median per-step time of plain training and of every R > 0 with full and split replicas, measured in
    this process on one torch thread with interleaved rounds (the order rotates each round) on one fixed
    batch; once per runner."""
    if "costs" not in runner.memo:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            runner.memo["costs"] = _step_costs(runner)
        finally:
            torch.set_num_threads(threads)
    return runner.memo["costs"]


def _step_costs(runner: Runner) -> dict[str, Any]:
    sc = runner.scale
    tr = runner.data("main")[0]
    bs = sc.train.batch_size
    x, y = tr.x[:bs], tr.y[:bs]
    payload = payload_of(sc.payload_shape)
    cases: dict[str, tuple[nn.Module, list[TrainHook], torch.optim.Optimizer]] = {}
    for r, batch in [(None, None), *((r, b) for r in sc.replicas if r > 0 for b in ("full", "split"))]:
        model = runner.fresh_model(tr, sc.model_seed)
        hooks: list[TrainHook] = []
        if r is not None and batch is not None:
            method = Tartaglione(method_config(sc, r, batch, len(payload)))
            key = method.create_key(model, seed=sc.key_seed, payload=payload.reshape(sc.payload_shape))
            hooks = [method.hook(key)]
            hooks[0].on_train_start(model)
        model.train()
        cases["plain" if r is None else f"R{r}-{batch}"] = (model, hooks, make_optimizer(model.parameters(), sc.train))
    names = list(cases)
    times: dict[str, list[float]] = {n: [] for n in names}
    with seeded(sc.train_seed):
        for n in names:  # warm-up
            for _ in range(2):
                _step(cases[n], x, y)
        for rnd in range(sc.overhead_rounds):
            for n in names[rnd % len(names):] + names[: rnd % len(names)]:
                t0 = time.perf_counter()
                for _ in range(sc.overhead_steps):
                    _step(cases[n], x, y)
                times[n].append(1000.0 * (time.perf_counter() - t0) / sc.overhead_steps)
    plain = statistics.median(times["plain"])
    return {"batch_size": bs, "rounds": sc.overhead_rounds, "steps": sc.overhead_steps,
            "torch_threads": torch.get_num_threads(), "replica_fraction": sc.replica_fraction,
            "cases": {n: {"median_ms": statistics.median(v), "rounds_ms": v, "ratio": statistics.median(v) / plain}
                      for n, v in times.items()}}


@measure
def overhead(runner: Runner, exp: Experiment) -> dict[str, Any]:
    split, full = runner.get(finetuned_run(REF)), runner.get(finetuned_run(FULL_RUN))
    key = runner.get(REF).owner
    ps, pf = verify(split.model, key).score, verify(full.model, key).score
    return {"cost": step_costs(runner),
            "robustness": {"split_run": REF, "full_run": FULL_RUN, "epochs": len(split.history),
                           "pearson_split": ps, "pearson_full": pf, "abs_difference": abs(ps - pf),
                           "train_seconds_split": runner.get(REF).seconds,
                           "train_seconds_full": runner.get(FULL_RUN).seconds}}


# ----------------------------------------------------------------------------- acceptance


@measure
def acceptance(runner: Runner, exp: Experiment) -> dict[str, Any]:
    sc = runner.scale
    errors = {r: 100.0 * (1.0 - runner.get(marked_run(r)).test_accuracy) for r in (0, 1, REFERENCE_R)}
    spread = max(errors.values()) - min(errors.values())
    ref = runner.get(REF)
    key = ref.owner
    ft = {name: verify(runner.get(finetuned_run(name)).model, key).score for name in marked_runs(sc)}
    p0, p4, pfull = ft[marked_run(0)], ft[REF], ft[FULL_RUN]
    m8 = fixed_point_model(ref.model, FixedPointConfig(bits=8, rounding="mask"))
    p8 = verify(m8, key).score
    cost = step_costs(runner)
    ratio = cost["cases"][f"{REF}-split"]["ratio"]
    indep = independents(runner, sc.n_independent)
    desc = independents_desc(len(indep), sc.model, f"{indep[0].train_size} images", f"{sc.small_train.epochs} epochs")
    fp, scores = false_positives([t.model for t in indep] + [runner.get("plain").model], key, desc + " + the plain run")
    fp["max_pearson"] = max(scores)
    n = len(key.tensors["payload"])
    criteria = {
        "test_error_spread_pp_R0_R1_R4": criterion(spread, "<= 0.5", spread <= 0.5),
        "payload_values": criterion(n, ">= 1800", n >= 1800),
        "R0_finetuned_pearson": criterion(p0, f"<= R{REFERENCE_R}'s − 0.05 ({p4 - 0.05:.4f})", p0 <= p4 - 0.05),
        f"R{REFERENCE_R}_finetuned_pearson": criterion(p4, ">= 0.99", p4 >= 0.99),
        "pearson_8bit_fixed_point": criterion(p8, ">= 0.99", p8 >= 0.99),
        f"R{REFERENCE_R}_step_cost_ratio": criterion(ratio, "<= 2", ratio <= 2.0),
        "split_vs_full_finetuned_pearson_gap": criterion(abs(p4 - pfull), "<= 0.01", abs(p4 - pfull) <= 0.01),
        "false_positives": criterion(fp["n_detected"], f"== 0 of {fp['n_models']} (>= 20)",
                                 fp["n_detected"] == 0 and fp["n_models"] >= 20),
    }
    return {"test_error": {str(r): e for r, e in errors.items()}, "finetuned_pearson": ft, "pearson_8bit": p8,
            "step_cost_ratio": ratio, "false_positives": fp, "criteria": criteria, "epochs": sc.train.epochs,
            "all_passed": all(c["passed"] for c in criteria.values())}
