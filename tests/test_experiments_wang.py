"""The Wang et al. 2020 reproduction: one quick run (digits + mlp) shared by the tests."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from netmark import reports
from netmark.bench import report
from netmark.errors import ConfigError, OutputExistsError
from netmark.experiments.wang import EXPERIMENTS, SCALES, get_scale, plan, render, run
from netmark.experiments.wang.render import FIGURES
from netmark.experiments.wang.runs import PERMUTATION
from netmark.experiments.wang.spec import METHODS


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], list[str]]:
    out = tmp_path_factory.mktemp("wang-quick")
    messages: list[str] = []
    results = run(out, quick=True, progress=messages.append)
    return out, results, messages


def _measured(results: dict[str, Any], name: str) -> dict[str, Any]:
    return results["experiments"][name]["measured"]


@pytest.mark.slow  # the quick scale's reproduction (minutes on CI's 2 cores): pytest -m slow
def test_quick_run_writes_every_file_and_section(quick) -> None:
    out, results, messages = quick
    for name in ("results.json", "README.md", *FIGURES):
        assert (out / name).is_file(), name
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["experiment"] == "wang2020"
    assert set(on_disk["experiments"]) == {"table3", "table4", "fig4", "table5", "table7", "conv", "acceptance"}
    assert on_disk["scale"]["name"] == "quick" and on_disk["scale"]["dataset"] == "digits"
    assert on_disk["scale"]["model"] == "mlp" and on_disk["scale"]["host_M"] == 640
    assert len(on_disk["seeds"]["independent_model_seeds"]) == 20
    needed = {r for e in EXPERIMENTS for r in e.resolve_runs(get_scale("quick"))}
    assert set(on_disk["runs"]) == needed  # each model trained once, every needed one present
    assert on_disk["timing"]["total_seconds"] > 0
    assert any("training auto-256" in m for m in messages) and messages[-1].startswith("done")


@pytest.mark.slow  # the quick scale's reproduction (minutes on CI's 2 cores): pytest -m slow
def test_pngs_are_valid(quick) -> None:
    out, _, _ = quick
    for name in FIGURES:
        assert report.is_png(out / name), name
        assert (out / name).stat().st_size > 2000


@pytest.mark.slow  # the quick scale's reproduction (minutes on CI's 2 cores): pytest -m slow
def test_readme_puts_paper_values_beside_measured(quick) -> None:
    out, results, _ = quick
    md = (out / "README.md").read_text()
    for header in ("paper acc", "paper L2", "paper bit acc", "paper AUTO AW", "paper Uchida [7] AO"):
        assert header in md, header
    for paper_value in ("97.45", "97.49", "5.90e-08", "1.55e-01", "63.87", "2.09e-07", "58.84", "0.9731", "0.8462"):
        assert paper_value in md, paper_value
    for section in ("Acceptance", "Table 3", "Table 4", "Fig. 4", "Table 5", "Tables 7-8", "The convolutional case"):
        assert f"## {section}" in md, section
    assert "netmark reproduce wang --quick" in md and results["command"] in md
    for name in FIGURES:
        assert f"({name})" in md


@pytest.mark.slow  # the quick scale's reproduction (minutes on CI's 2 cores): pytest -m slow
def test_quick_owner_keys_detected_and_independents_not(quick) -> None:
    _, results, _ = quick
    t3 = _measured(results, "table3")["rows"]
    for method in METHODS:
        assert t3[method]["bit_accuracy"] == 1.0 and t3[method]["detected"], method
        assert not t3[method]["plain_with_key"]["detected"], method
    acc = _measured(results, "acceptance")
    for method in ("auto", "manu"):
        c = acc["capacity"][method]
        assert c["bits"] == 1024 and c["bit_accuracy"] == 1.0 and c["detected"]
    for name, fp in acc["false_positives"].items():
        assert fp["n_models"] == 21 and fp["n_detected"] == 0, name
        assert fp["min_p_value"] > 1e-6 and fp["max_matched_bits"] < fp["total_bits"], name
    assert acc["pruned_90_ascending"]["auto-256"]["bit_accuracy"] == 1.0
    assert acc["finetuned"]["auto-sd"]["bit_accuracy"] == 1.0
    assert acc["all_passed"] is all(c["passed"] for c in acc["criteria"].values())


@pytest.mark.slow  # the quick scale's reproduction (minutes on CI's 2 cores): pytest -m slow
def test_quick_measurements_are_complete(quick) -> None:
    _, results, _ = quick
    f4 = _measured(results, "fig4")
    for method in METHODS:
        for order in ("ascending", "random", "descending"):
            rows = f4[method][order]
            assert [r["rate"] for r in rows] == f4["rates"] and rows[0]["bit_accuracy"] == 1.0
    assert f4["uchida"]["ascending"][-1]["l2"] > f4["uchida"]["ascending"][0]["l2"]
    t4 = _measured(results, "table4")
    for method in METHODS:
        assert set(t4[method]) == {"sd", "dd"} and t4[method]["sd"]["bit_accuracy_before"] == 1.0
    assert t4["dd_source"] == "permuted-labels"
    t5 = _measured(results, "table5")
    assert set(t5["cells"]) == {"256", "1024"} and set(t5["cells"]["1024"]) == set(METHODS)
    t7 = _measured(results, "table7")
    for label in ("main", "largest"):
        mx = t7[label]["matrix"]
        assert set(mx) == {"plain", "auto", "manu", "uchida"} and mx["auto"]["auto"] == pytest.approx(1.0)
        assert all(-1.0 <= v <= 1.0 for row in mx.values() for v in row.values())
    assert sorted(PERMUTATION) == list(range(10)) and all(p != y for y, p in enumerate(PERMUTATION))


@pytest.mark.slow  # the quick scale's reproduction (minutes on CI's 2 cores): pytest -m slow
def test_quick_convolutional_case(quick) -> None:
    _, results, _ = quick
    c = _measured(results, "conv")
    assert c["model"] == "simple-cnn" and c["layer"] == "conv1" and c["host_M"] == 288
    for method in METHODS:
        row = c[method]
        assert set(row["pruning"]) == {"ascending", "random", "descending"}
        assert len(row["pruning"]["ascending"]) == len(c["plain"]["pruning"]["ascending"])
        assert {"sd", "dd"} <= set(row) and row["false_positives"]["n_models"] == 5
    for method in ("auto", "manu"):
        assert c[method]["bit_accuracy"] == 1.0, method
        assert c[method]["false_positives"]["n_detected"] == 0, method
    assert c["auto"]["detected"] and c["auto"]["sd"]["bit_accuracy_after"] == 1.0
    dd = results["runs"]["cnn-auto-256-dd"]
    assert dd["spec"]["attack"] == "finetune-new-head" and dd["spec"]["part"] == "conv"



@pytest.mark.slow  # the quick scale's reproduction (minutes on CI's 2 cores): pytest -m slow
def test_quick_fidelity_uses_paired_seeds(quick) -> None:
    out, results, _ = quick
    acc = _measured(results, "acceptance")
    assert acc["plain_seeds"]["seeds"] == [0, 1]
    s = acc["capacity"]["auto"]["seeds"]
    assert s["seeds"] == [0, 1] and len(s["gap_pp"]) == 2 and "seeds" not in acc["capacity"]["uchida"]
    assert s["gap_pp"][0] == pytest.approx(acc["capacity"]["auto"]["gap_pp"])
    assert s["mean_gap_pp"] == pytest.approx(sum(s["gap_pp"]) / 2)
    assert s["ci95_pp"][0] <= s["mean_gap_pp"] <= s["ci95_pp"][1]
    crit = acc["criteria"]["auto_1024_fidelity_gap_pp"]
    assert crit["value"] == s["mean_gap_pp"] and "2 paired seeds" in crit["threshold"]
    assert crit["passed"] == (abs(s["mean_gap_pp"]) <= 0.5)
    spec = results["runs"]["auto-1024-s1"]["spec"]
    assert spec["model_seed"] == 1 and spec["train_seed"] == 1 and spec["key_seed"] == 2020
    assert "2 paired seeds" in (out / "README.md").read_text()


@pytest.mark.slow  # the quick scale's reproduction (minutes on CI's 2 cores): pytest -m slow
def test_rerun_without_force_refuses_before_training(quick) -> None:
    out, _, _ = quick
    before = (out / "results.json").read_bytes()
    messages: list[str] = []
    with pytest.raises(OutputExistsError):
        run(out, quick=True, progress=messages.append)
    assert messages == [] and (out / "results.json").read_bytes() == before


@pytest.mark.slow  # the quick scale's reproduction (minutes on CI's 2 cores): pytest -m slow
def test_render_regenerates_readme_and_figures(quick, tmp_path: Path) -> None:
    out, _, _ = quick
    readme = (out / "README.md").read_text()
    (out / "README.md").unlink()
    (out / FIGURES[0]).unlink()
    written = render(out / "results.json")
    assert (out / "README.md").read_text() == readme
    assert report.is_png(out / FIGURES[0]) and out / "README.md" in written
    other = tmp_path / "copy"
    reports.render(out / "results.json", other)  # the dispatcher `netmark report` uses
    assert (other / "README.md").read_text() == readme
    with pytest.raises(OutputExistsError):  # refused before anything is drawn
        render(out / "results.json", other)


def test_scales_and_plan() -> None:
    assert {"quick", "cpu"} <= set(SCALES)
    cpu = get_scale(None)
    assert cpu.name == "cpu" and cpu.dataset == "fashion-mnist" and cpu.model == "mlp" and cpu.layer == "fc2"
    assert cpu.bits == 512 and max(cpu.capacity_bits) == 4096 and cpu.val_size == 12000
    assert cpu.train.optimizer == "adam" and cpu.train.lr == 1e-3 and cpu.train.batch_size == 32
    assert get_scale(None, quick=True).name == "quick"
    with pytest.raises(ConfigError):
        get_scale("huge")
    for name in SCALES:
        sc = get_scale(name)
        runs = plan(sc)
        for exp in EXPERIMENTS:
            assert set(exp.resolve_runs(sc)) <= set(runs), (name, exp.name)
        assert sum(r.startswith("independent-") for r in runs) >= 20
    assert cpu.train.epochs == 50 and cpu.finetune_epochs == 50 and cpu.converge_epochs == 6  # the paper's MLP
    assert cpu.conv_model is not None and cpu.plain_seeds >= 3 and cpu.fidelity_seeds >= 3
    with pytest.raises(ConfigError):
        replace(cpu, fidelity_seeds=cpu.plain_seeds + 1)
    with pytest.raises(ConfigError):
        replace(cpu, fidelity_methods=("deepsigns",))


@pytest.mark.slow
def test_full_cpu_scale(tmp_path: Path) -> None:
    results = run(tmp_path, scale="cpu")
    acc = _measured(results, "acceptance")
    assert acc["capacity"]["auto"]["bits"] == 4096
    assert acc["capacity"]["auto"]["bit_accuracy"] == 1.0 and acc["capacity"]["manu"]["bit_accuracy"] == 1.0
    assert all(fp["n_detected"] == 0 for fp in acc["false_positives"].values())
    assert acc["pruned_90_ascending"]["auto-512"]["bit_accuracy"] == 1.0
