"""The Wang report's section on the two extractors under pruning (``experiments["extractors"]``, written by
:mod:`netmark.experiments.wang.extractors`) and its figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from netmark.bench.report import figure, markdown_table, not_measured, pct, plot_lines

PNG = "fig4_extractors.png"
ORDERS = ("ascending", "random", "descending")
TITLE = "Fig. 4 with the paper's extractor, and why the specific one reads the complement"

#: where the Fig. 4 section says which extractor it shows
DISCLOSURE = ("**Which extractor.** MANU and AUTO here use netmark's *specific* extractor (the reproduction's "
              "default, `methods/wang.py`), not the paper's: at every step it is also trained on copies of the host "
              "weights magnitude-pruned (smallest first) at random rates in [0, 0.9) → m, and on null inputs "
              "(U(−1, 1) vectors, host weights with 70-100% permuted) → the complement 1 − m. The ascending curve "
              "is therefore partly what it was trained for. The paper's extractor (host weights → m only) is "
              "measured beside it in the section *" + TITLE + "* below.")


def _cell(e: dict[str, Any], variant: str, extractor: str) -> dict[str, Any] | None:
    return next((c for c in e["cells"] if c["variant"] == variant and c["extractor"] == extractor), None)


def figure_png(path: Path, e: dict[str, Any]) -> Path:
    with figure(path, ncols=3, size=(4.4, 3.4), title="Bit accuracy under pruning of fc2: specific (solid) vs the "
                                                       "paper's extractor (dashed)") as axes:
        for ax, order in zip(axes, ORDERS, strict=True):
            for extractor, style in (("specific", "-"), ("paper", "--")):
                series = {}
                for variant in ("manu", "auto"):
                    c = _cell(e, variant, extractor)
                    if c is not None:
                        rows = c["pruning"][order]
                        series[f"{variant.upper()} {extractor}"] = ([100 * r["rate"] for r in rows],
                                                                    [100 * r["bit_accuracy"] for r in rows])
                plot_lines(ax, series, xlabel="pruning rate (%)", ylabel="bit accuracy (%)", title=order,
                           style=style, legend=extractor == "paper")
            ax.set_ylim(-3, 103)
    return path


def _first_flip(c: dict[str, Any], order: str) -> dict[str, Any] | None:
    """The first pruned row (rate > 0) whose bit accuracy is at most 5%: the extractor reads the complement."""
    return next((r for r in c["pruning"][order] if r["rate"] > 0 and r["bit_accuracy"] <= 0.05), None)


def _explain(e: dict[str, Any]) -> str:
    lines = []
    for variant in ("manu", "auto"):
        s, p = _cell(e, variant, "specific"), _cell(e, variant, "paper")
        if s is None or p is None:
            continue
        flips = {o: _first_flip(s, o) for o in ORDERS}
        flipped = [f"{o} from {100 * r['rate']:.0f}% (cosine to the unpruned weights {r['cosine']:.2f})"
                   for o, r in flips.items() if r is not None]
        kept = [f"{o} {pct(min(r['bit_accuracy'] for r in p['pruning'][o]), 1)}%" for o in ORDERS]
        lines.append(
            f"* {variant.upper()}: the specific extractor reads the exact complement (bit accuracy ≤ 5%) under "
            + ("; ".join(flipped) if flipped else "no order at these rates")
            + f". On fresh null inputs it reads the complement in {pct(s['null']['uniform'], 1)}% of the bits "
              f"(U(−1, 1)) and {pct(s['null']['permuted'], 1)}% (permuted host weights): what it was trained to do. "
              f"The paper's extractor reads {pct(p['null']['uniform'], 1)}% / {pct(p['null']['permuted'], 1)}% "
              "complement bits on the same null inputs, i.e. the owner's message itself in "
              f"{pct(1 - p['null']['uniform'], 1)}% / {pct(1 - p['null']['permuted'], 1)}% of the bits (a bit is m or "
              "its complement), and its lowest bit accuracy under pruning is "
              f"{', '.join(kept)}: it answers the message for pruned and unrelated inputs alike, so its flat curve "
              "is no evidence that the watermark survived (the reason netmark calibrates the extractor's null).")
    return "\n".join(lines)


def section(ex: dict[str, Any]) -> str:
    e = ex.get("extractors")
    if not isinstance(e, dict):
        return not_measured("extractors", TITLE)
    sc = e["scale"]
    head = (f"## {TITLE}\n\nCommand: `{e['command']}` ({e['seconds']:.0f} s, {sc['torch_threads']} thread(s)). "
            f"Scale: {sc['model']} on {sc['dataset']}, {sc['train_size']} training images, {sc['epochs']} epochs "
            f"({sc['optimizer']} lr {sc['lr']:g}, batch {sc['batch_size']}), {sc['bits']} bits in `{sc['layer']}`, "
            f"MANU after {sc['converge_epochs']} epochs; seeds: model {sc['model_seed']}, shuffling "
            f"{sc['train_seed']}, key {sc['key_seed']}, pruning {sc['prune_seed']}. This is smaller than the run "
            "above (its cache was not kept, so its models could not be re-read); both extractors are trained on "
            "the same data, seeds and key here.\n\n"
            "Hypothesis tested: the specific extractor is trained to send null inputs to 1 − m and *magnitude*-"
            "pruned copies of the host weights (smallest first) to m; random and largest-first pruning remove "
            "large weights, which none of its training inputs did, so the pruned layer looks to it like a null "
            "input and it answers with the complement (bit accuracy 0%, not the ~50% of a chance match), while "
            "the paper's extractor, shown nothing but the host weights, has no complement to fall to (the paper's "
            "Fig. 4 shows no such drop). The bullets below say what was measured.\n\n"
            f"![{TITLE}]({PNG})")
    rows = []
    for order in ORDERS:
        for i, rate in enumerate(e["rates"]):
            row: list[Any] = [order, f"{100 * rate:.0f}%"]
            for variant in ("manu", "auto"):
                for extractor in ("specific", "paper"):
                    c = _cell(e, variant, extractor)
                    row.append("—" if c is None else
                               f"{pct(c['pruning'][order][i]['bit_accuracy'], 1)} "
                               f"({pct(c['pruning'][order][i]['test_accuracy'], 1)})")
            c = _cell(e, "auto", "specific")
            row.append("—" if c is None else f"{c['pruning'][order][i]['cosine']:.2f}")
            rows.append(row)
    table = markdown_table(["order", "rate", "MANU specific", "MANU paper", "AUTO specific", "AUTO paper",
                            "cosine to unpruned (AUTO specific)"], rows)
    return (head + "\n\nMeasured (what the explanation above rests on):\n\n" + _explain(e)
            + "\n\nCells: bit accuracy % (task accuracy %).\n\n" + table)
