"""``results.json`` → README.md (paper value beside measured value) and the PNG figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from netmark.bench import report
from netmark.bench.report import figure, fmt, markdown_table, pct, plot_lines, section
from netmark.bench.study import make_render
from netmark.verify import DEFAULT_ALPHA

from .spec import PAPER_SETUP

FIGURES = ("fig4a_finetuning.png", "fig4b_compression.png", "fig3_weights.png", "fig2_landscape.png")
STAGES = {"init": "initialised", "written": "watermark written, before training", "trained": "after training"}


render = make_render(__name__, "a Tartaglione")


def _figures(out: Path, res: dict[str, Any]) -> list[Path]:
    """The figures of the experiments that ``results.json`` holds (older results lack some: Fig. 2)."""
    ex = res["experiments"]
    draw = (("fig4a", _fig4a), ("fig4b", _fig4b), ("fig3", _fig3), ("fig2", _fig2))
    return [fn(out / name, ex[exp]["measured"]) for name, (exp, fn) in zip(FIGURES, draw, strict=True) if exp in ex]


# ----------------------------------------------------------------------------- figures


def _fig4a(path: Path, m: dict[str, Any]) -> Path:
    s = m["series"]
    with figure(path, ncols=2, title=f"Fig. 4a: fine-tuning attack ({m['epochs']} epochs, {m['optimizer']} lr "
                                     f"{m['lr']:g})") as (a, b):
        plot_lines(a, {n: (v["epochs"], v["pearson"]) for n, v in s.items()}, xlabel="fine-tuning epoch",
                   ylabel="Pearson ρ (payload vs extracted)", integer_x=True)
        plot_lines(b, {n: (v["epochs"], [None if x is None else 100 * x for x in v["test_accuracy"]])
                       for n, v in s.items()}, xlabel="fine-tuning epoch", ylabel="test accuracy (%)", integer_x=True)
    return path


def _fig4b(path: Path, m: dict[str, Any]) -> Path:
    rows = m["fixed_point"]
    bits = [r["bits"] for r in rows]
    with figure(path, ncols=2, title=f"Fig. 4b: fixed point with LSB masking, model {m['run']}") as (a, b):
        plot_lines(a, {"test error": (bits, [r["test_error"] for r in rows])}, xlabel="bits per parameter",
                   ylabel="test error (%)", integer_x=True, legend=False)
        plot_lines(b, {"Pearson ρ": (bits, [r["pearson"] for r in rows])}, xlabel="bits per parameter",
                   ylabel="Pearson ρ", integer_x=True, legend=False)
        b.axhline(0.99, color="k", linestyle=":", linewidth=1)
    return path


def _fig2(path: Path, m: dict[str, Any]) -> Path:
    runs = m["runs"]
    positive = all(r > 0 for v in runs.values() for k in ("watermarked", "free") for r in v["rise"][k])
    with figure(path, ncols=3, size=(4.4, 3.4), title=f"Fig. 2: training loss around each model ({m['images']} "
                                                      "training images)") as (a, b, c):
        for ax, kind in ((a, "watermarked"), (b, "free")):
            plot_lines(ax, {n: (v["steps"], v["rise"][kind]) for n, v in runs.items()}, xlabel="δ / s",
                       ylabel="loss rise", title=f"noise on the {kind} entries", logy=positive)
            ax.set_xscale("log", base=2)
        lo, hi = min(ax.get_ylim()[0] for ax in (a, b)), max(ax.get_ylim()[1] for ax in (a, b))
        for ax in (a, b):  # one y scale for both panels
            ax.set_ylim(lo if positive else min(lo, 0.0), hi)
        xs = list(range(len(runs)))
        for off, kind in ((-0.2, "watermarked"), (0.2, "free")):
            c.bar([x + off for x in xs], [v["grad_abs_mean"][kind] for v in runs.values()], width=0.4, label=kind)
        c.set_xticks(xs, list(runs), rotation=30, fontsize="small")
        c.set_ylabel("mean |∂L/∂w| at the model")
        c.set_yscale("log")
        c.legend(fontsize="small")
    return path


def _fig3(path: Path, m: dict[str, Any]) -> Path:
    with figure(path, ncols=3, size=(4.4, 3.4), title=f"Fig. 3: parameters of {m['layer']} ({m['watermarked']} of "
                                                      f"{m['parameters']} watermarked), model {m['run']}") as axes:
        for ax, stage in zip(axes, STAGES, strict=True):
            st = m["stages"][stage]
            edges = st["edges"]
            width = edges[1] - edges[0]
            for key, name in (("counts_all", "all"), ("counts_watermarked", "watermarked")):
                total = max(1, sum(st[key]))
                ax.stairs([c / (total * width) for c in st[key]], edges, label=name, fill=key == "counts_all",
                          alpha=0.5 if key == "counts_all" else 1.0)
            ax.set_title(f"{_stage(stage, m)}\nKS p = {st['ks_p_value']:.2g}", fontsize="small")
            ax.set_xlabel("parameter value")
            ax.set_ylabel("density")
            ax.legend(fontsize="small")
    return path


# ----------------------------------------------------------------------------- markdown


def markdown(res: dict[str, Any]) -> str:
    sc, ex, seeds = res["scale"], res["experiments"], res["seeds"]
    ft = ex["fig4a"]["measured"]  # the scale table needs the attack's schedule
    reps = ", ".join(str(r) for r in sc["replicas"])
    parts = [
        *report.page_head(res, f"Tartaglione et al. 2021 — reproduction at scale `{sc['name']}`", quick="tartaglione"),
        report.scale_table([
            ["dataset", f"{sc['dataset']}: {sc['train_size_used']} train / {sc['test_size']} test images",
             PAPER_SETUP["dataset"]],
            ["model", f"{sc['model']} ({sc['model_parameters']} parameters)", PAPER_SETUP["model"]],
            ["schedule", report.schedule_text(sc["train"]), PAPER_SETUP["schedule"]],
            ["watermark", f"demo logo 3×{sc['logo'][0]}×{sc['logo'][1]}, N = {sc['payload_size']} "
             f"({100 * sc['watermarked_fraction']:.2f}% of the parameters, at most "
             f"{100 * sc['max_layer_fraction']:g}% of a layer); μ = {sc['mu']:g}, σ = {sc['sigma']:g}, s = "
             f"{sc['noise']:g}", PAPER_SETUP["watermark"]],
            ["replicas", f"R = {reps} (split fast path: R slices of {100 * sc['replica_fraction']:g}% of the "
             "minibatch) and R4-full (the paper's replicas)", PAPER_SETUP["replicas"]],
            ["γ", f"γ = {sc['gamma']:g}, × {sc['gamma_decay']:g} every {sc['gamma_step']} epochs"
             + (f"; also R = 4 with γ = {', '.join(f'{g:g}' for g in sc['gamma_variants'])}"
                if sc.get("gamma_variants") else ""), PAPER_SETUP["gamma"]],
            ["initialisation", f"N({sc['mu']:g}, {sc['sigma']:g}) (Eq. 2), plain run included" if sc["reinit"]
             else "the architecture's default (reinit off, see below)", PAPER_SETUP["init"]],
            ["fine-tuning attack", f"{ft['epochs']} epochs on the {ft['train_size']} training images, same "
             "optimizer and lr, no lock", "fine-tuning on the training set (length and lr not given)"],
            ["independent models", f"{sc['n_independent']} × {sc['small_train_size_used']} images, "
             f"{sc['small_train']['epochs']} epochs, default init", "—"],
            ["seeds", f"model {seeds['model_seed']}, shuffling {seeds['train_seed']}, key {seeds['key_seed']}, split "
             f"{seeds['split_seed']}, fine-tuning {seeds['finetune_seed']}, landscape "
             f"{seeds.get('landscape_seed', '—')}, independent "
             f"{seeds['independent_model_seeds'][0]}..{seeds['independent_model_seeds'][-1]}", "not given"],
        ], "paper (§IV-A)"),
        *([] if sc["reinit"] else [
            "**Initialisation.** This scale keeps the architecture's default initialisation: every parameter drawn "
            f"from N(0, {sc['sigma']:g}) (Eq. 2) leaves {sc['model']} stuck at chance for the few epochs it trains "
            "here (vanilla SGD, tiny activations in every layer). The watermarked values 2σ(x − 0.5) are then far "
            "smaller than the free weights around them, so Fig. 3's test flags them at this scale."]),
        f"Test errors are final-epoch errors on the official test set (%). Pearson ρ is between the key's payload and "
        f"the values extracted by Eq. 7; `detected` uses its permutation-null p-value, α = {DEFAULT_ALPHA:g}.",
        section(ex, "acceptance", "Acceptance (issue 4)", lambda e: _acceptance(e["measured"])),
        section(ex, "fig4a", "Findings", lambda e: _findings(e["measured"], sc, ex.get("fig2", {}).get("measured"))),
        *(section(ex, exp, title, fn) for exp, title, fn in (
            ("table1", "Table I", _table1), ("fig2", "Fig. 2", _fig2_md), ("fig4a", "Fig. 4a", _fig4a_md),
            ("fig4b", "Fig. 4b", _fig4b_md), ("fig3", "Fig. 3", _fig3_md),
            ("overhead", "Replica cost and the split fast path", _overhead))),
        _runs(res["runs"]),
    ]
    return "\n\n".join(parts) + "\n"


def _acceptance(m: dict[str, Any]) -> str:
    fp = m["false_positives"]
    errs = ", ".join(f"R{r}: {e:.2f}%" for r, e in m["test_error"].items())
    pft = ", ".join(f"{n}: {p:.4f}" for n, p in m["finetuned_pearson"].items())
    return ("## Acceptance (issue 4)\n\n" + report.criteria_table(m["criteria"])
            + f"\n\n* Test errors after {m['epochs']} epochs: {errs}.\n* Pearson after fine-tuning as many epochs "
            f"as the embedding: {pft}.\n* Pearson of the R4 model at 8-bit fixed point: {m['pearson_8bit']:.4f}; "
            f"R4 (split) step cost {m['step_cost_ratio']:.2f}× plain.\n* False positives: the R4 key against "
            f"{fp['n_models']} models ({fp['models']}): {fp['n_detected']} detected; largest ρ "
            f"{fp['max_pearson']:.4f}, smallest p-value {fp['min_p_value']:.3g}.")


def _at_s(v: dict[str, Any], kind: str) -> float:
    """The loss rise at the perturbation size closest to δ = s."""
    i = min(range(len(v["steps"])), key=lambda k: abs(v["steps"][k] - 1.0))
    return float(v["rise"][kind][i])


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b > 0 else "—"


def _landscape_text(f2: dict[str, Any]) -> str:
    """Fig. 2 in words: how much steeper the loss is along the watermark than along as many free weights, per run,
    and how hard the first fine-tuning step pulls on the locked entries (their mean gradient)."""
    runs = f2["runs"]
    lines = [f"* `{n}`: loss rise at δ ≈ s {_at_s(v, 'watermarked'):.2e} along the watermarked entries vs "
             f"{_at_s(v, 'free'):.2e} along free ones ({_ratio(_at_s(v, 'watermarked'), _at_s(v, 'free'))}); mean "
             f"gradient magnitude {v['grad_abs_mean']['watermarked']:.2e} vs {v['grad_abs_mean']['free']:.2e} "
             f"({_ratio(v['grad_abs_mean']['watermarked'], v['grad_abs_mean']['free'])})." for n, v in runs.items()]
    steep = [_at_s(v, "watermarked") / _at_s(v, "free") for n, v in runs.items()
             if n != "plain" and _at_s(v, "free") > 0]
    summary = (f"Across the watermarked runs the loss at δ ≈ s rises {min(steep):.2f}–{max(steep):.2f}× as much "
               "along the watermark as along as many free weights (the paper's narrow valley would make this "
               "≫ 1, growing with R):" if steep else "Per run:")
    return summary + "\n\n" + "\n".join(lines)


def _findings(m: dict[str, Any], sc: dict[str, Any], f2: dict[str, Any] | None) -> str:
    """Why the fine-tuning figures come out as they do: what Eq. 10 adds (a second-order expansion), the drift of
    the locked entries against their spread, and the landscape (Fig. 2) around them."""
    s = m["series"]
    worst = {k: max(v["drift"].items(), key=lambda kv: kv[1]["drift_rms"] / kv[1]["spread"])
             for k, v in s.items() if v.get("drift")}
    lines = [f"* `{k}`: ρ {v['after']['pearson']:.4f} after {m['epochs']} fine-tuning epochs; the locked entries "
             f"of `{worst[k][0]}` moved {worst[k][1]['drift_rms']:.4f} RMS against a spread of "
             f"{worst[k][1]['spread']:.4f} ({worst[k][1]['drift_rms'] / worst[k][1]['spread']:.1f}×)."
             for k, v in s.items() if k in worst]
    sweep = m.get("lr_sweep") or {}
    if sweep:
        lines += [f"* attacker lr {lr}: " + ", ".join(f"`{n}` ρ {v['after']['pearson']:.4f}" for n, v in by.items())
                  for lr, by in sweep.items()]
    return ("## Findings\n\n"
            "Eq. 4 writes the payload as values within ±σ of μ (σ = "
            f"{sc['sigma']:g}): a fine-tuning step that moves a locked weight by a few thousandths already blurs it, "
            "and ρ ≥ 0.99 needs the attack to move every watermarked entry by less than about a seventh of their "
            "spread. Eq. 10's replica term adds γ·g to the free weights after the step of size η (γ / η = "
            f"{sc['gamma'] / sc['train']['lr']:g} with the paper's values); g differs from the plain gradient only "
            "through noise of s on 0.4% of the weights, so the trajectories with and without replicas stay close "
            "(Table I's per-run accuracies and ρ below) and so does what the attack does to them:\n\n"
            + "\n".join(lines)
            + "\n\nTo second order in the replica noise Δ ~ N(0, s²) on the watermarked entries, the replicas' mean "
            "gradient on the free weights is E[∇L(w + Δ)] = ∇L(w) + (s²/2)·∇ tr H_xx + O(s⁴), with H_xx the Hessian "
            "block of the watermarked entries. Eq. 10 therefore updates the free weights by −(η − γ)·∇L + "
            "(γ s²/2)·∇ tr H_xx: the plain step with a learning rate shrunk by γ, plus an ascent of the curvature "
            f"along the watermark with coefficient γ s²/2 = {sc['gamma'] * sc['noise'] ** 2 / 2:.1e} (γ = "
            f"{sc['gamma']:g}, s = {sc['noise']:g}) beside η = {sc['train']['lr']:g}, and halved every "
            f"{sc['gamma_step']} epochs. Fig. 2 (below) measures the landscape the attack then meets. "
            + (_landscape_text(f2) if f2 is not None else "(Fig. 2 was not measured for these results.)")
            + "\n\nThe authors' public code (EIDOSLAB, `src/watermarklib.py`, `src/main.py`) differs from the "
            "paper in ways that matter here: it writes the payload as (2x − 1) / SF with SF = 0.1, i.e. values in "
            "[−10, 10] instead of ±σ, which no fine-tuning step of this size can blur (and which Fig. 3's "
            "distribution test would flag); it draws the layer in proportion to its size instead of uniformly "
            "(Eq. 3); its default γ ('lamb') is 1e-6; and its replica update subtracts λ times the mean replica "
            "*weights* after one ascent step of lr 1 (a descent on the replicas' loss plus a weight decay of λ), "
            "not the ascent of Eq. 10. netmark follows the paper.")


def _table1(e: dict[str, Any]) -> str:
    m, p = e["measured"], e["paper"]["test_error"]
    rows = []
    for name, r in m["rows"].items():
        rr = r["replicas"]
        rows.append([f"`{name}`", "—" if rr is None else str(rr), r["replica_batch"] or "—",
                     fmt(p.get(str(rr)), 2) if rr is not None and r["replica_batch"] == "split" else "—",
                     f"{r['test_error']:.2f}", fmt(r.get("pearson"), 4), fmt(r.get("detected")),
                     fmt(r.get("final_gamma")), fmt(r["seconds"], 1)])
    return (f"## Table I — test error after training ({m['epochs']} epochs, {m['train_size']} images)\n\n"
            f"{e['notes']}\n\n"
            + markdown_table(["run", "R", "replicas", "paper test error (%)", "test error (%)", "owner ρ", "detected",
                              "final γ", "train seconds"], rows))


def _fig2_md(e: dict[str, Any]) -> str:
    m = e["measured"]
    runs = m["runs"]
    steps = next(iter(runs.values()))["steps"]
    rows = [[f"`{n}`", f"{v['base_loss']:.4f}",
             *(f"{w:.2e} / {f:.2e}" for w, f in zip(v["rise"]["watermarked"], v["rise"]["free"], strict=True)),
             f"{v['grad_abs_mean']['watermarked']:.2e} / {v['grad_abs_mean']['free']:.2e}"] for n, v in runs.items()]
    return (f"## Fig. 2 — the loss landscape along the watermarked dimensions\n\nPaper: {e['paper']['claim']}. "
            f"{e['notes']} {m['images']} training images, {m['directions']} directions × 2 signs per size, s = "
            f"{m['noise']:g}; `plain` is measured at `{m['plain_positions_of']}`'s key positions (never locked "
            f"there).\n\n![Fig. 2]({FIGURES[3]})\n\nLoss rise, watermarked / free entries:\n\n"
            + markdown_table(["model", "loss", *(f"δ = {t:g}·s" for t in steps), "mean gradient magnitude"], rows))


def _fig4a_md(e: dict[str, Any]) -> str:
    m = e["measured"]
    after = [[f"`{k}`", fmt(v["after"]["pearson"], 4), fmt(v["after"]["detected"]), pct(v["after"]["test_accuracy"]),
              fmt(v["after"]["exact_8bit"], 3)] for k, v in m["series"].items()]
    return (f"## Fig. 4a — fine-tuning attack ({m['epochs']} epochs, {m['optimizer']} lr {m['lr']:g}, weight decay "
            f"{m['weight_decay']:g})\n\nPaper: {e['paper']['claim']}. {e['notes']}\n\n![Fig. 4a]({FIGURES[0]})\n\n"
            "Pearson ρ per fine-tuning epoch:\n\n"
            + report.by_epoch_table({k: v["pearson"] for k, v in m["series"].items()})
            + "\n\nAfter the attack:\n\n"
            + markdown_table(["model", "ρ", "detected", "test accuracy (%)", "exact 8-bit share"], after)
            + _lr_sweep_md(m)
            + "\n\nDrift of the watermarked entries per parameter tensor (RMS change / their spread before the "
            "attack; ρ within the tensor):\n\n" + _drift_table(m["series"]))


def _lr_sweep_md(m: dict[str, Any]) -> str:
    """Pearson after the attack by the attacker's learning rate (the paper does not give it)."""
    sweep = m.get("lr_sweep") or {}
    if not sweep:
        return ""
    names = list(dict.fromkeys(n for by in sweep.values() for n in by))
    lrs = [f"{m['lr']:g}", *sweep]
    cell = {(f"{m['lr']:g}", n): m["series"][n]["after"] for n in names}
    cell.update({(lr, n): v["after"] for lr, by in sweep.items() for n, v in by.items()})
    rows = [[f"`{n}`", *(f"{cell[(lr, n)]['pearson']:.4f} ({pct(cell[(lr, n)]['test_accuracy'])}%)"
                        if (lr, n) in cell else "—" for lr in lrs)] for n in names]
    return ("\n\nThe attacker's learning rate (the paper does not give it): ρ after fine-tuning "
            f"{m['epochs']} epochs with SGD at each lr (test accuracy after the attack):\n\n"
            + markdown_table(["model", *(f"lr {lr}" for lr in lrs)], rows))


