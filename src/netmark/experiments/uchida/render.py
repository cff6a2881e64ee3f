"""``results.json`` → README.md (paper value beside measured value) and the PNG figures."""

from __future__ import annotations

from itertools import takewhile
from pathlib import Path
from typing import Any

from netmark.bench import report
from netmark.bench.report import figure, fmt, markdown_table, pct, plot_hist, plot_lines, section
from netmark.bench.study import make_render
from netmark.methods.uchida import PAPER_TRAIN

FIGURES = ("fig1_training_curves.png", "fig2_projections.png", "fig5_pruning.png", "fig6_pruned_projections.png")
LABELS = {"plain": "not embedded", "direct": "embedded (direct)", "diff": "embedded (diff)",
          "random": "embedded (random)"}
ORDERS = ("ascending", "descending", "random")


render = make_render(__name__, "an Uchida")


def _figures(out: Path, res: dict[str, Any]) -> list[Path]:
    ex = res["experiments"]
    m, f2, f5 = ex["fig1"]["measured"], ex["fig2"]["measured"], ex["fig5"]["measured"]
    paths = [out / name for name in FIGURES]
    with figure(paths[0], ncols=2, title="Fig. 1: training curves") as (a, b):
        plot_lines(a, {LABELS[k]: (v["epoch"], [100 * e for e in v["test_error"]]) for k, v in m.items()},
                   xlabel="epoch", ylabel="test error (%)", title="test error", integer_x=True)
        plot_lines(b, {LABELS[k]: (v["epoch"], v["train_loss"]) for k, v in m.items()}, xlabel="epoch",
                   ylabel="training loss (task + λ·E_R)", title="training loss", style="--", logy=True,
                   integer_x=True)
    with figure(paths[1], ncols=3, title="Fig. 2: σ(Xw) toward the embedded bit") as axes:
        for ax, kt in zip(axes, ("direct", "diff", "random"), strict=True):
            plot_hist(ax, {"embedded": f2[kt]["embedded"], "not embedded": f2[kt]["not_embedded"]},
                      xlabel="σ(Xw) (oriented to b)", title=kt, vline=0.5)
    rates = f5["rates"]
    with figure(paths[2], ncols=2, title=f"Fig. 5: pruning the host layer {f5['layer']}") as (a, b):
        plot_lines(a, {o: (rates, [r["embed_loss"] for r in f5[o]]) for o in ORDERS}, xlabel="pruning rate α",
                   ylabel="embedding loss E_R (per bit)", title="(a) embedding loss", logy=True)
        plot_lines(b, {o: (rates, [r["ber"] for r in f5[o]]) for o in ORDERS}, xlabel="pruning rate α",
                   ylabel="bit error rate", title="(b) bit error rate")
    groups = {("not embedded" if k == "not_embedded" else f"embedded, α = {k}"): v
              for k, v in f5["histograms"].items()}
    with figure(paths[3], title="Fig. 6: σ(Xw) after ascending pruning of the host layer") as ax:
        plot_hist(ax, groups, xlabel="σ(Xw) (oriented to b)", vline=0.5)
    return paths


# ----------------------------------------------------------------------------- markdown


def _schedule(t: dict[str, Any]) -> str:
    ms = f", lr ×{t['gamma']:g} after epochs {', '.join(str(x) for x in t['milestones'])}" if t["milestones"] else ""
    return report.schedule_text(t, t["optimizer"].upper() + (" Nesterov" if t["nesterov"] else "")) + ms


