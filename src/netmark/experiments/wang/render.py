"""``results.json`` → README.md (paper value beside measured value) and the PNG figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from netmark.bench import report
from netmark.bench.report import figure, fmt, markdown_table, pct, plot_hist, plot_lines
from netmark.bench.study import make_render
from netmark.verify import DEFAULT_ALPHA

from . import render_extractors

FIGURES = ("fig4_compression.png", "table5_capacity.png", "fig5_histograms.png", "conv_compression.png",
           render_extractors.PNG)
NAMES = {"plain": "Non-marked", "uchida": "Uchida [7]", "manu": "MANU", "auto": "AUTO"}
METHODS = ("uchida", "manu", "auto")
ORDERS = ("ascending", "random", "descending")
DD_TEXT = {
    "digits-28": "The DD images are sklearn's 8×8 handwritten digits upsampled (bilinear) to 28×28: an MNIST-like "
                 "10-class domain for the Fashion-MNIST model (the paper's MLP direction, MNIST, is not available "
                 "offline here).",
    "permuted-labels": "The DD data are the training images with every label mapped through y → 3y + 1 mod 10 "
                       "(no class keeps its label): a new 10-class task on the same head.",
}


render = make_render(__name__, "a Wang")


def _figures(out: Path, res: dict[str, Any]) -> list[Path]:
    ex = res["experiments"]
    figs = [_fig4(out / FIGURES[0], ex["fig4"]["measured"]), out / FIGURES[1], out / FIGURES[2]]
    m, p = ex["table5"]["measured"], ex["table5"]["paper"]
    bits = m["bits"]
    with figure(figs[1], ncols=2, title="Table 5: capacity (measured solid, paper MLP dashed)") as (a, b):
        for k, ax, label in ((0, a, "task accuracy AO (%)"), (1, b, "bit accuracy AW (%)")):
            key = "test_accuracy" if k == 0 else "bit_accuracy"
            plot_lines(ax, {NAMES[mt]: (bits, [100 * m["cells"][str(x)][mt][key] for x in bits]) for mt in METHODS},
                       xlabel="watermark size (bits)", ylabel=label, legend=False)
            pb = [x for x in bits if str(x) in p]
            plot_lines(ax, {f"{NAMES[mt]} (paper)": (pb, [p[str(x)][mt][k] for x in pb]) for mt in METHODS},
                       xlabel="watermark size (bits)", ylabel=label, style="--", marker="x")
            ax.set_xscale("log", base=2)
    m = ex["table7"]["measured"]
    w = m["weights"]
    lo = min(min(v) for v in w.values())
    hi = max(max(v) for v in w.values())
    lo_b, hi_b = 0.1 * (int(lo / 0.1) - 1), 0.1 * (int(hi / 0.1) + 1)
    with figure(figs[2], title=f"Fig. 5: histograms of the {m['layer']} weights (bin width 0.1)",
                size=(6.0, 4.0)) as ax:
        plot_hist(ax, {NAMES[k]: v for k, v in w.items()}, bins=max(1, round((hi_b - lo_b) / 0.1)),
                  value_range=(lo_b, hi_b), xlabel="weight")
    conv = ex.get("conv", {}).get("measured", {})
    if conv and "skipped" not in conv:
        figs.append(_fig4(out / FIGURES[3], _conv_curves(conv)))
    if isinstance(ex.get("extractors"), dict):
        figs.append(render_extractors.figure_png(out / render_extractors.PNG, ex["extractors"]))
    return figs


def _conv_curves(m: dict[str, Any]) -> dict[str, Any]:
    """The convolutional case's pruning curves in :func:`_fig4`'s layout."""
    rates = [r["rate"] for r in m["plain"]["pruning"]["ascending"]]
    return {"rates": rates, "layer": f"{m['model']} {m['layer']}", "bits": m["bits"], "plain": m["plain"]["pruning"],
            **{method: m[method]["pruning"] for method in METHODS}}


def _fig4(path: Path, m: dict[str, Any]) -> Path:
    rates = [100 * a for a in m["rates"]]
    with figure(path, ncols=3, nrows=3, size=(4.2, 3.2),
                title=f"Fig. 4: removing α% of the weights of {m['layer']} ({m['bits']} bits)") as axes:
        for row, method in enumerate(METHODS):
            a, b, c = axes[3 * row: 3 * row + 3]
            series = {o: (rates, [100 * r["test_accuracy"] for r in m[method][o]]) for o in ORDERS}
            plot_lines(a, series, xlabel="compression rate α (%)", ylabel="task accuracy (%)",
                       title=f"{NAMES[method]}: task accuracy")
            plot_lines(b, {o: (rates, [r["l2"] for r in m[method][o]]) for o in ORDERS},
                       xlabel="compression rate α (%)", ylabel="L2 (per bit)", title=f"{NAMES[method]}: L2",
                       logy=True)
            plot_lines(c, {o: (rates, [100 * r["bit_accuracy"] for r in m[method][o]]) for o in ORDERS},
                       xlabel="compression rate α (%)", ylabel="bit accuracy (%)",
                       title=f"{NAMES[method]}: bit accuracy")
    return path


# ----------------------------------------------------------------------------- markdown


def _e(v: Any) -> str:
    """L2 values span 1e-8..1: scientific notation."""
    return fmt(v) if v is None or isinstance(v, str) else f"{float(v):.2e}"


def markdown(res: dict[str, Any]) -> str:
    sc, ex, seeds = res["scale"], res["experiments"], res["seeds"]
    t = sc["train"]
    parts = [
        *report.page_head(res, f"Wang et al. 2020 — reproduction at scale `{sc['name']}`", quick="wang"),
        report.scale_table([
            ["dataset", f"{sc['dataset']}: {sc['train_size_used']} train / {sc['val_size']} held out / "
             f"{sc['test_size']} test images", "MNIST: 48000 / 12000 / 10000"],
            ["model, host layer", f"{sc['model']}, `{sc['layer']}` (M = {sc['host_M']} weights, biases excluded)",
             "784-64-10 MLP, hidden→output weights (M = 640)"],
            ["schedule", f"{t['optimizer']} lr {t['lr']:g}, batch {t['batch_size']}, {t['epochs']} epochs",
             "Adam lr 0.001, batch 32, 50 epochs"],
            ["watermark", f"{sc['bits']} bits (Table 5: {', '.join(str(b) for b in sc['capacity_bits'])}), "
             f"λ = 0.05, extractor 256 hidden; MANU selects after {sc['converge_epochs']} epochs",
             "512 bits, λ = 0.05, hidden 256; MANU after 6 epochs"],
            ["Uchida [7] comparison", f"all {sc['host_M']} weights of `{sc['layer']}` (average=False), λ = "
             f"{sc['uchida_strength']:g}", "same layer"],
            ["fine-tuning", f"{sc['finetune_epochs']} epochs, same optimizer and lr; SD on {sc['sd_size']} held-out "
             f"images; DD on {sc['dd_size']} images ({sc['dd_source']})",
             "50 epochs on 12000 images (VGG16: CIFAR-10 / CIFAR-100)"],
            ["independent models", f"{sc['n_independent']} × {sc['small_train_size_used']} images, "
             f"{sc['small_train']['epochs']} epochs", "—"],
            ["seeds", f"model {seeds['model_seed']}, shuffling {seeds['train_seed']}, key {seeds['key_seed']}, split "
             f"{seeds['split_seed']}, fine-tuning {seeds['finetune_seed']}, independent "
             f"{seeds['independent_model_seeds'][0]}..{seeds['independent_model_seeds'][-1]}", "not given"],
        ], "paper (Setup)"),
        "Accuracies are final-epoch accuracies on the official test set (%). L2 is the per-bit BCE (Eq. 1). "
        "Bit accuracy = matched bits / bits (threshold 0.5). `detected` uses the calibrated p-value of the "
        f"extractor's measured null (Wang) or Binomial(T, 1/2) (Uchida), α = {DEFAULT_ALPHA:g} (netmark's default).",
        _acceptance(ex["acceptance"]["measured"]),
        _table3(ex["table3"]),
        _table4(ex["table4"]),
        _fig4_md(ex["fig4"]),
        render_extractors.section(ex),
        _table5(ex["table5"]),
        _table7(ex["table7"]),
        *([_conv(ex["conv"])] if "conv" in ex and "skipped" not in ex["conv"]["measured"] else []),
        _runs(res["runs"]),
    ]
    return "\n\n".join(parts) + "\n"


def _acceptance(m: dict[str, Any]) -> str:
    lines = ["## Acceptance (issue 3)", report.criteria_table(m["criteria"])]
    bullets = [f"* Unmarked model: test accuracy {pct(m['plain_test_accuracy'])}% ({m['epochs']} epochs)."]
    ps = m.get("plain_seeds")
    if ps and len(ps["test_accuracy"]) > 1:
        bullets.append(f"* Seed noise: {len(ps['test_accuracy'])} unmarked models (seeds "
                       f"{ps['seeds'][0]}..{ps['seeds'][-1]}) score {', '.join(pct(a) for a in ps['test_accuracy'])}% "
                       f"(mean {pct(ps['mean'])}%, sd {100 * ps['sd']:.2f} pp, range {ps['range_pp']:.2f} pp): "
                       "a fidelity gap is the same-seed difference, read against this spread. Gaps use the final "
                       "epoch, as the paper reports (last-5-epoch means for context); where a method was trained "
                       "with several seeds (below), its criterion reads the mean of the paired gaps.")
    for method, c in m["capacity"].items():
        bullets.append(f"* {NAMES[method]}, {c['bits']} bits (same seeds): test accuracy {pct(c['test_accuracy'])}% "
                       f"(gap {c['gap_pp']:+.2f} pp; over the last 5 epochs' mean accuracies "
                       f"{c.get('last5_gap_pp', float('nan')):+.2f} pp), bit accuracy {pct(c['bit_accuracy'])}%, "
                       f"detected {fmt(c['detected'])} (log10 p = {fmt(c['log10_p_value'], 1)}).")
        if "seeds" in c:
            s = c["seeds"]
            bullets.append(
                f"* {NAMES[method]}, {c['bits']} bits, {len(s['seeds'])} paired seeds (model and shuffling seed i, "
                f"same key; unmarked seed i as reference): test accuracy "
                f"{', '.join(pct(a) for a in s['test_accuracy'])}%, gaps "
                f"{', '.join(f'{g:+.2f}' for g in s['gap_pp'])} pp: **mean gap {s['mean_gap_pp']:+.2f} pp** "
                f"(sd {s['sd_pp']:.2f}, 95% t-interval [{s['ci95_pp'][0]:+.2f}, {s['ci95_pp'][1]:+.2f}]); last-5-epoch "
                f"gaps {', '.join(f'{g:+.2f}' for g in s['last5_gap_pp'])} pp; bit accuracy "
                f"{', '.join(pct(b) for b in s['bit_accuracy'])}%. The criterion reads this mean: one seed's final "
                "epoch is as noisy as the unmarked seeds' spread above (seed 0 alone: the gap in the bullet "
                "before).")
    for name, c in m["pruned_90_ascending"].items():
        bullets.append(f"* `{name}` after 90% ascending pruning of the host layer: bit accuracy "
                       f"{pct(c['bit_accuracy'])}%, detected {fmt(c['detected'])} (log10 p = "
                       f"{fmt(c['log10_p_value'], 1)}), task accuracy {pct(c['test_accuracy'])}%.")
    for name, c in m["finetuned"].items():
        bullets.append(f"* `{name}` fine-tuned ({c['epochs']} epochs): bit accuracy {pct(c['bit_accuracy'])}%, "
                       f"detected {fmt(c['detected'])} (log10 p = {fmt(c['log10_p_value'], 1)}).")
    for name, fp in m["false_positives"].items():
        bullets.append(f"* False positives, `{name}` key ({fp['key_bits']} bits) against {fp['n_models']} models "
                       f"({fp['models']}): {fp['n_detected']} detected; largest match count "
                       f"{fp['max_matched_bits']}/{fp['total_bits']}; smallest p-value {fp['min_p_value']:.3g}.")
    bullets.append("* Bit accuracy 0 (match count 0) means the extractor outputs the exact complement of the message: "
                   "netmark's specific extractor is trained to map null inputs to 1 − m (`methods/wang.py`), so "
                   "unrelated or destroyed layers read as 'anti-watermark', never as a chance match.")
    return "\n\n".join(lines) + "\n\n" + "\n".join(bullets)


def _table3(e: dict[str, Any]) -> str:
    m, p = e["measured"], e["paper"]["mlp"]
    rows = [["Non-marked", fmt(p["plain"]["accuracy"], 2), pct(m["rows"]["plain"]["test_accuracy"]), "—", "—", "—",
             "—", "—"]]
    for method in METHODS:
        r = m["rows"][method]
        rows.append([NAMES[method], fmt(p[method]["accuracy"], 2), pct(r["test_accuracy"]), _e(p[method]["l2"]),
                     _e(r["l2"]), pct(r["bit_accuracy"]), fmt(r["detected"]), fmt(r.get("selected_weights"))])
    return (f"## Table 3 — fidelity and L2 ({m['bits']} bits, {m['epochs']} epochs)\n\n{e['notes']} Paper values: "
            f"MLP on MNIST. MANU selected {m['rows']['manu'].get('selected_weights')} convergent weights after "
            f"{m['converge_epochs']} epochs (paper: {e['paper']['manu_selected']['mlp']}).\n\n"
            + markdown_table(["method", "paper acc", "acc", "paper L2", "L2", "bit acc", "detected",
                              "selected weights"], rows))


def _table4(e: dict[str, Any]) -> str:
    m, p = e["measured"], e["paper"]
    rows = []
    for method in METHODS:
        for d in ("sd", "dd"):
            v, pv = m[method][d], p[method][d]
            rows.append([NAMES[method], d.upper(), _e(pv["l2_before"]), _e(v["l2_before"]), _e(pv["l2_after"]),
                         _e(v["l2_after"]), fmt(pv["bit_accuracy"], 2), pct(v["bit_accuracy_after"]),
                         fmt(v["detected_after"]), pct(v["test_accuracy_after"]),
                         pct(v["fashion_test_accuracy_after"])])
    return (f"## Table 4 — fine-tuning ({m['epochs']} epochs, {m['optimizer']} lr {m['lr']:g})\n\n{e['notes']}\n\n"
            f"* SD: {m['sd_data']}.\n* DD: {m['dd_data']}; the 10-way head is kept. "
            f"{DD_TEXT.get(m['dd_source'], '')}\n\n"
            + markdown_table(["method", "domain", "paper L2 before", "L2 before", "paper L2 after", "L2 after",
                              "paper bit acc", "bit acc after", "detected", "task acc after (own domain)",
                              "acc on the original test set"], rows))


def _fig4_md(e: dict[str, Any]) -> str:
    m = e["measured"]
    head = ["α", "non-marked acc"]
    for method in METHODS:
        head += [f"{NAMES[method]} acc", f"{NAMES[method]} L2", f"{NAMES[method]} bit acc"]
    parts = [f"## Fig. 4 — compression of the embedded layer `{m['layer']}` ({m['bits']} bits)\n\n"
             f"Paper: {e['paper']['claim']}.\n\n{render_extractors.DISCLOSURE}\n\n![Fig. 4](fig4_compression.png)"]
    for order in ORDERS:
        rows = []
        for i, a in enumerate(m["rates"]):
            row: list[Any] = [f"{100 * a:.0f}%", pct(m["plain"][order][i]["test_accuracy"])]
            for method in METHODS:
                r = m[method][order][i]
                row += [pct(r["test_accuracy"]), _e(r["l2"]), pct(r["bit_accuracy"])]
            rows.append(row)
        parts.append(f"**{order}**\n\n" + markdown_table(head, rows))
    return "\n\n".join(parts)


def _table5(e: dict[str, Any]) -> str:
    m, p = e["measured"], e["paper"]
    head = ["bits"]
    for method in METHODS:
        head += [f"paper {NAMES[method]} AO", "AO", f"paper {NAMES[method]} AW", "AW"]
    rows = []
    for bits in sorted({*m["bits"], *(int(b) for b in p)}):  # every paper row, measured or not
        row: list[Any] = [str(bits)]
        for method in METHODS:
            c, pc = m["cells"].get(str(bits), {}).get(method, {}), p.get(str(bits), {}).get(method)
            row += [fmt(pc[0], 2) if pc else "—", pct(c.get("test_accuracy")), fmt(pc[1], 2) if pc else "—",
                    pct(c.get("bit_accuracy"))]
        rows.append(row)
    return (f"## Table 5 — capacity ({m['epochs']} epochs, {m['train_size']} images; non-marked test accuracy "
            f"{pct(m['plain_test_accuracy'])}%)\n\nAO: task accuracy (%), AW: bit accuracy (%); — where this scale "
            "did not measure a size.\n\n"
            + markdown_table(head, rows) + "\n\n![Table 5](table5_capacity.png)")


def _table7(e: dict[str, Any]) -> str:
    m, p = e["measured"], e["paper"]
    order = ("auto", "manu", "uchida", "plain")
    parts = [f"## Tables 7-8 — histogram correlation of `{m['layer']}` (Eq. 2, bin width {m['bin_width']:g})\n\n"
             f"{e['notes']} Cells: measured (paper Table 7).\n\n![Fig. 5](fig5_histograms.png)"]
    for label in ("main", "largest"):
        mx = m[label]["matrix"]
        rows = [[NAMES[r], *(f"{fmt(mx[r][c], 4)} ({fmt(p[r][c], 4)})" for c in order)] for r in order]
        parts.append(f"**{m[label]['bits']} bits**\n\n" + markdown_table(["", *(NAMES[c] for c in order)], rows))
    return "\n\n".join(parts)


def _conv(e: dict[str, Any]) -> str:
    m, p = e["measured"], e["paper"]
    p3, p4 = p["table3"], p["table4"]
    rows = [["Non-marked", fmt(p3["plain"]["accuracy"], 2), pct(m["plain"]["test_accuracy"]), "—", "—", "—", "—",
             "—", "—", "—", "—", "—", "—", "—"]]
    for method in METHODS:
        r = m[method]
        asc90 = r["pruning"]["ascending"][-1]
        rows.append([NAMES[method], fmt(p3[method]["accuracy"], 2), pct(r["test_accuracy"]), _e(p3[method]["l2"]),
                     _e(r["l2"]), pct(r["bit_accuracy"]), fmt(r.get("selected_weights")),
                     f"{pct(r['sd']['bit_accuracy_after'])} ({fmt(p4[method]['sd']['bit_accuracy'], 2)})",
                     f"{pct(r['dd']['bit_accuracy_after'])} ({fmt(p4[method]['dd']['bit_accuracy'], 2)})",
                     f"{pct(r['dd']['test_accuracy_after'])}",
                     f"{pct(asc90['bit_accuracy'])} at {100 * asc90['rate']:.0f}%",
                     fmt(r["detected"]),
                     f"{r['false_positives']['n_detected']}/{r['false_positives']['n_models']}"
                     if "false_positives" in r else "—",
                     f"{pct(r['plain_with_key']['bit_accuracy'])}, {fmt(r['plain_with_key']['detected'])}"])
    fps = [m[x]["false_positives"] for x in METHODS if "false_positives" in m[x]]
    fp_line = (f"False positives: each key against {fps[0]['models']}." if fps else "")
    return (f"## The convolutional case — Tables 3-4 and Fig. 4 for a CNN\n\n{e['notes']}\n\n"
            f"* Model: {m['model']}, host `{m['layer']}` (M = {m['host_M']} weights), {m['bits']} bits, "
            f"{m['optimizer']} lr {m['lr']:g}, batch 32, {m['epochs']} epochs on {m['train_size']} images; MANU "
            f"selects after {m['converge_epochs']} epochs (paper VGG16: {p['manu_selected']}). The extractor's "
            "optimizer follows the host's, as the paper trains both with one optimizer.\n"
            f"* Fine-tuning ({m['finetune']['epochs']} epochs): SD on {m['finetune']['sd_data']}; DD on "
            f"{m['finetune']['dd_data']}.\n* {fp_line}\n\n"
            "Cells with a paper value show it in parentheses (paper: VGG16 on CIFAR-10). The last column reads "
            "the key in the unmarked CNN trained from the *same* random initialisation (model seed) as the marked "
            "ones: a first conv layer moves little in training, so an extractor that has learnt the marked layer "
            "can also recognise the owner's initialisation. That model is not independent (only the owner has "
            "the init), so it is not counted as a false positive, but it shows where the evidence comes from.\n\n"
            + markdown_table(["method", "paper acc", "acc", "paper L2", "L2", "bit acc", "selected weights",
                              "bit acc after SD", "bit acc after DD", "DD task acc (digits)",
                              "bit acc after ascending pruning", "detected", "false positives",
                              "same-init unmarked CNN: bit acc, detected"], rows)
            + "\n\n![compression of the CNN's host layer](conv_compression.png)")


def _runs(runs: dict[str, Any]) -> str:
    rows = [[f"`{n}`", r["spec"]["method"] or "—", r["spec"]["bits"] or "—", report.run_how(r["spec"]), r["train_size"],
             len(r["history"]) or "—", pct(r["test_accuracy"]), report.run_seconds(r)] for n, r in runs.items()]
    return ("## Runs (each trained once and shared)\n\nSeconds are training time; '(cached)' runs were read back "
            "from `--cache-dir`, where an earlier invocation of the same command trained them (same fingerprint: "
            "spec, schedule, data, code; `netmark.experiments.cache`).\n\n"
            + markdown_table(["run", "method", "bits", "how", "train images", "epochs logged", "test acc", "seconds"],
                             rows))
