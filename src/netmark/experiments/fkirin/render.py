"""``results.json`` → README.md (acceptance, the optimizer tables, the scheme checks) and PNG figures."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from netmark.bench import report
from netmark.bench.report import figure, fmt, markdown_table, plot_lines, section
from netmark.bench.study import make_render

from .spec import PAPER_SETUP
from .verdict import failed_runs, verdict_md

FIGURES = ("optimizers.png", "finetuning.png")


render = make_render(__name__, "an Fkirin et al.")


# ----------------------------------------------------------------------------- acceptance


def acceptance(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Issue 6's criteria, computed from the measurements (empty when the results lack one of them)."""
    ex = res["experiments"]
    if any(not isinstance(ex.get(k), dict) for k in ("schemes", "false_positives", "optimizers")):
        return {}
    sch, fp, opt = ex["schemes"]["measured"], ex["false_positives"]["measured"], ex["optimizers"]["measured"]
    crit: dict[str, dict[str, Any]] = {}
    for s, r in sch["rows"].items():
        crit[f"{s}: watermark accuracy after embedding (%)"] = {
            "value": r["watermark_accuracy"], "threshold": ">= 95", "passed": r["watermark_accuracy"] >= 95}
        extra = r.get("extra_epochs", 0)
        crit[f"{s}: task accuracy - unmarked (pp)" + (f", both {extra} epochs longer" if extra else "")] = {
            "value": r["fidelity_pp"], "threshold": "within ±1", "passed": abs(r["fidelity_pp"]) <= 1.0}
        # the issue asks for the budget at which detection is lost, if any: a figure, not a threshold
        crit[f"{s}: same-domain fine-tuning epoch at which detection is lost"] = {
            "value": r["lost_at_epoch"] if r["lost_at_epoch"] is not None else f"kept {len(r['sweep'])}",
            "threshold": f"report (sweep of {len(r['sweep'])})", "passed": None}
        f = fp["rows"][s]
        ways = [w for w in ("file", "http") if f[w]["n"]]
        crit[f"{s}: independent models detected ({' / '.join(ways)})"] = {
            "value": " / ".join(f"{f[w]['detected']} of {f[w]['n']}" for w in ways),
            "threshold": "0 of >= 20", "passed": all(f[w]["detected"] == 0 and f[w]["n"] >= 20 for w in ways)}
    n_opt = min(len(rows) for by in opt["rows"].values() for rows in by.values())
    n_data = len(opt["rows"])
    crit["optimizer table: optimizers × runs × datasets"] = {
        "value": f"{n_opt} × {opt['runs']} × {n_data}", "threshold": "6 × 10 × 2",
        "passed": n_opt >= 6 and opt["runs"] >= 10 and n_data >= 2}
    return crit


# ----------------------------------------------------------------------------- figures


def _figures(out: Path, res: dict[str, Any]) -> list[Path]:
    ex = res["experiments"]
    plan = ((FIGURES[0], "optimizers", _optimizers_png), (FIGURES[1], "schemes", _finetuning_png))
    return [fn(out / name, ex[exp]["measured"]) for name, exp, fn in plan if isinstance(ex.get(exp), dict)]


def _optimizers_png(path: Path, m: dict[str, Any]) -> Path:
    panels = [(d, s) for d, by in m["rows"].items() for s in by]
    with figure(path, ncols=len(panels), size=(4.2, 3.4),
                title=f"Watermark accuracy before / after {m['finetune_epochs']} fine-tuning epochs "
                      f"(mean ± std of {m['runs']} runs)") as axes:
        for ax, (d, s) in zip(axes if len(panels) > 1 else [axes], panels, strict=True):
            rows = m["rows"][d][s]
            names = list(rows)
            xs = range(len(names))
            for off, col, label in ((-0.2, "watermark", "after embedding"), (0.2, "watermark_ft", "after fine-tuning")):
                ax.bar([x + off for x in xs], [rows[n][col]["mean"] for n in names], width=0.4,
                       yerr=[rows[n][col]["std"] for n in names], capsize=2, label=label)
            ax.set_xticks(list(xs))
            ax.set_xticklabels(names, rotation=30, fontsize=8)
            ax.set_ylim(0, 105)
            ax.set_ylabel("trigger accuracy (%)")
            ax.set_title(f"{s} — {d}", fontsize=9)
            ax.grid(True, axis="y", alpha=0.3)
            ax.legend(fontsize="x-small", loc="lower left")
    return path


