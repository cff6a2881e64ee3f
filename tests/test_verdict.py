"""Attacker budgets and the verdict (issue 23, items 2 and 4): a sweep's data budget is a nested seeded subset of the
attacker's images, every attacked cell records its budget, and the report names per scheme the cheapest budget that
removed its watermark (removal: not detected, accuracy within the bound; a destroyed model does not count)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from netmark.errors import ConfigError
from netmark.evaluation import Sweep, evaluate, preset
from netmark.evaluation.blocks import Cell
from netmark.evaluation.cells import Context
from netmark.evaluation.verdict import budget_key, sok_rows, verdict_blocks, verdict_rows
from netmark.training import TrainConfig


def cell(method: str, label: str, strength: Any, *, detected: bool, acc: float, frac: float, compute: float = 0.0,
         task: str = "same", attack: str = "finetune") -> dict[str, Any]:
    return {"method": method, "attack": attack, "label": label, "strength": strength, "detected": detected,
            "test_accuracy": acc, "p_value": 1e-9 if detected else 0.3, "error": None, "task": task,
            "data_fraction": frac, "compute": compute, "data_images": int(frac * 1000)}


def results(cells: list[dict[str, Any]]) -> dict[str, Any]:
    return {"methods": {"a": {"test_accuracy": 0.90}, "b": {"test_accuracy": 0.90}, "c": {"test_accuracy": 0.90}},
            "cells": cells, "config": {"max_accuracy_drop": 5.0, "model": "mlp", "dataset": "digits"}}


def test_the_verdict_is_the_cheapest_removal_and_a_destroyed_model_is_no_removal() -> None:
    res = results([
        cell("a", "fine-tune", 3, detected=False, acc=0.89, frac=0.3, compute=0.3),
        cell("a", "fine-tune, 5%", 1, detected=False, acc=0.88, frac=0.05, compute=0.1),
        cell("a", "prune", 0.9, detected=False, acc=0.50, frac=0.0, attack="prune"),  # destroyed: not a removal
        cell("b", "prune", 0.5, detected=True, acc=0.89, frac=0.0, attack="prune"),
        cell("b", "distill", 3, detected=False, acc=0.70, frac=0.3, compute=0.3, attack="distill"),  # destroyed
        cell("c", "prune", 0.5, detected=False, acc=0.88, frac=0.0, attack="prune"),
        cell("c", "fine-tune (other)", 1, detected=False, acc=0.2, frac=0.3, compute=0.1, task="other-domain"),
    ])
    rows = {r[0]: r for r in verdict_rows(res)}
    assert rows["a"][1] == Cell("removed by fine-tune, 5% @ 1", "lost") and rows["a"][2].startswith("5% of the owner")
    assert rows["a"][3] == "2.0 pp" and rows["a"][5] == "(the same)" and rows["a"][6].startswith("2:")
    assert rows["b"][1] == Cell("survives every attack measured", "ok")
    assert rows["c"][1] == Cell("removed by prune @ 0.5", "lost") and rows["c"][2] == "no data"
    other = results([cell("a", "new head", 0, detected=False, acc=0.1, frac=0.05, task="other-domain"),
                     cell("a", "fine-tune", 3, detected=False, acc=0.89, frac=0.3, compute=0.3)])
    row = verdict_rows(other)[0]
    assert row[3] == "other task" and row[5].startswith("fine-tune @ 3 (30% of the owner's data")
    assert budget_key({"data_fraction": 0.05, "task": "other-domain"}) < budget_key({"data_fraction": 0.05})
    assert budget_key({"data_fraction": 0.0, "compute": 0}) < budget_key({"data_fraction": 0.01, "compute": 0})
    sok = dict(sok_rows(res))
    assert any(v.startswith("schemes removed by at least one attack within the bound: 2 of 3 (a, c)")
               for v in sok.values()), sok
    assert any("2 attacked cells destroyed the model" in v for v in sok.values()), sok
    assert verdict_blocks({**res, "cells": [{k: v for k, v in c.items() if k != "data_fraction"}
                                            for c in res["cells"]]}) == []  # older results: no section


def test_a_data_budget_is_a_nested_seeded_subset_and_every_cell_records_its_budget(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data_fraction"):
        Sweep("prune", (0.5,), "rate", "prune", "rate", data_fraction=0.1)  # no data to budget
    with pytest.raises(ConfigError, match="data_fraction"):
        Sweep("finetune", (1,), "epochs", "ft", "epochs", data="attacker", data_fraction=1.5)
    sweeps = tuple(Sweep("finetune", (0, 2), "epochs", f"fine-tune, {f:.0%}", "epochs", {"new_head": False},
                         data="attacker", data_fraction=f) for f in (0.05, 0.2))
    config = preset("tiny", methods={"uchida": {"layer": "fc1", "bits": 32, "strength": 0.05}}, sweeps=sweeps,
                    capacity={}, access=(), forgery=False, n_independent=1, train=TrainConfig(
                        epochs=4, optimizer="adam", lr=3e-3, progress=False))
    ctx = Context(config, tmp_path / "ctx")
    small, large = (ctx.data(ctx.attack_roles(s)[0] or "") for s in sweeps)
    n = len(ctx.data("train"))
    assert (len(small), len(large)) == (round(0.05 * n), round(0.2 * n))
    assert torch.equal(large.x[: len(small)], small.x)  # the smaller budget's images are the larger one's first
    results_ = evaluate(config, tmp_path / "out", executor="serial", progress=None)
    got = {(c["label"], c["strength"]): c for c in results_["cells"]}
    assert got[("fine-tune, 5%", 2)]["data_images"] == round(0.05 * n)
    assert got[("fine-tune, 20%", 2)]["data_fraction"] == pytest.approx(round(0.2 * n) / n)
    assert got[("fine-tune, 20%", 2)]["compute"] == pytest.approx(2 / 4) and got[("fine-tune, 5%", 0)]["compute"] == 0
    text = (tmp_path / "out" / "README.md")
    from netmark.evaluation.report import render_evaluation

    render_evaluation(tmp_path / "out" / "results.json", force=True)
    assert "Which scheme survives which thief" in text.read_text() and "Compared with the SoK" in text.read_text()