def markdown(res: dict[str, Any]) -> str:
    sc, ex, seeds = res["scale"], res["experiments"], res["seeds"]
    return "\n\n".join([
        *report.page_head(res, f"Uchida et al. 2017 — reproduction at scale `{sc['name']}`",
                          tail=" (``netmark.reports.render``)"),
        report.scale_table([
            ["dataset", f"{sc['dataset']}: {sc['train_size_used']} train / {sc['test_size']} test images",
             "CIFAR-10: 50000 train / 10000 test"],
            ["model, host layer", f"{sc['model']}, `{sc['layer']}` (M = {sc['host_M']})",
             "WRN-10-4, conv 2 group second conv (M = 576)"],
            ["watermark", f"T = {sc['bits']} bits, λ = {sc['strength']:g}, X random (unless stated)",
             "T = 256, λ = 0.01, X random"],
            ["schedule", _schedule(sc["train"]), f"SGD Nesterov lr {PAPER_TRAIN.lr:g}, momentum 0.9, weight decay "
             "5e-4, batch 64, 200 epochs, lr ×0.2 after 60/120/160"],
            ["Table 6 sweep", f"{sc['capacity_train_size_used']} train images, {_schedule(sc['capacity_train'])}",
             "full schedule"],
            ["independent models (false positives)",
             f"{sc['small_train_size_used']} train images, {_schedule(sc['small_train'])}", "—"],
            ["attacks (fine-tuning, overwriting)",
             f"same schedule, initial lr {sc['finetune_lr'] or sc['train']['lr']:g}", "same schedule, lr reset to 0.1"],
            ["seeds", f"model {seeds['model_seed']}, shuffling {seeds['train_seed']}, key {seeds['key_seed']}, "
             f"data split {seeds['split_seed']}, fine-tuning {seeds['finetune_seed']}, overwrite "
             f"{seeds['overwrite_train_seed']} (attacker key {seeds['attacker_key_seed']}), independent models "
             f"{seeds['independent_model_seeds'][0]}..{seeds['independent_model_seeds'][-1]}", "not given"],
        ], "paper (§4.1)"),
        "Test errors are the final-epoch errors on the official test set unless marked *best* (the paper reports "
        "the best test error over epochs). E_R is the embedding loss per bit (mean binary cross-entropy).",
        section(ex, "acceptance", "Acceptance", lambda e: _acceptance(e["measured"])),
        _observations(ex),
        section(ex, "table4", "Table 4", _table4),
        "## Fig. 1 — training curves\n\n![Fig. 1](fig1_training_curves.png)",
        *(section(ex, exp, title, fn) for exp, title, fn in (
            ("fig2", "Fig. 2", _fig2_md), ("table6", "Table 6", _table6), ("table7", "Table 7", _table7),
            ("table8", "Table 8", _table8), ("fig5", "Fig. 5", _fig5_md), ("overwrite", "Overwriting", _overwrite))),
        _runs(res["runs"]),
    ]) + "\n"


def _acceptance(m: dict[str, Any]) -> str:
    f, fp = m["fidelity"], m["false_positives"]
    lines = [
        "## Acceptance criteria (measured by this runner)",
        report.criteria_table(m["criteria"], 3),
        f"* Fidelity: test accuracy {pct(f['plain_test_accuracy'])}% without the watermark vs "
        f"{pct(f['watermarked_test_accuracy'])}% with the {f['bits']}-bit random-key watermark in `{f['layer']}` "
        f"(same seed, {f['epochs']} epochs): difference {f['gap_pp']:+.2f} percentage points; owner BER "
        f"{fmt(f['ber'])}, log10 p = {fmt(f['log10_p_value'], 1)}.",
        f"* 65% ascending pruning of the host layer: BER {fmt(m['pruned_65']['ber'])} "
        f"(detected: {fmt(m['pruned_65']['detected'])}).",
        f"* Same-domain fine-tuning ({m['finetuned_same_domain']['epochs']} epochs): BER "
        f"{fmt(m['finetuned_same_domain']['ber'])}; different-domain fine-tuning: BER "
        f"{fmt(m['finetuned_different_domain']['ber'])}; overwriting: BER {fmt(m['overwritten']['ber'])} "
        f"(detected: {fmt(m['overwritten']['detected'])}).",
        f"* False positives: owner key verified against {fp['n_models']} models trained without it "
        f"({fp['models']}): {fp['n_detected']} detections (rate {fmt(fp['rate'])}, α = {fp['alpha']:g}); largest "
        f"match count {fp['max_matched_bits']}/{fp['total_bits']}, smallest p-value {fp['min_p_value']:.3g} "
        f"(log10 {fmt(fp['log10_min_p_value'], 2)}); mean test error of the independent models "
        f"{pct(fp['independent_test_error_mean'])}%.",
    ]
    return "\n\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:])


def _zero_ber_upto(rates: list[float], rows: list[dict[str, Any]]) -> float | None:
    """Largest α such that the BER is 0 at every rate up to it."""
    zero = [a for a, _ in takewhile(lambda ar: ar[1]["ber"] == 0, zip(rates, rows, strict=True))]
    return zero[-1] if zero else None


