"""Measurements of each experiment (``MEASURES[name](runner, experiment) -> dict``), on cached runs."""

from __future__ import annotations

import copy
import math
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from netmark.bench.runner import Runner
from netmark.bench.study import MeasureRegistry
from netmark.io import load_model, save_model
from netmark.methods import method_from_key
from netmark.training import evaluate, train
from netmark.verify import DEFAULT_ALPHA

from .runs import black_box, main_dataset, watermark_score
from .spec import SCHEMES, STUDY_SCHEMES, Experiment, study_name

#: ``@measure`` registers a measurement under its function name.
MEASURES = measure = MeasureRegistry()


def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


@measure
def optimizers(runner: Runner, exp: Experiment) -> dict[str, Any]:
    """Per dataset, scheme and optimizer: task / watermark accuracy after embedding and after fine-tuning."""
    sc = runner.scale
    out: dict[str, Any] = {}
    for d, _ in sc.datasets:
        for s in STUDY_SCHEMES:
            for opt, lr in sc.optimizers:
                cols: dict[str, list[float]] = {"task": [], "watermark": [], "task_ft": [], "watermark_ft": []}
                for r in range(sc.runs):
                    name = study_name(d, s, opt, r)
                    m, ft = runner.get(name), runner.get(name + "/ft")
                    cols["task"].append(100 * m.test_accuracy)
                    cols["watermark"].append(100 * watermark_score(m.model, m.owner)[0])
                    cols["task_ft"].append(100 * ft.test_accuracy)
                    cols["watermark_ft"].append(100 * watermark_score(ft.model, ft.owner)[0])
                out.setdefault(d, {}).setdefault(s, {})[opt] = {"lr": lr, **{k: _stats(v) for k, v in cols.items()}}
    return {"rows": out, "runs": sc.runs, "finetune_epochs": sc.finetune_epochs, "epochs": sc.epochs}


def _same_budget_accuracy(runner: Runner, base: Any, marked: Any) -> tuple[int, float]:
    """``(k, accuracy)``: a scheme that fine-tunes its key in after the plain schedule (frontier stitching)
    trains ``k`` epochs more than the unmarked baseline; its fidelity is measured against the baseline
    trained those ``k`` epochs more the same way, without the key (``k = 0``: the baseline itself)."""
    k = sum(1 for h in marked.history if h.get("finetune") == 1.0)
    if k == 0:
        return 0, base.test_accuracy
    method = method_from_key(marked.key)
    cfg = replace(method.finetune_config(runner.train_config(marked.spec)), epochs=k)  # type: ignore[attr-defined]
    cont = copy.deepcopy(base.model)
    tr, te = runner.data(main_dataset(runner))
    train(cont, tr, cfg)
    return k, evaluate(cont, te)["accuracy"]


@measure
def schemes(runner: Runner, exp: Experiment) -> dict[str, Any]:
    """Every scheme on the main dataset (SGD, run 0): fidelity, trigger accuracy, p-value, fine-tuning sweep."""
    main = main_dataset(runner)
    base = runner.get(f"{main}/plain")
    rows: dict[str, Any] = {}
    for s in SCHEMES:
        m = runner.get(study_name(main, s, "sgd", 0))
        sweep, key = runner.get(f"{main}/{s}/sgd/0/sweep"), m.owner
        res = method_from_key(key).verify(m.model, key)
        lost = next((int(h["epoch"]) for h in sweep.history
                     if h.get("log10_p_value", -math.inf) > math.log10(DEFAULT_ALPHA)), None)
        extra, same_budget = _same_budget_accuracy(runner, base, m)
        rows[s] = {
            "test_accuracy": 100 * m.test_accuracy, "fidelity_pp": 100 * (m.test_accuracy - same_budget),
            "extra_epochs": extra, "same_budget_baseline_accuracy": 100 * same_budget,
            "fidelity_vs_baseline_pp": 100 * (m.test_accuracy - base.test_accuracy),
            "watermark_accuracy": 100 * res.score, "p_value": res.p_value, "detected": res.detected,
            "black_box": black_box(key),
            "labels_random": key.message_random, "calibrated": "null_counts" in key.tensors,
            "null_mean_accuracy": _null_mean(key),
            "sweep": [{"epoch": int(h["epoch"]), "watermark_accuracy": 100 * h["watermark_accuracy"],
                       "log10_p_value": h.get("log10_p_value"), "test_accuracy": 100 * h.get("test_accuracy", math.nan)}
                      for h in sweep.history],
            "lost_at_epoch": lost, "seconds": m.seconds,
        }
    return {"baseline_accuracy": 100 * base.test_accuracy, "rows": rows, "alpha": DEFAULT_ALPHA,
            "finetune_epochs": runner.scale.scheme_finetune_epochs,
            "attacker_images": len(runner.data(f"{main}@attacker")[0])}


@measure
def false_positives(runner: Runner, exp: Experiment) -> dict[str, Any]:
    """Every independent model against every scheme's key: through the model file (safetensors round trip)
    and, for black-box keys, through a local HTTP endpoint (``netmark serve``'s server)."""
    from netmark.serve import HttpPredictor, make_server

    main = main_dataset(runner)
    independents = [runner.get(f"{main}/independent/{i}") for i in range(runner.scale.n_independent)]
    keys = {s: runner.get(study_name(main, s, "sgd", 0)).owner for s in SCHEMES}
    rows: dict[str, Any] = {s: {"file": [], "http": []} for s in SCHEMES}
    with tempfile.TemporaryDirectory() as tmp:
        for i, t in enumerate(independents):
            path = save_model(t.model, Path(tmp) / f"independent-{i}.safetensors")
            loaded = load_model(path)
            server = make_server(loaded)
            server.start()
            try:
                url = server.url
                for s, key in keys.items():
                    method = method_from_key(key)
                    rows[s]["file"].append(_row(method.verify(loaded, key)))
                    if black_box(key):
                        rows[s]["http"].append(_row(method.verify_query(HttpPredictor(url), key)))
            finally:
                server.shutdown()
                server.server_close()
    summary: dict[str, dict[str, Any]] = {}
    for s, r in rows.items():
        summary[s] = {way: {"n": len(v), "detected": sum(x["detected"] for x in v),
                            "min_p_value": min((x["p_value"] for x in v), default=None),
                            "max_score": max((x["score"] for x in v), default=None),
                            "mean_score": statistics.fmean(x["score"] for x in v) if v else None}
                      for way, v in r.items()}
        summary[s]["http_matches_file"] = (not r["http"]) or all(
            a["score"] == b["score"] for a, b in zip(r["file"], r["http"], strict=True))
    return {"n_independent": len(independents), "alpha": DEFAULT_ALPHA, "rows": summary,
            "independent_accuracy": _stats([100 * t.test_accuracy for t in independents])}


def _null_mean(key: Any) -> float | None:
    """The reference models' mean trigger accuracy (%) of a calibrated key."""
    if "null_counts" not in key.tensors:
        return None
    return 100 * float(key.tensors["null_counts"].double().mean()) / len(key.tensors["labels"])


def _row(res: Any) -> dict[str, Any]:
    return {"detected": bool(res.detected), "p_value": float(res.p_value), "score": float(res.score)}
