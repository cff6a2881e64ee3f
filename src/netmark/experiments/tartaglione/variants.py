"""Tartaglione et al. 2021: the paper's embedding beside the authors' public code's (issue 18, item 5).

The control run of issue 4's finding (the paper's Eqs. 4 and 10 give no robustness at its amplitude ±σ): the same
runs, schedule, seeds and attacks for ``TartaglioneConfig.variant = "paper"`` and ``"official-code"`` (payload
written at ±10 via (2x − 1)/0.1, layers drawn in proportion to their size: :mod:`netmark.methods.tartaglione_variants`),
each with R = 0 and R = 4 (split replicas), measured under

* fine-tuning as long as the embedding (the reproduction's ``-ft`` runs: same optimizer and lr, no lock): ρ after;
* fixed point with LSB masking (§IV's compression; :data:`BITS`, 8 bits the issue's point): ρ and test accuracy;
* detectability: per Conv2d/Linear layer holding watermarked entries, a two-sample Kolmogorov–Smirnov test of the
  watermarked against the free parameters of the layer in the trained model (Fig. 3's test, on every layer);
* the outlier reset (:mod:`netmark.attacks.outlier`; k = :data:`OUTLIER_KS`): ρ and test accuracy after.

It reuses the reproduction's runner: the paper variant's runs are the reproduction's own ``R0``/``R4``/``-ft`` specs
(same cache fingerprints: a ``--cache-dir`` shared with ``netmark reproduce tartaglione`` trains them once); the
official code's are the same specs with ``variant`` set, named ``code-R*``. Entry points :func:`run` / :func:`render`
(``netmark reproduce tartaglione-variants``, ``netmark report``); the markdown is :mod:`.variants_render`.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netmark.attacks import FixedPointConfig, OutlierReset, OutlierResetConfig, fixed_point_model
from netmark.bench.measure import series
from netmark.bench.reproduce import run_reproduction
from netmark.bench.runner import Runner, Trained
from netmark.bench.study import Study, render_reproduction
from netmark.keys import WatermarkKey
from netmark.methods.tartaglione import layers_of, watermark_masks
from netmark.training import evaluate

from .measure import wm_stats
from .runs import RUNS
from .spec import PAPER, SCALES, STUDY, Experiment, RunSpec, Scale, finetuned_run, marked_run, plan

EXPERIMENT_ID = "tartaglione-variants"
#: the R values compared (R = 0: the lock alone; R = 4: the paper's replicas, split fast path).
REPLICAS = (0, 4)
OUTLIER_KS = (4.0, 5.0, 6.0, 7.0, 8.0)
BITS = (4, 6, 8, 12, 16)
VARIANT_LABELS = {"paper": "paper (Eq. 4: ±σ, uniform layer)", "official-code": "official code (±10, ∝ layer size)"}
_CMD = "netmark reproduce tartaglione-variants"
#: the reproduction's scales (same data, schedule and hyper-parameters: shared cache), with this study's command.
SCALES_V: dict[str, Scale] = {
    "quick": replace(SCALES["quick"], command=f"{_CMD} --quick", n_independent=1),
    "cpu": replace(SCALES["cpu"], n_independent=1,
                   command=f"{_CMD} --jobs 2 --cache-dir .cache/tartaglione --out reports/tartaglione-variants"),
    # the official code's ±10 payload leaves LeNet5 at chance under the paper's SGD lr 0.1 (both inits): the same
    # scale with a schedule both variants train under — lr 0.01 and the architecture's default init (as the official
    # code); the attack fine-tunes at that lr
    "cpu-lr0.01": replace(SCALES["cpu"], name="cpu-lr0.01", n_independent=1, reinit=False,
                          train=replace(SCALES["cpu"].train, lr=0.01), gamma_variants=(), finetune_lrs=(),
                          command=f"{_CMD} --scale cpu-lr0.01 --jobs 2 --cache-dir .cache/tartaglione --out "
                                  "reports/tartaglione-variants-lr0.01"),
}


def run_name(variant: str, r: int) -> str:
    """``R4`` (paper: the reproduction's own run) or ``code-R4`` (official code)."""
    return marked_run(r) if variant == "paper" else f"code-{marked_run(r)}"


def variant_plan(scale: Scale) -> dict[str, RunSpec]:
    """The marked runs of both variants and their fine-tuned copies; the paper's are the reproduction's specs."""
    base = plan(scale)
    out: dict[str, RunSpec] = {}
    for variant in VARIANT_LABELS:
        for r in REPLICAS:
            paper, name = marked_run(r), run_name(variant, r)
            spec, ft = base[paper], base[finetuned_run(paper)]
            if variant != "paper":
                spec = replace(spec, name=name, variant=variant)
                ft = replace(ft, name=finetuned_run(name), parent=name)
            out[spec.name], out[ft.name] = spec, ft
    return out


def _attacked(model: nn.Module, t: Trained, key: WatermarkKey) -> dict[str, Any]:
    return {**wm_stats(model, key), "test_accuracy": evaluate(model, t.test)["accuracy"]}


def ks_layers(model: nn.Module, key: WatermarkKey) -> dict[str, dict[str, Any]]:
    """Per Conv2d/Linear layer holding watermarked entries: KS test of those entries against the layer's free ones."""
    from scipy.stats import ks_2samp

    masks = watermark_masks(model, key)
    out: dict[str, dict[str, Any]] = {}
    for layer, ps in layers_of(model):
        vals = torch.cat([p.detach().reshape(-1).float().cpu() for _, p in ps])
        mask = torch.cat([(masks[n] if n in masks else torch.zeros_like(p)).reshape(-1).cpu() != 0 for n, p in ps])
        wm, free = vals[mask], vals[~mask]
        if len(wm) < 1 or len(free) < 1:
            continue
        ks = ks_2samp(wm.numpy(), free.numpy())
        out[layer] = {"watermarked": len(wm), "free": len(free), "ks_statistic": float(ks.statistic),
                      "ks_p_value": float(ks.pvalue), "watermarked_abs_max": float(wm.abs().max()),
                      "free_std": float(free.std()) if len(free) > 1 else 0.0}
    return out


def compare(runner: Runner, exp: Experiment) -> dict[str, Any]:
    """Every measurement of every marked run (see the module docstring)."""
    sc = runner.scale
    rows: dict[str, Any] = {}
    for variant in VARIANT_LABELS:
        for r in REPLICAS:
            name = run_name(variant, r)
            t, ft = runner.get(name), runner.get(finetuned_run(name))
            key = t.owner
            outlier = {}
            for k in OUTLIER_KS:
                atk = OutlierReset(OutlierResetConfig(k=k))
                outlier[f"{k:g}"] = {**_attacked(atk(t.model), t, key), "reset": atk.reset}
            ks = ks_layers(t.model, key)
            rows[name] = {
                "variant": variant, "replicas": r, "test_accuracy": t.test_accuracy, **wm_stats(t.model, key),
                "finetune": {"epochs": len(ft.history), "test_accuracy": ft.test_accuracy, **wm_stats(ft.model, key),
                             "pearson_by_epoch": [wm_stats(t.model, key)["pearson"], *series(ft.history, "pearson")]},
                "fixed_point": {str(b): _attacked(fixed_point_model(t.model, FixedPointConfig(bits=b, rounding="mask")),
                                                  t, key) for b in BITS},
                "ks": ks, "ks_min_p_value": min(v["ks_p_value"] for v in ks.values()),
                "ks_layer": sc.layer, "outlier_reset": outlier}
    return {"replicas": list(REPLICAS), "outlier_ks": list(OUTLIER_KS), "bits": list(BITS),
            "variants": VARIANT_LABELS, "finetune_epochs": sc.train.epochs, "finetune_lr": sc.train.lr,
            "train_size": runner.get(run_name("paper", 0)).train_size, "rows": rows}


EXPERIMENTS = (Experiment("compare", "issue 18", "Paper vs official-code variant: fine-tuning, fixed point, KS, "
                          "outlier reset", tuple(n for n in variant_plan(SCALES["quick"]))),)
MEASURES = {"compare": compare}
#: the reproduction's title and schedule (with its cache version: shared fingerprints) on :func:`variant_plan`.
VARIANTS = Study(EXPERIMENT_ID, PAPER, STUDY.title, SCALES_V, "cpu", variant_plan, STUDY.schedule, EXPERIMENTS)
get_scale = VARIANTS.get_scale


#: the reproduction's runs (data roles, method, records) on :data:`VARIANTS`.
RUNS_V = replace(RUNS, study=VARIANTS)


def render(results_json_path: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None, *,
           force: bool = False) -> list[Path]:
    """README.md of the comparison from its ``results.json`` alone."""
    from .variants_render import markdown

    return render_reproduction(results_json_path, out_dir, force=force, figures=(), draw=lambda _o, _r: [],
                               markdown=markdown)


def run(out_dir: str | Path, *, quick: bool = False, force: bool = False, progress: Any = None, data_dir: Any = None,
        scale: Any = None, cache_dir: Any = None, jobs: int = 1, device: str = "cpu",
        runs: Any = None) -> dict[str, Any]:
    """Train (or read from ``cache_dir``) the eight runs, measure, write ``results.json`` and README.md (see
    :func:`netmark.bench.study.run_reproduction` for the arguments)."""
    return run_reproduction(out_dir, quick=quick, force=force, progress=progress, data_dir=data_dir, scale=scale,
                            declared=RUNS_V, measures=MEASURES, render=render, cache_dir=cache_dir,
                            jobs=jobs, device=device, runs=runs)