def _observations(ex: dict[str, Any]) -> str:
    f5, t6, t7 = ex["fig5"]["measured"], ex["table6"]["measured"], ex["table7"]["measured"]
    ow, t4 = ex["overwrite"]["measured"], ex["table4"]["measured"]
    up = {o: _zero_ber_upto(f5["rates"], f5[o]) for o in ORDERS}
    lines = [
        f"* Pruning (Fig. 5): BER stays 0 up to α = {fmt(up['ascending'], 2)} ascending (paper: 0.8), "
        f"{fmt(up['random'], 2)} random, {fmt(up['descending'], 2)} descending"
        + (" — random pruning is at least as harmless as magnitude pruning here, unlike the paper's ordering; "
           "E_R still grows slowest for ascending." if (up["random"] or 0) >= (up["ascending"] or 0) else "."),
        f"* Overwriting (§5.1): owner BER {pct(ow['owner_ber'], 1)}% vs the paper's 30.9% for the conv 2 group; "
        f"the owner's watermark is {'still' if ow['owner_detected'] else 'no longer'} detected (p <= 1e-6).",
        f"* Key types (Table 4): per-bit E_R {fmt(t4['random']['embed_loss'], 3)} (random) vs "
        f"{fmt(t4['direct']['embed_loss'], 3)} (direct) and {fmt(t4['diff']['embed_loss'], 3)} (diff).",
    ]
    for la, cells in t6["cells"].items():
        ok = [b for b in t6["bits"] if cells[str(b)]["ber"] == 0]
        moved = max(abs(c["test_error"] - t6["plain_test_error"]) for c in cells.values())
        lines.append(f"* Capacity (Table 6) in `{la}` (M = {t6['layers'][la]}): BER 0 for "
                     f"{', '.join(str(b) for b in ok) or 'no'} bits at this short schedule; the test error moves "
                     f"by at most {100 * moved:.2f} points from the plain model's.")
    for red in ("mean", "sum"):
        hit = [(lam, v) for lam, v in t7[red].items() if v["ber"] == 0]
        base = t7[red].get("0", {}).get("test_error")
        if hit and base is not None:
            lam, v = hit[0]
            lines.append(f"* Embedding without training (Table 7, E_R {red} in Eq. 6): BER 0 first at λ = {lam}, "
                         f"costing {100 * (v['test_error'] - base):+.2f} test-error points.")
        else:
            lines.append(f"* Embedding without training (Table 7, E_R {red} in Eq. 6): no λ reaches BER 0.")
    return "## Observations (computed from results.json)\n\n" + "\n".join(lines)


def _table4(e: dict[str, Any]) -> str:
    m, p = e["measured"], e["paper"]
    rows = [[k, fmt(p[k]["test_error"], 2), pct(v["test_error"]), pct(v["best_test_error"]),
             fmt(p[k]["embed_loss"]), fmt(v["embed_loss"], 4), fmt(v["ber"])] for k, v in m.items()]
    return (f"## Table 4 — test error (%) and embedding loss\n\n{e['notes']}\n\n"
            + markdown_table(["embedding", "paper test err", "test err", "best test err", "paper E_R",
                              "E_R", "BER"], rows)
            + f"\n\nThe not-embedded model scores E_R = {fmt(m['none']['embed_loss_owner_key'], 3)} against the "
              "owner's random key (paper Table 7, λ = 0: 1.066). The paper's E_R values of Table 4 are lost in "
              "the extracted text (—).")


def _fig2_md(e: dict[str, Any]) -> str:
    m = e["measured"]
    rows = [[kt, f"{v['embedded_correct']}/{len(v['embedded'])}", fmt(v["embedded_min"]), fmt(v["not_embedded_min"])]
            for kt, v in m.items()]
    return ("## Fig. 2 / Fig. 6 — extracted projections\n\n"
            f"Paper: {e['paper']['claim']}. Our message is random, so σ(Xw) is oriented toward each bit "
            "(σ(Xw) for b = 1, 1 − σ(Xw) for b = 0), which is the paper's histogram for an all-ones message.\n\n"
            + markdown_table(["key", "embedded bits > 0.5", "embedded min", "not embedded min"], rows)
            + "\n\n![Fig. 2](fig2_projections.png)\n\n![Fig. 6](fig6_pruned_projections.png)")


def _table6(e: dict[str, Any]) -> str:
    m, p = e["measured"], e["paper"]
    layers, groups = list(m["layers"]), list(p["layers"])
    head = ["bits"]
    for i, la in enumerate(layers):
        if i < len(groups):
            head.append(f"paper {groups[i]} (M={p['layers'][groups[i]]}) test err")
        head += [f"`{la}` (M={m['layers'][la]}) test err", "E_R", "BER"]
    rows = []
    for bits in m["bits"]:
        row: list[Any] = [str(bits)]
        pe = p["test_error"].get(str(bits))
        for i, la in enumerate(layers):
            if i < len(groups):
                row.append(fmt(pe[i], 2) if pe else "—")
            c = m["cells"][la][str(bits)]
            row += [pct(c["test_error"]), fmt(c["embed_loss"], 4), fmt(c["ber"])]
        rows.append(row)
    return (f"## Table 6 — capacity\n\nTrained on {m['train_size']} images for {m['epochs']} epochs (plain model "
            f"at this scale: {pct(m['plain_test_error'])}% test error). {e['notes']}\n\n" + markdown_table(head, rows))


