"""``results.json`` of the paper-vs-official-code comparison (:mod:`.variants`) → README.md."""

from __future__ import annotations

from typing import Any

from netmark.bench.report import by_epoch_table, fmt, markdown_table, page_head, pct, scale_table, schedule_text
from netmark.verify import DEFAULT_ALPHA

#: chance accuracy of the 10-class tasks the study runs on (Fashion-MNIST, digits)
CHANCE = 0.1


def _cell(v: dict[str, Any]) -> str:
    """``ρ (test accuracy %)``, marked when the watermark is no longer detected."""
    return f"{v['pearson']:.4f}{'' if v['detected'] else ' ✗'} ({pct(v['test_accuracy'])}%)"


def markdown(res: dict[str, Any]) -> str:
    sc, m = res["scale"], res["experiments"]["compare"]["measured"]
    t, seeds = sc["train"], res["seeds"]
    init = f"N({sc['mu']:g}, {sc['sigma']:g}) for every parameter" if sc["reinit"] else "the architecture default"
    parts = [
        *page_head(res, "Tartaglione et al. 2021 — the paper's embedding vs the authors' public code's",
                   extra=f"{res['timing']['cached_runs']} runs from the cache", figures=False),
        "**Variants.** `paper` (netmark's default, §III-B): each payload value x ∈ [0, 1] written as "
        f"2σ(x − 0.5) + μ (σ = {sc['sigma']:g}: within ±{sc['sigma']:g}), each element's layer drawn uniformly "
        "among the Conv2d/Linear layers (Eq. 3). `official-code` (NOT the paper: EIDOSLAB's public code, "
        "`watermarklib.py`, `--SF 0.1`): written as (2x − 1)/0.1, i.e. within ±10, each layer drawn in proportion "
        "to its unused parameters. Everything else is identical: same initialisation "
        f"({init}), "
        "lock, replicas (Eq. 10, split fast path), schedule and seeds; the authors' code differs further (default "
        "init, γ = 1e-6, another replica update), which is not copied.",
        scale_table([
            ["dataset", f"{sc['dataset']}: {sc['train_size_used']} train / {sc['test_size']} test images"],
            ["model", f"{sc['model']} ({sc['model_parameters']} parameters)"],
            ["schedule", schedule_text(t)],
            ["watermark", f"demo logo 3×{sc['logo'][0]}×{sc['logo'][1]}, N = {sc['payload_size']}; R = "
             f"{', '.join(str(r) for r in m['replicas'])}; γ = {sc['gamma']:g} × {sc['gamma_decay']:g} every "
             f"{sc['gamma_step']} epochs, s = {sc['noise']:g}"],
            ["fine-tuning attack", f"{m['finetune_epochs']} epochs on the {m['train_size']} training images, "
             f"{t['optimizer']} lr {m['finetune_lr']:g}, no lock"],
            ["seeds", f"model {seeds['model_seed']}, shuffling {seeds['train_seed']}, key {seeds['key_seed']}, split "
             f"{seeds['split_seed']}, fine-tuning {seeds['finetune_seed']}"],
        ], None),
        f"ρ: Pearson correlation between the key's payload and the extracted values; ✗ marks a watermark no longer "
        f"detected (permutation-null p-value > α = {DEFAULT_ALPHA:g}). Test accuracy in brackets.",
        _summary(m),
        _outlier(m),
        _fixed_point(m),
        _ks(m),
        _finetune(m),
    ]
    return "\n\n".join(parts) + "\n"


def _summary(m: dict[str, Any]) -> str:
    rows = []
    for name, r in m["rows"].items():
        ks = r["ks"].get(r["ks_layer"])
        rows.append([f"`{name}`", r["variant"], str(r["replicas"]), pct(r["test_accuracy"]), fmt(r["pearson"], 4),
                     _cell(r["finetune"]), _cell(r["fixed_point"]["8"]),
                     f"{ks['ks_p_value']:.3g}" if ks else "—", f"{r['ks_min_p_value']:.3g}",
                     _cell(r["outlier_reset"][f"{m['outlier_ks'][0]:g}"])])
    dead = [f"`{n}`" for n, r in m["rows"].items() if r["test_accuracy"] <= CHANCE + 0.02]
    note = (f"\n\n**{', '.join(dead)} did not learn the task** (test accuracy within 2 pp of chance, "
            f"{100 * CHANCE:g}%): what the attacks do to them describes a useless model, not a robust watermark."
            if dead else "")
    return ("## Comparison\n\n"
            + markdown_table(["run", "variant", "R", "test acc (%)", "ρ", f"after fine-tuning {m['finetune_epochs']} "
                              "epochs", "8-bit fixed point", f"KS p ({next(iter(m['rows'].values()))['ks_layer']})",
                              "KS p (smallest layer)", f"outlier reset k = {m['outlier_ks'][0]:g}"], rows) + note)


def _outlier(m: dict[str, Any]) -> str:
    rows = [[f"`{name}`", *(f"{_cell(r['outlier_reset'][f'{k:g}'])}, {r['outlier_reset'][f'{k:g}']['reset']} reset"
                            for k in m["outlier_ks"])] for name, r in m["rows"].items()]
    return ("## Outlier reset\n\nEvery parameter further than k standard deviations from its tensor's mean set to the "
            "mean (`netmark.attacks.outlier`, no data): ρ (test accuracy), entries reset in the whole model.\n\n"
            + markdown_table(["run", *(f"k = {k:g}" for k in m["outlier_ks"])], rows))


def _fixed_point(m: dict[str, Any]) -> str:
    rows = [[f"`{name}`", *(_cell(r["fixed_point"][str(b)]) for b in m["bits"])] for name, r in m["rows"].items()]
    return ("## Fixed point (§IV compression: signed fixed point per tensor, LSBs masked)\n\n"
            + markdown_table(["run", *(f"{b} bits" for b in m["bits"])], rows))


def _ks(m: dict[str, Any]) -> str:
    layers = list(dict.fromkeys(ly for r in m["rows"].values() for ly in r["ks"]))
    rows = [[f"`{name}`", *(f"{r['ks'][ly]['ks_p_value']:.3g} ({r['ks'][ly]['watermarked']}; max "
                            f"{r['ks'][ly]['watermarked_abs_max']:.3g} vs std {r['ks'][ly]['free_std']:.3g})"
                            if ly in r["ks"] else "—" for ly in layers)] for name, r in m["rows"].items()]
    return ("## Detectability\n\nTwo-sample Kolmogorov–Smirnov test, per layer, of the watermarked against the free "
            "parameters of the trained model: p-value (watermarked entries in the layer; their largest |w| against "
            "the free entries' std). A small p-value: the watermark stands out of the layer's distribution.\n\n"
            + markdown_table(["run", *(f"`{ly}`" for ly in layers)], rows))


def _finetune(m: dict[str, Any]) -> str:
    return ("## Fine-tuning, per epoch\n\nρ after each epoch of the attack (epoch 0: the watermarked model).\n\n"
            + by_epoch_table({k: r["finetune"]["pearson_by_epoch"] for k, r in m["rows"].items()}))
