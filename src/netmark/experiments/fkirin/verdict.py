"""The optimizer study's verdict: the survey's ranking beside the measured one, from ``results.json`` alone.

The survey (Fkirin et al. 2022, §5, Tables 5-6) concludes that Adagrad and Adamax beat SGD and that Adam is the
worst of its optimizers (SGD beats Adam); its stored text gives no table values. Each (dataset, scheme) panel of
the reproduction ranks the optimizers by the mean watermark (trigger) accuracy after the fine-tuning attack and
checks the survey's three claims; a difference counts as resolved when it exceeds twice its standard error
(Welch: √(s₁²/n₁ + s₂²/n₂) over the runs).

A run whose owner verification after embedding was *not detected* (its stored ``log10_p_value`` above
log10 α; a key without p-value: watermark accuracy below 95%) did not embed a watermark: a panel with such
runs reads "embedding failed" and is left out of the
verdict (what fine-tuning does to a watermark that never was there says nothing about the optimizers).
"""

from __future__ import annotations

import math
from typing import Any

from netmark.bench.report import markdown_table
from netmark.verify import DEFAULT_ALPHA

NAMES = {"sgd": "SGD", "adagrad": "Adagrad", "nadam": "Nadam", "rmsprop": "RMSProp", "adam": "Adam",
         "adamax": "Adamax"}
#: an uncalibrated key (no p-value) counts as embedded from this watermark accuracy on (issue 6's criterion)
MIN_WATERMARK_ACCURACY = 0.95
#: the survey's claims, as (better, worse) pairs of the watermark accuracy after fine-tuning
CLAIMS = (("adagrad", "sgd"), ("adamax", "sgd"), ("sgd", "adam"))


def failed_runs(res: dict[str, Any], dataset: str, scheme: str, optimizer: str, n: int) -> int | None:
    """How many of a study row's runs did not embed: the owner's verification after embedding not detected
    (stored ``log10_p_value`` above log10 α) or, for a key the study did not calibrate (no p-value, DeepSigns),
    a watermark accuracy after embedding below :data:`MIN_WATERMARK_ACCURACY`. None when the runs hold neither."""
    alpha = math.log10(DEFAULT_ALPHA)
    failed = 0
    for r in range(n):
        run = res.get("runs", {}).get(f"{dataset}/{scheme}/{optimizer}/{r}", {})
        p, acc = run.get("log10_p_value"), run.get("watermark_accuracy")
        if p is not None:
            failed += p > alpha
        elif acc is not None:
            failed += acc < MIN_WATERMARK_ACCURACY
        else:
            return None
    return failed


def _name(o: str) -> str:
    return NAMES.get(o, o)


def _compare(rows: dict[str, Any], a: str, b: str) -> str:
    if a not in rows or b not in rows:
        return "not measured"
    x, y = rows[a]["watermark_ft"], rows[b]["watermark_ft"]
    d = x["mean"] - y["mean"]
    se = math.sqrt(x["std"] ** 2 / max(x["n"], 1) + y["std"] ** 2 / max(y["n"], 1))
    resolved = abs(d) > 2 * se
    verdict = ("holds" if d > 0 else "fails") if resolved else "unresolved"
    return f"{verdict} ({d:+.1f} pp, 2 SE {2 * se:.1f})"


def verdict_md(res: dict[str, Any], m: dict[str, Any]) -> str:
    """The verdict section (measured ranking per panel, the survey's claims checked, embedding failures)."""
    survey = "Adagrad, Adamax > SGD > Adam (Adam worst)"
    rows_out, held, tested, failed_panels = [], 0, 0, []
    for d, by in m["rows"].items():
        for s, rows in by.items():
            fails = {o: failed_runs(res, d, s, o, m["runs"]) for o in rows}
            bad = {o: k for o, k in fails.items() if k}
            ranking = " > ".join(_name(o) for o in sorted(rows, key=lambda o: -rows[o]["watermark_ft"]["mean"]))
            if bad:
                failed_panels.append(f"{s} on {d}")
                claims = ["embedding failed"] * (len(CLAIMS) + 1)
                ranking = f"— (embedding failed: {sum(bad.values())} of {len(rows) * m['runs']} runs not detected)"
            else:
                worst = min(rows, key=lambda o: rows[o]["watermark_ft"]["mean"])
                claims = [*(_compare(rows, a, b) for a, b in CLAIMS),
                          "holds" if worst == "adam" else f"fails (worst: {_name(worst)})"]
                tested += len(claims)
                held += sum(c.startswith("holds") for c in claims)
            unknown = "" if all(k is not None for k in fails.values()) else " (embedding not checked: not measured)"
            rows_out.append([f"{s} on {d}{unknown}", ranking, *claims])
    table = markdown_table(["panel", "measured ranking (watermark acc. after FT, best first)",
                            *(f"{_name(a)} > {_name(b)}" for a, b in CLAIMS), "Adam worst"], rows_out)
    reproduced = tested > 0 and held == tested
    head = (f"**Verdict: the survey's optimizer ranking ({survey}) is "
            f"{'reproduced' if reproduced else 'not reproduced'} at this scale**: of its {tested} claims checked "
            f"on the panels whose watermark was embedded, {held} hold{'s' if held == 1 else ''} (a pairwise claim "
            "holds when its difference exceeds twice its standard error; the others fail or lie within the "
            "run-to-run spread).")
    if failed_panels:
        head += (f" Left out: {', '.join(failed_panels)}, where the owner's verification after embedding was not "
                 f"detected (α = {DEFAULT_ALPHA:g}) in some runs: the embedding failed there, so the rows below show "
                 "the fine-tuning of a watermark that never was.")
    return "## Verdict — the survey's ranking beside the measured one\n\n" + head + "\n\n" + table