def _table7(e: dict[str, Any]) -> str:
    m, p = e["measured"], e["paper"]
    out = [f"## Table 7 — embedding without training\n\n{e['notes']} {m['steps']} steps of {m['optimizer']}."]
    for red, what in (("mean", "E_R as the per-bit mean inside Eq. 6 (the scale of the paper's numbers)"),
                      ("sum", "E_R summed over the bits inside Eq. 6 (Eq. 4 as written; 256× stronger)")):
        rows = []
        for lam, v in m[red].items():
            pv = p.get(lam, {})
            rows.append([lam, fmt(pv.get("weight_distance")), fmt(v["weight_distance"]), fmt(pv.get("embed_loss")),
                         fmt(v["embed_loss"]), fmt(pv.get("test_error"), 2), pct(v["test_error"]),
                         fmt(pv.get("ber")), fmt(v["ber"])])
        out.append(f"{what}:\n\n" + markdown_table(
            ["λ", "paper ‖W−W0‖²", "‖W−W0‖²", "paper E_R", "E_R", "paper test err", "test err", "paper BER", "BER"],
            rows))
    return "\n\n".join(out)


def _table8(e: dict[str, Any]) -> str:
    m, p = e["measured"], e["paper"]
    dom = m["domains"]
    rows = []
    for k, label in (("same", "same domain"), ("different", "different domain")):
        v = m[k]
        rows.append([label, fmt(v["embed_loss_before"], 4), fmt(v["embed_loss_after"], 4), fmt(p[k]["ber_after"]),
                     fmt(v["ber_after"]), fmt(v["detected_after"]), fmt(p[k]["test_error"], 2),
                     pct(v["test_error_before"]), pct(v["test_error"])])
    return ("## Table 8 — robustness against fine-tuning\n\n"
            f"Same domain: the watermarked model is fine-tuned on the same training set, same schedule and number "
            f"of epochs ({m['same']['epochs']}), initial learning rate {m['same']['lr']:g}. Different domain: "
            f"a model watermarked while trained on classes {dom['embed_classes']} is fine-tuned with a new output "
            f"head on classes {dom['finetune_classes']} ({m['different']['train_size']} images; test error on those "
            f"classes). {e['notes']}\n\n"
            + markdown_table(["fine-tuning", "E_R before", "E_R after", "paper BER", "BER after", "detected",
                              "paper test err", "test err before", "test err after"], rows))


def _fig5_md(e: dict[str, Any]) -> str:
    m = e["measured"]
    rows = [[fmt(a, 2), fmt(m["ascending"][i]["embed_loss"], 4), fmt(m["ascending"][i]["ber"]),
             pct(m["ascending"][i]["test_error"]), fmt(m["descending"][i]["ber"]), fmt(m["random"][i]["ber"]),
             "0" if a <= 0.8 else "—"]
            for i, a in enumerate(m["rates"])]
    return (f"## Fig. 5 — pruning the host layer `{m['layer']}`\n\nPaper: {e['paper']['claim']}.\n\n"
            + markdown_table(["α", "ascending E_R", "ascending BER", "ascending test err", "descending BER",
                              "random BER", "paper BER (ascending)"], rows)
            + "\n\n![Fig. 5](fig5_pruning.png)")


def _overwrite(e: dict[str, Any]) -> str:
    m, p = e["measured"], e["paper"]["ber"]
    return ("## §5.1 — watermark overwriting\n\n" + e["notes"] + "\n\n" + markdown_table(
        ["", "paper owner BER", "owner BER", "owner detected", "attacker BER", "test err before", "test err after"],
        [[f"`{m['layer']}` ({m['epochs']} epochs)", f"{fmt(p['conv 2'])} (conv 2) / {fmt(p['conv 3'])} (conv 3) / "
          f"{fmt(p['conv 4'])} (conv 4)", fmt(m["owner_ber"]), fmt(m["owner_detected"]), fmt(m["attacker_ber"]),
          pct(m["test_error_before"]), pct(m["test_error"])]]))


def _runs(runs: dict[str, Any]) -> str:
    rows = [[f"`{n}`", r["spec"]["key_type"] or "—", r["spec"]["attack"] or "train", r["train_size"],
             len(r["history"]) or "—", pct(r["test_error"]), fmt(r["seconds"], 1)] for n, r in runs.items()]
    return "## Runs (each trained once and shared)\n\n" + markdown_table(
        ["run", "own key", "how", "train images", "epochs logged", "test err", "seconds"], rows)