def _drift_table(series: dict[str, Any]) -> str:
    sizes = {t: d["n"] for v in series.values() for t, d in v.get("drift", {}).items()}
    rows = [[f"`{k}`", *(f"{v['drift'][t]['drift_rms']:.4f} / {v['drift'][t]['spread']:.4f} (ρ "
                         f"{v['drift'][t]['pearson']:.2f})" if t in v.get("drift", {}) else "—" for t in sizes)]
            for k, v in series.items()]
    return markdown_table(["model", *(f"`{t}` (n = {n})" for t, n in sizes.items())], rows)


def _fig4b_md(e: dict[str, Any]) -> str:
    m, p = e["measured"], e["paper"]
    f32 = m["float32"]
    def cells(r: dict[str, Any]) -> list[str]:
        return [f"{r['test_error']:.2f}", fmt(r["pearson"], 4), fmt(r["exact_8bit"], 3), fmt(r["detected"])]

    rows = [[str(r["bits"]), *cells(r)] for r in m["fixed_point"]]
    trips = [[d, *cells(r)] for d, r in m["roundtrip"].items()]
    return (f"## Fig. 4b — compression of `{m['run']}` (paper: the {p['model']} model)\n\nPaper: {p['claim']}. "
            f"{e['notes']} Uncompressed (float32): test error {f32['test_error']:.2f}%, ρ {fmt(f32['pearson'], 4)}."
            f"\n\n![Fig. 4b]({FIGURES[1]})\n\n"
            + markdown_table(["bits", "test error (%)", "ρ", "exact 8-bit share", "detected"], rows)
            + "\n\nCheckpoint round trips (`netmark.attacks.roundtrip`, no paper value):\n\n"
            + markdown_table(["dtype", "test error (%)", "ρ", "exact 8-bit share", "detected"], trips))


