"""The comparative evaluation's renderer: results.json → README.md, index.html and PNGs (synthetic results)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from netmark.bench.report import PNG_MAGIC, is_png
from netmark.errors import ConfigError, OutputExistsError
from netmark.evaluation import report
from netmark.evaluation.report import (
    INDEX,
    README,
    SUMMARY_PNG,
    neg_log10_p,
    render_evaluation,
    survival,
    sweep_figure_names,
)

EVIL = "<script>alert(1)</script>"
METHODS = ("uchida", "adi-trigger", EVIL)
SWEEPS = [
    {"attack": "prune", "label": "magnitude pruning", "unit": "fraction", "strengths": [0.0, 0.5, 0.9]},
    {"attack": "quantize", "label": "quantization", "unit": "", "strengths": ["fp16", "int8", "int4"]},
    {"attack": "finetune", "label": "fine-tuning", "unit": "epochs", "strengths": [1, 5, 20]},
]
#: method → sweep label → (p-value, detected, accuracy) per strength
MEASURED: dict[str, dict[str, list[tuple[float | None, bool, float]]]] = {
    "uchida": {"magnitude pruning": [(1e-40, True, 0.912), (1e-12, True, 0.884), (0.2, False, 0.41)],
               "quantization": [(0.0, True, 0.911), (1e-30, True, 0.909), (1e-5, True, 0.87)],
               "fine-tuning": [(1e-20, True, 0.915), (1e-6, True, 0.917), (0.03, False, 0.92)]},
    "adi-trigger": {"magnitude pruning": [(1e-9, True, 0.905), (0.5, False, 0.80), (0.9, False, 0.35)],
                    "quantization": [(1e-9, True, 0.904), (1e-8, True, 0.90), (None, False, 0.85)],
                    "fine-tuning": [(0.4, False, 0.91), (0.6, False, 0.915), (0.7, False, 0.918)]},
    EVIL: {"magnitude pruning": [(1e-4, True, 0.90), (1e-3, True, 0.87), (1e-3, True, 0.5)],
           "quantization": [(1e-4, True, 0.90), (1e-4, True, 0.899), (0.3, False, 0.88)],
           "fine-tuning": [(1e-3, True, 0.91), (1e-3, True, 0.91), (1e-3, True, 0.91)]},
}


def synthetic_results(*, piracy: bool = False) -> dict[str, Any]:
    """3 methods × 3 sweeps (one with string strengths), a None p-value and one errored cell."""
    cells = []
    for m, by in MEASURED.items():
        for s in SWEEPS:
            for strength, (p, det, acc) in zip(s["strengths"], by[s["label"]], strict=True):
                err = "RuntimeError: CUDA out of memory" if (m, s["attack"], strength) == ("adi-trigger", "prune",
                                                                                           0.9) else None
                cells.append({"method": m, "attack": s["attack"], "label": s["label"], "strength": strength,
                              "test_accuracy": acc, "p_value": None if err else p, "score": None,
                              "detected": False if err else det, "seconds": 1.5, "error": err})
    res: dict[str, Any] = {
        "schema": "netmark-evaluation/1", "generated": "2024-05-01T12:00:00+00:00", "netmark_version": "0.1.0",
        "command": "netmark evaluate --methods uchida,adi-trigger --quick",
        "config": {"methods": list(METHODS), "model": "resnet-18", "dataset": "cifar10",
                   "train": {"epochs": 12, "batch_size": 128, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
                             "nesterov": False, "weight_decay": 5e-4, "milestones": [6, 9], "gamma": 0.1,
                             "seed": 0, "progress": False, "device": "cpu", "clip_grad_norm": None},
                   "train_size": 5000, "n_independent": 8, "extra_knob": "kept"},
        "alpha": 0.01,
        "baseline": {"test_accuracy": 0.9175, "seed": 0},
        "methods": {
            "uchida": {"black_box": False, "test_accuracy": 0.9123, "fidelity_pp": -0.52,
                       "capacity": {"value": 256, "unit": "bits", "note": ""}, "overhead_ratio": 1.07,
                       "embed_seconds": 41.25, "false_positives": {"n": 8, "detected": 0, "min_p_value": 0.08}},
            "adi-trigger": {"black_box": True, "test_accuracy": 0.9051, "fidelity_pp": -1.24,
                            "capacity": {"value": 100, "unit": "triggers", "note": "one trigger set"},
                            "overhead_ratio": 1.9, "embed_seconds": 80.0,
                            "false_positives": {"n": 8, "detected": 1, "min_p_value": 0.004}},
            EVIL: {"black_box": True, "test_accuracy": 0.899, "fidelity_pp": -1.85,
                   "capacity": {"value": None, "unit": None, "note": "zero-bit"}, "overhead_ratio": None,
                   "embed_seconds": 12.0, "false_positives": {"n": 8, "detected": 0, "min_p_value": None}},
        },
        "sweeps": copy.deepcopy(SWEEPS),
        "cells": cells,
        "timing": {"seconds": 1234.5, "cells": len(cells), "cached_cells": 3, "executor": "process", "jobs": 2},
    }
    if piracy:
        def cells(auth: float, raw: float) -> list[dict[str, Any]]:
            return [{"attack": "prune", "label": "magnitude pruning", "strength": s, "authorized": auth - s / 2,
                     "unauthorized": raw, "seconds": 0.1, "error": None} for s in (0.0, 0.5)] + [
                    {"attack": "finetune", "label": "fine-tuning", "strength": 5, "authorized": None,
                     "unauthorized": None, "seconds": 0.0, "error": "ConfigError: <b>nope</b>"}]
        res["access"] = {
            "options": {"alpha": 1.0, "beta": 1.0, "gamma": 0.01, "raw_pass": "joint",
                        "transform": {"sigma": 0.1, "p": 0.2, "hidden": 16}}, "piracy_trials": 10,
            "transforms": {
                "fixed": {"authorized": 0.9, "unauthorized": 0.5, "fidelity_pp": -1.75, "error": None,
                          "train_seconds": 3.0, "cells": cells(0.9, 0.5),
                          "piracy": [{"attack": "input-only", "trials": 10, "mean": 0.55, "best": 0.61},
                                     {"attack": "one-pair", "trials": 1, "mean": 0.9, "best": 0.9}]},
                "generator": {"authorized": 0.92, "unauthorized": 0.1, "fidelity_pp": 0.25, "error": None,
                              "train_seconds": 4.0, "cells": cells(0.92, 0.1),
                              "piracy": [{"attack": "input-only", "trials": 10, "mean": 0.1, "best": 0.12},
                                         {"attack": "pair@0.1", "trials": 10, "mean": 0.3, "best": 0.45}]},
            }}
    return res


def _write(tmp_path: Path, res: dict[str, Any], name: str = "run") -> Path:
    d = tmp_path / name
    d.mkdir(parents=True, exist_ok=True)
    p = d / "results.json"
    p.write_text(json.dumps(res), encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    res = synthetic_results()
    path = _write(tmp_path_factory.mktemp("eval"), res)
    before = path.read_bytes()
    index = render_evaluation(path)
    assert path.read_bytes() == before  # the input is never rewritten
    return index, res


def test_renders_every_file_with_valid_pngs(rendered) -> None:
    index, res = rendered
    out = index.parent
    assert index == out / INDEX
    names = sweep_figure_names(res)
    assert len(set(names.values())) == 3
    for n in (SUMMARY_PNG, *names.values()):
        assert is_png(out / n) and (out / n).stat().st_size > 10_000, n
    assert (out / README).is_file()


def test_html_is_self_contained_and_escaped(rendered) -> None:
    index, _ = rendered
    page = index.read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 4  # summary + 3 sweeps
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page and "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'class="ok"' in page and 'class="lost"' in page and 'class="err"' in page


def test_readme_tables_hold_the_numbers(rendered) -> None:
    index, _ = rendered
    md = (index.parent / README).read_text(encoding="utf-8")
    assert "`netmark evaluate --methods uchida,adi-trigger --quick`" in md
    assert "resnet-18" in md and "cifar10" in md and "5000" in md and "2024-05-01T12:00:00+00:00" in md
    assert "extra knob | kept" in md  # config keys beyond the schema's are shown too
    summary = next(line for line in md.splitlines() if line.startswith("| uchida |"))
    # method, box, acc, Δ pp, capacity, overhead, embed s, false positives, 3 survival columns
    assert [c.strip() for c in summary.strip("|").split("|")] == [
        "uchida", "white", "91.23", "-0.52", "256 bits", "1.07×", "41.2", "0 of 8", "7 / 1 / 1", "88 (7 of 8)",
        "up to 0.5 (1 destroyed)", "all", "up to 5"]
    adi = next(line for line in md.splitlines() if line.startswith("| adi-trigger |"))
    assert "1 of 8" in adi and "100 triggers" in adi and "1.90×" in adi
    assert adi.rstrip().endswith(
        "| 3 / 3 / 2 | 50 (3 of 6) | up to 0 (1 destroyed) | up to int8 (1 destroyed) | never |")
    assert "&lt;script&gt;" in md and EVIL not in md
    # per-sweep tables: p / acc% per strength, ✓/✗, the errored cell and the None p-value
    assert "| uchida | 1.00e-40 / 91.2% ✓ | 1.00e-12 / 88.4% ✓ | 0.200 / 41.0% ✗ destroyed |" in md
    assert "| method | fp16 | int8 | int4 |" in md
    assert "| adi-trigger | 1.00e-09 / 90.4% ✓ | 1.00e-08 / 90.0% ✓ | — / 85.0% ✗ destroyed |" in md
    assert "| uchida | 0 / 91.1% ✓ | 1.00e-30 / 90.9% ✓ | 1.00e-05 / 87.0% ✓ |" in md
    assert "| adi-trigger | 1.00e-09 / 90.5% ✓ | 0.500 / 80.0% ✗ destroyed | error |" in md
    assert "| adi-trigger | 0.400 / 91.0% ✗ | 0.600 / 91.5% ✗ | 0.700 / 91.8% ✗ |" in md  # removed: still useful
    assert "0.001 / 50.0% ✓ (model destroyed)" in md  # detected in a destroyed model: survived
    assert "at most 5 percentage points (the default: these results predate the setting)" in md
    assert "## Errors" in md and "CUDA out of memory" in md
    assert "Anti-piracy" not in md
    for n in sweep_figure_names(rendered[1]).values():
        assert f"]({n})" in md


def test_survival_and_p_value_capping() -> None:
    res = synthetic_results()
    # uchida: detected in 7 of 9 cells; its 41%-accuracy prune 0.9 cell destroyed the model (not counted): 7 of 8.
    # adi-trigger: the errored prune 0.9 cell and two destroyed models are left out: 3 of 6
    assert report.robustness_share(res, "uchida") == pytest.approx(7 / 8)
    assert report.robustness_share(res, "adi-trigger") == pytest.approx(3 / 6)
    assert report.robustness_share(res, "no-such-method") is None
    prune, quant, ft = res["sweeps"]
    assert survival(res, "uchida", prune).text == "up to 0.5" and survival(res, "uchida", prune).destroyed == 1
    assert survival(res, "adi-trigger", prune).text == "up to 0"  # 0.9 errored: left out
    assert survival(res, "adi-trigger", ft).css == "lost"
    assert survival(res, EVIL, ft).text == "all"
    assert neg_log10_p(0.0) == 300.0 and neg_log10_p(1e-3) == pytest.approx(3.0)
    assert neg_log10_p(None) != neg_log10_p(None)  # NaN: a gap in the line


def test_piracy_section(tmp_path: Path) -> None:
    path = _write(tmp_path, synthetic_results(piracy=True))
    other = tmp_path / "elsewhere"
    assert render_evaluation(path, other) == other / INDEX
    md = (other / README).read_text(encoding="utf-8")
    assert "## Anti-piracy (Chen and Wu 2018)" in md and "US patent 11,687,623 B2" in md and "](access.png)" in md
    assert ("| transform | authorized (%) | Δ pp vs unmarked | unauthorized (%) | input-only (%) | one pair (%) | "
            "pair attack, 10% of the images (%) |") in md
    assert "| fixed | 90.00 | -1.75 | 50.00 | 55.00 / 61.00 | 90.00 | — |" in md
    assert "| generator | 92.00 | +0.25 | 10.00 | 10.00 / 12.00 | — | 30.00 / 45.00 |" in md
    assert "### Anti-piracy: magnitude pruning" in md and "| fixed | 90.0 / 50.0 | 65.0 / 50.0 | — |" in md
    assert "| generator | 92.0 / 10.0 | 67.0 / 10.0 | — |" in md  # the sweep's 3rd strength has no access cell
    assert "| fixed | — | error | — |" in md  # fine-tuning: strength 5 errored, 1 and 20 not measured
    assert (other / "access.png").read_bytes().startswith(PNG_MAGIC)
    page = (other / INDEX).read_text(encoding="utf-8")
    assert "<h2>Anti-piracy (Chen and Wu 2018)</h2>" in page and "<td>30.00 / 45.00</td>" in page
    assert not (other / "results.json").exists()


@pytest.mark.parametrize("bad", [{"transforms": []}, {"transforms": {"fixed": {"authorized": 0.9}}},
                                 {"transforms": {"fixed": {"authorized": 0.9, "unauthorized": 0.1,
                                                           "fidelity_pp": 0, "piracy": {}, "cells": []}}}])
def test_malformed_access_section_is_refused(tmp_path: Path, bad: dict[str, Any]) -> None:
    res = synthetic_results()
    res["access"] = bad
    with pytest.raises(ConfigError):
        render_evaluation(_write(tmp_path, res), tmp_path / "out")


def test_overwrite_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # which files may be replaced does not depend on what the figures show: stub the (slow) drawing
    def stub(path: Path, *_: Any) -> Path:
        path.write_bytes(PNG_MAGIC + b"stub")
        return path

    monkeypatch.setattr(report, "sweep_figure", stub)
    monkeypatch.setattr(report, "summary_figure", stub)
    path = _write(tmp_path, synthetic_results())
    other = tmp_path / "elsewhere"
    render_evaluation(path, other)
    # another directory's existing outputs: refused without force (one line, nothing touched), rebuilt with it
    (other / README).write_text("stale", encoding="utf-8")
    with pytest.raises(OutputExistsError, match="already exists; pass --force") as e:
        render_evaluation(path, other)
    assert "\n" not in str(e.value) and (other / README).read_text(encoding="utf-8") == "stale"
    assert render_evaluation(path, other, force=True) == other / INDEX
    assert (other / README).read_text(encoding="utf-8").startswith("# Watermark evaluation")
    # beside results.json the derived files are rebuilt in place, as `netmark report` does; the input stays
    before = path.read_bytes()
    render_evaluation(path)
    render_evaluation(path)
    assert path.read_bytes() == before and (path.parent / INDEX).is_file()
    # the output directory must be a directory
    with pytest.raises(ConfigError, match="is a file"):
        render_evaluation(path, path)


def _broken(mutate) -> dict[str, Any]:
    res = synthetic_results()
    mutate(res)
    return res


@pytest.mark.parametrize(("res", "message"), [
    (_broken(lambda r: r.update(schema="netmark-evaluation/0")), "has schema 'netmark-evaluation/0'"),
    (_broken(lambda r: r.pop("schema")), "no 'schema' key"),
    (_broken(lambda r: r.pop("cells")), "the results lacks the key 'cells'"),
    (_broken(lambda r: r["methods"]["uchida"].pop("capacity")), "method 'uchida' lacks the key 'capacity'"),
    (_broken(lambda r: r["cells"][2].pop("detected")), "cell 2 lacks the key 'detected'"),
    (_broken(lambda r: r["sweeps"][1].pop("strengths")), "sweep 1 lacks the key 'strengths'"),
    (_broken(lambda r: r["config"].pop("model")), "'config' lacks the key 'model'"),
    (_broken(lambda r: r.update(alpha=2)), "'alpha' must be a number in (0, 1)"),
    (_broken(lambda r: r["cells"][0].update(method="ghost")), "names method 'ghost'"),
    (_broken(lambda r: r.update(sweeps={})), "'sweeps' is not a JSON list"),
    ([1, 2], "does not hold a JSON object"),
])
def test_bad_input_is_one_config_error(tmp_path: Path, res: Any, message: str) -> None:
    path = _write(tmp_path, res)
    with pytest.raises(ConfigError) as e:
        render_evaluation(path)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.json"]  # nothing written


def test_not_json_or_missing(tmp_path: Path) -> None:
    bad = tmp_path / "results.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid JSON"):
        render_evaluation(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        render_evaluation(tmp_path / "nope" / "results.json")


def _one_cell(acc: float, detected: bool, *, task: str = "same", drop: float | None = None) -> dict[str, Any]:
    res = synthetic_results()
    if drop is not None:
        res["config"]["max_accuracy_drop"] = drop
    res["cells"] = [{"method": "uchida", "attack": "prune", "label": "magnitude pruning", "strength": 0.9,
                     "test_accuracy": acc, "p_value": 1e-5 if detected else 0.3, "score": None,
                     "detected": detected, "seconds": 1.0, "error": None, "task": task}]
    return res


def test_an_attack_that_destroys_the_model_does_not_remove_the_watermark() -> None:
    from netmark.evaluation.outcome import DESTROYED, REMOVED, SURVIVED, cell_kind, counts

    res = _one_cell(0.10, False)  # marked model: 91.23%; the attack left 10%: the attacker has nothing useful
    cell = res["cells"][0]
    assert cell_kind(res, cell) == DESTROYED
    assert counts(res, "uchida").destroyed == 1 and counts(res, "uchida").removed == 0
    assert report.robustness_share(res, "uchida") is None  # no usable cell: nothing said about robustness
    prune = res["sweeps"][0]
    v = survival(res, "uchida", prune)
    assert (v.text, v.css, v.destroyed) == ("model destroyed", "dead", 1)
    # the same accuracy loss within the allowed drop is a removal; a detection is a survival at any accuracy
    useful = _one_cell(0.87, False)
    assert cell_kind(useful, useful["cells"][0]) == REMOVED  # 4.23 pp below the marked model: still useful
    assert cell_kind(res, {**cell, "detected": True}) == SURVIVED
    # another task (new output layer on another domain): accuracy not comparable, judged by detection alone
    other = _one_cell(0.10, False, task="other-domain")
    assert cell_kind(other, other["cells"][0]) == REMOVED


def test_the_accuracy_drop_threshold_is_read_from_the_results(tmp_path: Path) -> None:
    from netmark.evaluation.outcome import DESTROYED, REMOVED, cell_kind

    # 80% against the marked 91.23%: 11.2 pp lost; destroyed under the default 5 pp, removed under 15 pp
    default, loose, strict = _one_cell(0.80, False), _one_cell(0.80, False, drop=15.0), _one_cell(0.90, False, drop=1)
    assert cell_kind(default, default["cells"][0]) == DESTROYED
    assert cell_kind(loose, loose["cells"][0]) == REMOVED
    assert cell_kind(strict, strict["cells"][0]) == DESTROYED  # 1.23 pp > 1 pp
    md_path = _write(tmp_path, loose)
    render_evaluation(md_path)
    md = (md_path.parent / README).read_text(encoding="utf-8")
    assert "| max. accuracy drop of a useful attacked model | 15 pp |" in md
    assert "| uchida | — | — | 0.300 / 80.0% ✗ |" in md