def _finetuning_png(path: Path, m: dict[str, Any]) -> Path:
    with figure(path, ncols=2, title=f"Fine-tuning attack ({m['attacker_images']} attacker images, SGD)") as axes:
        acc = {s: ([0] + [h["epoch"] for h in r["sweep"]], [r["watermark_accuracy"]] + [h["watermark_accuracy"]
                                                                                      for h in r["sweep"]])
               for s, r in m["rows"].items()}
        plot_lines(axes[0], acc, xlabel="fine-tuning epochs", ylabel="watermark accuracy (%)", integer_x=True,
                   title="watermark accuracy", marker=None)
        pv = {s: ([0] + [h["epoch"] for h in r["sweep"]],
                  [_nlog(r["p_value"])] + [None if h["log10_p_value"] is None else -h["log10_p_value"]
                                           for h in r["sweep"]])
              for s, r in m["rows"].items()}
        plot_lines(axes[1], pv, xlabel="fine-tuning epochs", ylabel="-log10 p-value", integer_x=True,
                   title=f"evidence (detected above {-math.log10(m['alpha']):g})", marker=None, legend=False)
        axes[1].axhline(-math.log10(m["alpha"]), color="k", ls="--", lw=0.8)
    return path


def _nlog(p: float) -> float | None:
    return None if p is None else (-math.log10(p) if p > 0 else 300.0)


# ----------------------------------------------------------------------------- markdown


def markdown(res: dict[str, Any]) -> str:
    sc, ex = res["scale"], res["experiments"]
    crit = acceptance(res)
    ok = all(c["passed"] is not False for c in crit.values())
    sizes = "; ".join(f"{d}: owner {s['owner']}, attacker {s['attacker']}, test {s['test']}"
                      for d, s in sc["sizes"].items())
    opts = ", ".join(f"{o} {lr:g}" for o, lr in sc["optimizers"])
    parts = [
        *report.page_head(res, f"Fkirin et al. 2022 — optimizer study and black-box schemes at scale `{sc['name']}`",
                          notice="", extra=f"{sc['torch_threads']} CPU threads, {res['timing'].get('jobs', 1)} jobs",
                          quick="fkirin", figures=False),
        report.scale_table([
            ["data", sizes, PAPER_SETUP["datasets"]],
            ["model", f"{sc['model']} {sc['model_args']}", "not stated (\"ReLU\")"],
            ["watermarks", "DeepSigns black-box and Adi (study); every scheme of issue 6 (checks); "
             f"{sc['per_batch']} triggers appended to each batch", PAPER_SETUP["watermark"]],
            ["embedding", f"{sc['epochs']} epochs, batch {sc['batch_size']}; learning rates {opts} (Keras 2 "
             f"defaults; SGD momentum {sc['momentum']:g})", PAPER_SETUP["schedule"]],
            ["runs", f"{sc['runs']} per (dataset, optimizer, scheme): model, shuffling and key seeds + run index",
             "10"],
            ["attack", f"SGD lr {sc['finetune_lr']:g}, momentum {sc['momentum']:g}, {sc['finetune_epochs']} epochs "
             f"on the attacker's disjoint images (scheme sweep: {sc['scheme_finetune_epochs']} epochs)",
             PAPER_SETUP["attack"]],
            ["null", f"{sc['null_models']} reference models per image-dependent key; {sc['n_independent']} independent "
             "models for false positives", "—"],
        ], "survey (§5)"),
        f"## Acceptance (issue 6) — {'all criteria pass' if ok else '**not all criteria pass** (see FAIL rows)'}"
        if crit else report.not_measured("schemes/false_positives/optimizers", "Acceptance (issue 6)"),
        *([report.criteria_table(crit, digits=2)] if crit else []),
        section(ex, "optimizers", "Verdict — the survey's ranking", lambda e: verdict_md(res, e["measured"])),
        section(ex, "optimizers", "Optimizer study",
                lambda e: _optimizers_md(e, res) + "\n\n![optimizers](optimizers.png)"),
        section(ex, "schemes", "Schemes (issue 6)",
                lambda e: _schemes_md(e["measured"]) + "\n\n![fine-tuning](finetuning.png)"),
        section(ex, "false_positives", "False positives", lambda e: _fp_md(e["measured"])),
    ]
    return "\n\n".join(parts) + "\n"


