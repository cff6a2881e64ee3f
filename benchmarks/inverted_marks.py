"""Marks an attack inverted rather than removed: what a two-sided bit test would have said (issue 23, a defence to
measure, not assume).

    .venv/bin/python benchmarks/inverted_marks.py reports/evaluation/results.json

netmark's bit-match verification (Uchida, DeepSigns white box: :func:`netmark.verify.bit_match_result`) is one-sided:
p = P(X >= k) for X ~ Binomial(n, 1/2), the matches of a model that does not carry the key. Weight shifting (Lukas et
al., SoK, S&P 2022) subtracts λ = 1.5 times the mean filter from every filter; Uchida's bits are signs of projections
of exactly that mean, so the shift flips them all: k ≈ 0, one-sided p ≈ 1 — "removed" — although k = 0 is as unlikely
under the null as k = n. This script reads an evaluation's cells and, for every cell of those methods that was not
detected, gives k of n and the two-sided p-value 2·min(P(X >= k), P(X <= k)) (what an owner who also tests for an
inverted mark would get, at the price of a doubled p-value everywhere). The payload n is the ``bits`` of the method's
config in the results. Prints a markdown table; nothing here changes how netmark decides.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scipy.stats import binom

from netmark.methods import get_method

#: methods whose verification is an exact one-sided binomial bit test (their ``score`` is k / n)
BIT_METHODS = ("uchida", "deepsigns")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--alpha", type=float, default=None, help="default: the results' alpha")
    args = ap.parse_args()
    res = json.loads(args.results.read_text(encoding="utf-8"))
    alpha = args.alpha if args.alpha is not None else float(res["alpha"])
    options = res["config"]["methods"]
    print("| method | attack @ strength | accuracy | k of n | one-sided p | two-sided p | detected two-sided |")
    print("|---|---|---|---|---|---|---|")
    flipped = 0
    for c in res["cells"]:
        if c["method"] not in BIT_METHODS or c.get("error") or c.get("detected") or c.get("score") is None:
            continue
        method = get_method(c["method"])
        n = int(method.config_cls.from_dict(options.get(c["method"], {})).bits)
        if n <= 0:
            continue
        k = round(float(c["score"]) * n)
        two = min(1.0, 2 * min(float(binom.sf(k - 1, n, 0.5)), float(binom.cdf(k, n, 0.5))))
        if k < n / 2:
            flipped += two <= alpha
            print(f"| {c['method']} | {c['label']} @ {c['strength']} | {c.get('test_accuracy') or 0:.4f} | {k} of {n} "
                  f"| {c['p_value']:.3g} | {two:.3g} | {'yes' if two <= alpha else 'no'} |")
    print(f"\n{flipped} undetected cell(s) whose mark was inverted, detected by a two-sided test at alpha {alpha:g}")


if __name__ == "__main__":
    main()
