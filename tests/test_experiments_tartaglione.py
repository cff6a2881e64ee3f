"""The Tartaglione et al. 2021 reproduction: one run of a cut-down quick scale (digits + simple-cnn, 2 epochs, no γ
variant: :data:`TEST`) shared by the tests; ``pytest -m slow`` runs the real quick scale's acceptance."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from netmark import reports
from netmark.bench import report
from netmark.cli import app
from netmark.errors import ConfigError, OutputExistsError
from netmark.experiments.tartaglione import EXPERIMENTS, SCALES, Scale, get_scale, plan, render, run
from netmark.experiments.tartaglione.render import FIGURES
from netmark.experiments.tartaglione.spec import FULL_RUN, marked_runs, schedule_of
from netmark.methods.tartaglione import PAPER_TRAIN

_QUICK = get_scale("quick")
#: the quick scale at half the epochs and without its γ variant (CI's time budget); everything else as --quick
TEST = replace(_QUICK, name="test", train=replace(_QUICK.train, epochs=2), gamma_variants=(),
               command="netmark reproduce tartaglione --quick (tests: 2 epochs, no γ variant)")


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], list[str], Path]:
    out = tmp_path_factory.mktemp("tartaglione-quick")
    cache = tmp_path_factory.mktemp("tartaglione-cache")
    messages: list[str] = []
    results = run(out, scale=TEST, progress=messages.append, cache_dir=cache)
    return out, results, messages, cache


def _measured(results: dict[str, Any], name: str) -> dict[str, Any]:
    return results["experiments"][name]["measured"]


def test_quick_run_writes_every_file_and_section(quick) -> None:
    out, results, messages, _ = quick
    for name in ("results.json", "README.md", *FIGURES):
        assert (out / name).is_file(), name
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["experiment"] == "tartaglione2021" and on_disk["command"] == results["command"]
    assert set(on_disk["experiments"]) == {"table1", "fig2", "fig4a", "fig4b", "fig3", "overhead", "acceptance"}
    sc = on_disk["scale"]
    assert sc["name"] == "test" and sc["dataset"] == "digits" and sc["model"] == "simple-cnn"
    assert sc["payload_size"] == 1800 and sc["torch_threads"] == 1
    needed = {r for e in EXPERIMENTS for r in e.resolve_runs(TEST)}
    assert set(on_disk["runs"]) == needed  # each model trained once, every needed one present
    assert {"plain", "R0", "R1", "R4", FULL_RUN, "R4-ft", "R4-full-ft"} <= needed
    assert sum(r.startswith("independent-") for r in needed) >= 20
    assert any("training R4-full" in m for m in messages) and messages[-1].startswith("done")
    epochs = TEST.train.epochs
    for name in [*marked_runs(TEST), "plain"]:
        rec, ft = on_disk["runs"][name], on_disk["runs"].get(f"{name}-ft")
        assert rec["spec"]["name"] == name and len(rec["history"]) == epochs
        if ft is not None:  # the attack's per-epoch Pearson is kept in the run's history
            assert len(ft["history"]) == epochs and all("pearson" in h for h in ft["history"])


def test_pngs_are_valid(quick) -> None:
    out, _, _, _ = quick
    for name in FIGURES:
        assert report.is_png(out / name), name
        assert (out / name).stat().st_size > 2000


def test_readme_puts_paper_values_beside_measured(quick) -> None:
    out, results, _, _ = quick
    md = (out / "README.md").read_text()
    for section in ("Scale", "Acceptance (issue 4)", "Table I", "Fig. 2", "Fig. 4a", "Fig. 4b", "Fig. 3",
                    "Replica cost and the split fast path", "Runs"):
        assert f"## {section}" in md, section
    assert "paper (§IV-A)" in md and "paper test error (%)" in md
    for paper_value in ("0.78", "0.83", "0.82", "LeNet5-caffe", "vanilla SGD lr 0.1, weight decay 1e-4, batch 100, "
                        "100 epochs", "γ = 1e-4, × 0.5 every 25 epochs", "about 0.4%", "below 4 bits"):
        assert paper_value in md, paper_value
    t1 = _measured(results, "table1")["rows"]
    assert f"| `R0` | 0 | split | 0.78 | {t1['R0']['test_error']:.2f} |" in md  # paper beside measured
    assert results["command"] in md
    assert "reinit off" in md  # the quick scale says why it keeps the default init
    for name in FIGURES:
        assert f"({name})" in md


def test_owner_pearson_is_one_before_attacks_and_independents_are_not_detected(quick) -> None:
    _, results, _, _ = quick
    rows = _measured(results, "table1")["rows"]
    for name in marked_runs(TEST):
        assert rows[name]["pearson"] == pytest.approx(1.0, abs=1e-6) and rows[name]["detected"], name
        assert rows[name]["payload_size"] == 1800
    assert "pearson" not in rows["plain"]
    for name, s in _measured(results, "fig4a")["series"].items():
        assert s["pearson"][0] == pytest.approx(1.0, abs=1e-6), name
    fp = _measured(results, "acceptance")["false_positives"]
    assert fp["n_models"] == 21 and fp["n_detected"] == 0 and fp["min_p_value"] > 1e-6
    assert abs(fp["max_pearson"]) < 0.12


def test_quick_measurements_are_complete(quick) -> None:
    _, results, _, _ = quick
    sc = TEST
    f4a = _measured(results, "fig4a")
    assert set(f4a["series"]) == set(marked_runs(sc))
    for s in f4a["series"].values():
        assert s["epochs"] == list(range(sc.train.epochs + 1)) and len(s["pearson"]) == sc.train.epochs + 1
        assert all(-1.0 <= p <= 1.0 for p in s["pearson"]) and s["after"]["pearson"] == pytest.approx(s["pearson"][-1])
    sweep = f4a["lr_sweep"]
    assert set(sweep) == {"0.01"} and set(sweep["0.01"]) == {"R0", "R4"}
    for name, v in sweep["0.01"].items():
        assert len(v["pearson"]) == sc.train.epochs + 1 and v["pearson"][0] == f4a["series"][name]["pearson"][0]
        assert v["after"]["pearson"] == pytest.approx(v["pearson"][-1])
    assert results["runs"]["R4-ft-lr0.01"]["spec"]["lr"] == 0.01
    f4b = _measured(results, "fig4b")
    assert [r["bits"] for r in f4b["fixed_point"]] == list(range(2, 17)) and set(f4b["roundtrip"]) == {
        "fp16", "bf16", "int8"}
    by_bits = {r["bits"]: r for r in f4b["fixed_point"]}
    assert by_bits[16]["pearson"] > 0.999 and by_bits[2]["pearson"] < by_bits[16]["pearson"]
    assert f4b["roundtrip"]["fp16"]["pearson"] > 0.999
    f3 = _measured(results, "fig3")
    assert f3["layer"] == "conv2" and f3["init_matches_hook"] and 0 < f3["watermarked"] < f3["parameters"]
    for st in f3["stages"].values():
        assert len(st["edges"]) == len(st["counts_all"]) + 1 and sum(st["counts_all"]) == f3["parameters"]
        assert sum(st["counts_watermarked"]) == f3["watermarked"] and 0 <= st["ks_p_value"] <= 1
    f2 = _measured(results, "fig2")
    assert set(f2["runs"]) == {"plain", *marked_runs(sc)} and f2["plain_positions_of"] == "R4"
    for v in f2["runs"].values():
        assert v["steps"] == list(sc.landscape_steps) and v["n"] == 1800
        assert all(len(v["rise"][k]) == len(sc.landscape_steps) for k in ("watermarked", "free"))
        assert all(g > 0 for g in v["grad_abs_mean"].values())
        assert v["rise"]["watermarked"][-1] > 0  # 4·s of noise on 1,800 weights costs loss
    cost = _measured(results, "overhead")["cost"]
    assert set(cost["cases"]) == {"plain", "R1-full", "R1-split", "R4-full", "R4-split"}
    assert cost["cases"]["plain"]["ratio"] == 1.0 and all(len(c["rounds_ms"]) == 3 for c in cost["cases"].values())
    assert cost["cases"]["R4-full"]["median_ms"] > cost["cases"]["plain"]["median_ms"]
    acc = _measured(results, "acceptance")
    assert len(acc["criteria"]) == 8 and acc["criteria"]["payload_values"]["passed"]
    assert all({"value", "threshold", "passed"} <= set(c) for c in acc["criteria"].values())
    assert acc["all_passed"] is all(c["passed"] for c in acc["criteria"].values())
    assert acc["step_cost_ratio"] == cost["cases"]["R4-split"]["ratio"]  # one measurement, shared


def test_rerun_without_force_refuses_before_training(quick) -> None:
    out, _, _, _ = quick
    before = (out / "results.json").read_bytes()
    messages: list[str] = []
    with pytest.raises(OutputExistsError):
        run(out, quick=True, progress=messages.append)
    assert messages == [] and (out / "results.json").read_bytes() == before


def test_render_regenerates_readme_and_figures(quick, tmp_path: Path) -> None:
    out, _, _, _ = quick
    readme = (out / "README.md").read_text()
    (out / "README.md").unlink()
    (out / FIGURES[0]).unlink()
    written = render(out / "results.json")
    assert (out / "README.md").read_text() == readme
    assert report.is_png(out / FIGURES[0]) and out / "README.md" in written
    other = tmp_path / "copy"
    render(out / "results.json", other)
    assert (other / "README.md").read_text() == readme
    with pytest.raises(OutputExistsError):
        render(out / "results.json", other)
    reports.render(out / "results.json", tmp_path / "dispatched")  # what `netmark report` uses
    assert (tmp_path / "dispatched" / "README.md").read_text() == readme


def test_cli_reproduce_quick_runs(tmp_path: Path) -> None:
    """Through the CLI at the quick scale: `--runs R0` trains that run alone into the cache (its record, with the
    Pearson after fixed-point compression), a second call reads it back."""
    target, cache = tmp_path / "cli", tmp_path / "cache"
    args = ["reproduce", "tartaglione", "--quick", "--runs", "R0", "--out", str(target), "--cache-dir", str(cache),
            "--quiet"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and not (target / "README.md").exists()
    runs = json.loads((target / "runs.json").read_text())
    r0 = runs["runs"]["R0"]
    assert runs["experiment"] == "tartaglione2021" and runs["timing"]["cached_runs"] == 0
    assert r0["pearson"] == pytest.approx(1.0) and r0["pearson_fixed_point"]["16"] > 0.999
    assert len(r0["history"]) == _QUICK.train.epochs
    again = CliRunner().invoke(app, [*args, "--force"])
    assert again.exit_code == 0 and json.loads((target / "runs.json").read_text())["timing"]["cached_runs"] == 1


def test_scales_and_plan() -> None:
    assert {"quick", "cpu"} <= set(SCALES)
    cpu = get_scale(None)
    assert cpu.name == "cpu" and cpu.dataset == "fashion-mnist" and cpu.model == "lenet5" and cpu.layer == "conv2"
    t = cpu.train
    assert (t.optimizer, t.lr, t.momentum, t.weight_decay, t.batch_size) == (
        PAPER_TRAIN.optimizer, PAPER_TRAIN.lr, 0.0, 1e-4, 100)
    assert cpu.reinit and cpu.logo == (20, 30) and cpu.gamma == 1e-4 and 16 in cpu.replicas
    assert get_scale(None, quick=True).name == "quick"
    with pytest.raises(ConfigError):
        get_scale("huge")
    with pytest.raises(ConfigError, match="replicas"):
        Scale(name="x", dataset="digits", model="simple-cnn", layer="conv2", train=t, small_train=t, replicas=(0, 4))
    for name in SCALES:
        sc = get_scale(name)
        runs = plan(sc)
        for exp in EXPERIMENTS:
            assert set(exp.resolve_runs(sc)) <= set(runs), (name, exp.name)
        assert sum(r.startswith("independent-") for r in runs) >= 20
        marked = [runs[r] for r in marked_runs(sc)]
        assert len({(s.model_seed, s.train_seed, s.key_seed, s.payload_shape) for s in marked}) == 1
        assert runs[FULL_RUN].replica_batch == "full" and runs["R4"].replica_batch == "split"
        assert all(runs[f"{m.name}-ft"].parent == m.name for m in marked)
    assert "R16-ft" in plan(cpu) and "R16" not in plan(get_scale("quick"))
    # γ variants: R = 4 with another γ, fine-tuned too; the scale's γ stays out of the run record
    assert cpu.gamma_variants == (2.5e-3,)
    runs = plan(cpu)
    assert runs["R4-g0.0025"].gamma == 2.5e-3 and runs["R4-g0.0025-ft"].parent == "R4-g0.0025"
    assert "gamma" not in runs["R4"].to_dict() and runs["R4-g0.0025"].to_dict()["gamma"] == 2.5e-3
    for bad in ((0.0,), (cpu.gamma,)):
        with pytest.raises(ConfigError, match="gamma_variants"):
            replace(cpu, gamma_variants=bad)
    # attacker-lr sweep: R0, R4 and the largest R fine-tuned at each further lr
    assert {"R0-ft-lr0.01", "R4-ft-lr0.001", "R16-ft-lr0.01"} <= set(runs)
    assert runs["R0-ft-lr0.01"].lr == 0.01 and "lr" not in runs["R0-ft"].to_dict()
    assert schedule_of(cpu, runs["R4-ft-lr0.001"]).lr == 0.001 and schedule_of(cpu, runs["R4-ft"]).lr == cpu.train.lr
    with pytest.raises(ConfigError, match="finetune_lrs"):
        replace(cpu, finetune_lrs=(cpu.train.lr,))


def test_results_that_predate_an_experiment_still_render(quick, tmp_path: Path) -> None:
    """Old results (the committed cpu-scale report predates Fig. 2) render, the missing part marked as such."""
    out, _, _, _ = quick
    old = json.loads((out / "results.json").read_text())
    del old["experiments"]["fig2"], old["experiments"]["overhead"], old["seeds"]["landscape_seed"]
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.json").write_text(json.dumps(old))
    written = reports.render(tmp_path / "old" / "results.json", tmp_path / "re")
    md = (tmp_path / "re" / "README.md").read_text()
    assert "## Fig. 2 — not measured" in md and "## Replica cost and the split fast path — not measured" in md
    assert "## Fig. 4a" in md and "## Fig. 2 — the loss landscape" not in md
    assert not (tmp_path / "re" / FIGURES[3]).exists() and report.is_png(tmp_path / "re" / FIGURES[0])
    assert tmp_path / "re" / "README.md" in written


# ----------------------------------------------------------------------------- paper vs official-code (issue 18)

VTEST = replace(TEST, command="netmark reproduce tartaglione-variants --quick (tests: 2 epochs)")


def test_variant_study_shares_the_reproductions_runs_and_compares_both(quick, tmp_path: Path) -> None:
    from netmark.experiments.tartaglione import variants

    _, _, _, cache = quick
    vplan = variants.variant_plan(VTEST)
    assert set(vplan) == {"R0", "R4", "R0-ft", "R4-ft", "code-R0", "code-R4", "code-R0-ft", "code-R4-ft"}
    assert vplan["R4"] == plan(VTEST)["R4"] and vplan["code-R4"].variant == "official-code"
    assert vplan["code-R4-ft"].parent == "code-R4" and "variant" not in vplan["R4"].to_dict()
    messages: list[str] = []
    res = variants.run(tmp_path / "v", scale=VTEST, cache_dir=cache, progress=messages.append)
    assert res["timing"]["cached_runs"] == 4  # the paper runs came from the reproduction's cache
    m = res["experiments"]["compare"]["measured"]
    rows = m["rows"]
    assert set(rows) == {"R0", "R4", "code-R0", "code-R4"} and m["outlier_ks"] == [4.0, 5.0, 6.0, 7.0, 8.0]
    for name, r in rows.items():
        assert r["pearson"] == pytest.approx(1.0) and r["variant"] == ("paper" if name[0] == "R" else "official-code")
        assert set(r["outlier_reset"]) == {"4", "5", "6", "7", "8"} and "8" in r["fixed_point"]
        assert 0 <= r["ks_min_p_value"] <= 1 and len(r["finetune"]["pearson_by_epoch"]) == VTEST.train.epochs + 1
    # ±10 amidst weights of spread < 1: the outlier reset finds the official code's payload, not the paper's
    assert rows["code-R4"]["outlier_reset"]["4"]["reset"] > 1000 > 10 > rows["R4"]["outlier_reset"]["8"]["reset"]
    assert rows["code-R4"]["outlier_reset"]["4"]["pearson"] < 0.5 and rows["R4"]["outlier_reset"]["8"]["pearson"] > 0.99
    assert rows["code-R4"]["fixed_point"]["8"]["pearson"] > rows["R4"]["fixed_point"]["8"]["pearson"]
    md = (tmp_path / "v" / "README.md").read_text()
    assert "## Comparison" in md and "## Outlier reset" in md and "`code-R4`" in md and "NOT the paper" in md
    again = reports.render(tmp_path / "v" / "results.json", tmp_path / "again")  # `netmark report` dispatches to it
    assert (tmp_path / "again" / "README.md").read_text() == md and len(again) == 1


def test_variant_study_scales() -> None:
    from netmark.experiments.tartaglione import variants

    cpu, lr = variants.get_scale(None), variants.get_scale("cpu-lr0.01")
    assert variants.get_scale(None, quick=True).name == "quick" and cpu.name == "cpu"
    assert (cpu.train, cpu.train_size, cpu.reinit) == (SCALES["cpu"].train, SCALES["cpu"].train_size, True)
    assert lr.train.lr == 0.01 and not lr.reinit and lr.train.epochs == 20 and lr.train_size == 12000
    assert "tartaglione-variants" in cpu.command and "--scale cpu-lr0.01" in lr.command
    for sc in (cpu, lr):  # the paper runs are the reproduction's own specs (shared cache fingerprints)
        vp, p = variants.variant_plan(sc), plan(sc)
        assert all(vp[n] == p[n] for n in ("R0", "R4", "R0-ft", "R4-ft"))
    with pytest.raises(ConfigError):
        variants.get_scale("huge")