def _fig3_md(e: dict[str, Any]) -> str:
    m, p = e["measured"], e["paper"]
    rows = [[_stage(s, m), fmt(st["mean"], 5), fmt(st["std"], 5), fmt(st["watermarked_mean"], 5),
             fmt(st["watermarked_std"], 5), fmt(st["ks_statistic"], 3), f"{st['ks_p_value']:.3g}"]
            for s, st in m["stages"].items()]
    return (f"## Fig. 3 — distribution of the `{m['layer']}` parameters (paper: {p['layer']})\n\nPaper: {p['claim']}. "
            f"Here {m['watermarked']} of {m['parameters']} parameters ({100 * m['watermarked_fraction']:.2f}%) of "
            f"`{m['layer']}` in `{m['run']}` are watermarked. KS: two-sample Kolmogorov–Smirnov test between the "
            "watermarked and the free parameters of the layer (a small p-value: they stand out). The init drawn "
            f"for this figure equals the one the method drew: {fmt(m['init_matches_hook'])}.\n\n"
            f"![Fig. 3]({FIGURES[2]})\n\n"
            + markdown_table(["stage", "mean", "std", "watermarked mean", "watermarked std", "KS statistic",
                              "KS p-value"], rows))


def _stage(stage: str, m: dict[str, Any]) -> str:
    if stage == "init":
        return "initialised, N(μ, σ) (Eq. 2)" if m["reinit"] else "initialised (default init)"
    return STAGES[stage]