def _ms(s: dict[str, float]) -> str:
    return f"{s['mean']:.2f} ± {s['std']:.2f}"


def _embedding(res: dict[str, Any], d: str, s: str, o: str, n: int) -> str:
    k = failed_runs(res, d, s, o, n)
    return "not measured" if k is None else f"ok ({n} of {n} detected)" if k == 0 else \
        f"**embedding failed** in {k} of {n} runs"


def _optimizers_md(e: dict[str, Any], res: dict[str, Any]) -> str:
    m = e["measured"]
    out = [f"## {e['paper_ref']} — {e['title']}",
           f"{e['notes']} Mean ± std over {m['runs']} runs, in %. The survey's stored text gives no table values, "
           f"only its conclusion: Adagrad and Adamax beat SGD, Adam is worst."]
    for d, by in m["rows"].items():
        for s, rows in by.items():
            best = max(rows, key=lambda o: rows[o]["watermark_ft"]["mean"])
            out.append(f"**{s} on {d}** (best watermark accuracy after fine-tuning: {best})\n\n" + markdown_table(
                ["optimizer", "lr", "task acc.", "watermark acc.", "task acc. after FT", "watermark acc. after FT",
                 "embedding (owner verification after embedding)"],
                [[o, fmt(r["lr"], 4), _ms(r["task"]), _ms(r["watermark"]), _ms(r["task_ft"]), _ms(r["watermark_ft"]),
                  _embedding(res, d, s, o, m["runs"])] for o, r in rows.items()]))
    return "\n\n".join(out)


def _schemes_md(m: dict[str, Any]) -> str:
    rows = []
    for s, r in m["rows"].items():
        null = "exact 1/C" if r["labels_random"] else (f"{r['null_mean_accuracy']:.1f}% (measured)"
                                                      if r["null_mean_accuracy"] is not None else "—")
        extra = r.get("extra_epochs", 0)
        delta = fmt(r["fidelity_pp"], 2) + (f" (+{extra} epochs each; {fmt(r['fidelity_vs_baseline_pp'], 2)} vs the "
                                            "baseline)" if extra else "")
        rows.append([s, "black" if r["black_box"] else "white", fmt(r["test_accuracy"], 2), delta,
                     fmt(r["watermark_accuracy"], 1), f"{r['p_value']:.2g}", null,
                     r["lost_at_epoch"] if r["lost_at_epoch"] is not None else f"kept ({len(r['sweep'])})"])
    return (f"## Schemes (issue 6) — unmarked baseline {m['baseline_accuracy']:.2f}%\n\n"
            "Each scheme embedded with SGD (run 0) on the main dataset; the attacker fine-tunes it on its own images. "
            "Δ: task accuracy minus the unmarked model's at the same budget (frontier stitching fine-tunes its key in "
            "after the plain schedule: the baseline is trained as many epochs more, without the key). "
            "Null: the chance agreement of an independent model with the trigger labels (random labels: exactly 1/C; "
            "otherwise the mean agreement of the reference models that calibrate the key).\n\n"
            + markdown_table(["scheme", "box", "task acc. %", "Δ pp", "watermark acc. %", "p-value", "null agreement",
                              "lost at FT epoch"], rows))


def _fp_md(m: dict[str, Any]) -> str:
    rows = []
    for s, r in m["rows"].items():
        for w in ("file", "http"):
            if r[w]["n"]:
                rows.append([s, w, f"{r[w]['detected']} of {r[w]['n']}", f"{r[w]['min_p_value']:.2g}",
                             fmt(100 * r[w]["max_score"], 1), fmt(100 * r[w]["mean_score"], 1)])
    ia = m["independent_accuracy"]
    return (f"## False positives — {m['n_independent']} independent models (test accuracy {ia['mean']:.2f} ± "
            f"{ia['std']:.2f}%)\n\nEach verified against every scheme's key through its safetensors file and, for "
            "black-box keys, through a local HTTP endpoint (`netmark serve`'s server); score = trigger (or bit) "
            f"accuracy, %. α = {m['alpha']:g}.\n\n"
            + markdown_table(["scheme", "via", "detected", "min p-value", "max score", "mean score"], rows))