def _overhead(e: dict[str, Any]) -> str:
    c, r = e["measured"]["cost"], e["measured"]["robustness"]
    rows = [[n, fmt(v["median_ms"], 2), f"{v['ratio']:.2f}×", ", ".join(f"{x:.1f}" for x in v["rounds_ms"])]
            for n, v in c["cases"].items()]
    return (f"## Replica cost and the split fast path\n\nPaper: {e['paper']['claim']}. Per-step time of one "
            f"training step (forward, loss, replicas, backward, SGD step, lock) on a fixed batch of {c['batch_size']}, "
            f"{c['rounds']} interleaved rounds × {c['steps']} steps in one process, {c['torch_threads']} torch "
            f"thread(s); median over rounds. Split: the replicas share {100 * c['replica_fraction']:g}% of the "
            "minibatch; full: each replica sees all of it.\n\n"
            + markdown_table(["configuration", "median ms/step", "vs plain", "rounds (ms/step)"], rows)
            + f"\n\nRobustness of the fast path: after fine-tuning {r['epochs']} epochs, ρ = {r['pearson_split']:.4f} "
            f"(`{r['split_run']}`, split) vs {r['pearson_full']:.4f} (`{r['full_run']}`, full): |difference| = "
            f"{r['abs_difference']:.4f}. Training took {r['train_seconds_split']:.0f} s vs "
            f"{r['train_seconds_full']:.0f} s.")


def _runs(runs: dict[str, Any]) -> str:
    rows = [[f"`{n}`", "—" if r["spec"]["replicas"] is None else r["spec"]["replicas"],
             r["spec"]["replica_batch"] if r["spec"]["replicas"] is not None else "—",
             report.run_how(r["spec"]), r["train_size"], len(r["history"]) or "—", pct(r["test_accuracy"]),
             report.run_seconds(r)]
            for n, r in runs.items()]
    return ("## Runs (each trained once and shared)\n\nSeconds are training time; '(cached)' runs were read back "
            "from `--cache-dir` (same fingerprint: spec, schedule, data, code; `netmark.experiments.cache`).\n\n"
            + markdown_table(["run", "R", "replicas", "how", "train images", "epochs logged", "test acc (%)",
                              "seconds"], rows))
