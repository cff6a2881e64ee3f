"""The Uchida et al. 2017 reproduction: one quick run (digits + simple-cnn) shared by the tests marked slow
(`pytest -m slow`); CI runs the whole pipeline once on a cut-down scale (:func:`test_tiny_scale_end_to_end`)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from netmark import reports
from netmark.bench import report
from netmark.errors import ConfigError, OutputExistsError
from netmark.experiments.uchida import EXPERIMENTS, SCALES, get_scale, plan, render, run
from netmark.experiments.uchida.render import FIGURES
from netmark.methods.uchida import PAPER_TRAIN


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], list[str]]:
    out = tmp_path_factory.mktemp("uchida-quick")
    messages: list[str] = []
    threads = torch.get_num_threads()
    results = run(out, quick=True, progress=messages.append)
    assert torch.get_num_threads() == threads  # the quick scale's single thread is scoped to the run
    return out, results, messages


def _measured(results: dict[str, Any], name: str) -> dict[str, Any]:
    return results["experiments"][name]["measured"]


def test_tiny_scale_end_to_end(tmp_path: Path) -> None:
    """Every experiment of the reproduction on a cut-down quick scale: every file, section and run, valid PNGs,
    the owner's key detected, and the report rebuilt from results.json alone."""
    q = get_scale("quick")
    tiny = replace(q, name="tiny", train=replace(q.train, epochs=3, milestones=()), bits=64, capacity_bits=(64,),
                   capacity_train=replace(q.capacity_train, epochs=2), prune_rates=(0.0, 0.5, 0.9),
                   table7_steps=30, small_train=replace(q.small_train, epochs=1), n_independent=20)
    out = tmp_path / "tiny"
    results = run(out, scale=tiny)
    for name in ("results.json", "README.md", *FIGURES):
        assert (out / name).is_file(), name
    for name in FIGURES:
        assert report.is_png(out / name), name
    assert set(results["experiments"]) == {e.name for e in EXPERIMENTS}
    assert set(results["runs"]) == {r for e in EXPERIMENTS for r in e.resolve_runs(tiny)}
    md = (out / "README.md").read_text()
    for section in ("Table 4", "Table 6", "Table 7", "Table 8", "Fig. 1", "Fig. 2", "Fig. 5"):
        assert section in md, section
    (out / "README.md").unlink()
    render(out / "results.json")
    assert (out / "README.md").read_text() == md


@pytest.mark.slow  # the quick scale's reproduction (minutes on CI's 2 cores): pytest -m slow
def test_quick_run_writes_every_file_and_section(quick) -> None:
    out, results, messages = quick
    for name in ("results.json", "README.md", *FIGURES):
        assert (out / name).is_file(), name
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["experiment"] == "uchida2017"
    assert set(on_disk["experiments"]) == {e.name for e in EXPERIMENTS}
    assert {"table4", "table6", "table7", "table8", "fig1", "fig2", "fig5", "overwrite", "acceptance"} <= set(
        on_disk["experiments"])
    assert on_disk["netmark_version"] and on_disk["scale"]["name"] == "quick"
    assert on_disk["scale"]["dataset"] == "digits" and on_disk["scale"]["model"] == "simple-cnn"
    assert on_disk["seeds"]["key_seed"] == 2017 and len(on_disk["seeds"]["independent_model_seeds"]) == 20
    for name, rec in on_disk["runs"].items():
        assert rec["seconds"] >= 0 and "spec" in rec, name
    # each model is trained once: every run the experiments need appears exactly once
    needed = {r for e in EXPERIMENTS for r in e.resolve_runs(get_scale("quick"))}
    assert set(on_disk["runs"]) == needed
    assert on_disk["timing"]["total_seconds"] > 0
    assert any("training random" in m for m in messages) and messages[-1].startswith("done")


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
    assert "paper test err" in md and "paper BER" in md and "paper E_R" in md
    for paper_value in ("8.04", "7.97", "8.37", "0.531", "1.066", "7.989", "7.69", "7.88", "0.309"):
        assert paper_value in md, paper_value
    assert "digits" in md and "simple-cnn" in md and results["command"] in md
    assert "Acceptance criteria" in md and "| ber owner | 0.000 | == 0 | PASS |" in md
    for name in FIGURES:
        assert f"({name})" in md


@pytest.mark.slow  # the quick scale's reproduction (minutes on CI's 2 cores): pytest -m slow
def test_quick_acceptance_detects_owner_and_no_false_positives(quick) -> None:
    _, results, _ = quick
    acc = _measured(results, "acceptance")
    assert acc["fidelity"]["ber"] == 0.0 and acc["fidelity"]["detected"]
    assert acc["pruned_65"]["ber"] == 0.0
    assert acc["finetuned_same_domain"]["ber"] == 0.0
    fp = acc["false_positives"]
    assert fp["n_models"] >= 20 and fp["n_detected"] == 0 and fp["rate"] == 0.0
    assert fp["max_matched_bits"] < fp["total_bits"] and fp["min_p_value"] > 1e-6
    assert acc["all_passed"] is all(c["passed"] for c in acc["criteria"].values())


@pytest.mark.slow  # the quick scale's reproduction (minutes on CI's 2 cores): pytest -m slow
def test_quick_measurements_follow_the_paper(quick) -> None:
    _, results, _ = quick
    t4 = _measured(results, "table4")
    assert t4["random"]["ber"] == 0.0
    assert t4["random"]["embed_loss"] < min(t4["direct"]["embed_loss"], t4["diff"]["embed_loss"])
    f5 = _measured(results, "fig5")
    asc = f5["ascending"]
    assert asc[0]["ber"] == 0.0 and asc[-1]["embed_loss"] > asc[0]["embed_loss"]
    assert len(asc) == len(f5["rates"]) == len(f5["descending"]) == len(f5["random"])
    t7 = _measured(results, "table7")
    assert t7["sum"]["0"]["weight_distance"] == 0.0 and t7["sum"]["0"]["ber"] > 0.3
    assert t7["sum"]["100"]["ber"] == 0.0 and t7["sum"]["100"]["weight_distance"] > 0
    t6 = _measured(results, "table6")
    assert set(t6["cells"]) == {"conv2", "fc1"} and set(t6["cells"]["conv2"]) == {"64", "512"}
    assert t6["cells"]["conv2"]["512"]["ber"] > 0  # T > M = 288: overdetermined, as in the paper
    ow = _measured(results, "overwrite")
    assert ow["attacker_detected"] and ow["attacker_ber"] < 0.1 and 0.0 <= ow["owner_ber"] <= 1.0
    t8 = _measured(results, "table8")
    assert t8["same"]["ber_after"] == 0.0 and t8["different"]["test_error"] < 0.2
    hist = _measured(results, "fig2")["random"]
    assert hist["embedded_min"] > 0.5 and len(hist["not_embedded"]) == 128


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
    (out / FIGURES[2]).unlink()
    written = render(out / "results.json")
    assert (out / "README.md").read_text() == readme
    assert report.is_png(out / FIGURES[2]) and out / "README.md" in written
    # elsewhere: the generic dispatcher (what `netmark report` calls); no silent overwrite there
    other = tmp_path / "copy"
    reports.render(out / "results.json", other)
    assert (other / "README.md").read_text() == readme
    with pytest.raises(OutputExistsError):
        reports.render(out / "results.json", other)


def test_report_helpers(tmp_path: Path) -> None:
    assert report.fmt(None) == report.fmt(float("nan")) == "—"
    assert report.fmt(0.5) == "0.500" and report.fmt(3) == "3" and report.pct(0.0797) == "7.97"
    table = report.markdown_table(["a", "b"], [[1, "x|y"], [None, 0.25]])
    assert table.splitlines()[2] == "| 1 | x\\|y |" and "| — | 0.250 |" in table
    p = report.write_json(tmp_path / "r.json", {"x": float("nan"), "t": (1, 2)})
    assert json.loads(p.read_text()) == {"x": None, "t": [1, 2]}
    with pytest.raises(OutputExistsError):
        report.write_json(p, {})
    (tmp_path / "bad.json").write_text(json.dumps({"experiment": "nobody2099"}))
    with pytest.raises(ConfigError, match="not a known reproduction"):
        reports.render(tmp_path / "bad.json")


def test_scales_and_plan() -> None:
    assert {"quick", "cpu", "paper"} <= set(SCALES)
    paper = get_scale("paper")
    assert paper.train == PAPER_TRAIN and paper.train.epochs == 200
    assert paper.model == "wrn" and paper.layer == "conv2.0.conv2" and paper.bits == 256
    assert get_scale(None).name == "cpu" and get_scale(None, quick=True).name == "quick"
    with pytest.raises(ConfigError):
        get_scale("huge")
    for name in SCALES:
        sc = get_scale(name)
        runs = plan(sc)
        for exp in EXPERIMENTS:
            assert set(exp.resolve_runs(sc)) <= set(runs), (name, exp.name)
        assert sum(r.startswith("independent-") for r in runs) >= 20


@pytest.mark.slow
def test_full_cpu_scale(tmp_path: Path) -> None:
    results = run(tmp_path, scale="cpu")
    acc = _measured(results, "acceptance")
    assert acc["fidelity"]["ber"] == 0.0 and acc["false_positives"]["n_detected"] == 0
    assert acc["pruned_65"]["ber"] == 0.0 and acc["finetuned_same_domain"]["ber"] == 0.0
    assert abs(acc["fidelity"]["gap_pp"]) < 1.0


@pytest.mark.slow  # the quick scale's reproduction (minutes on CI's 2 cores): pytest -m slow
def test_cli_report_and_reproduce_refusals(quick, tmp_path: Path) -> None:
    """`netmark report DIR` re-renders from results.json; `reproduce` refuses unknown papers and existing output."""
    from typer.testing import CliRunner

    from netmark.cli import app

    out, _, _ = quick
    runner = CliRunner()
    r = runner.invoke(app, ["report", str(out), "--out", str(tmp_path / "again")])
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "again" / "README.md").read_text() == (out / "README.md").read_text()
    r = runner.invoke(app, ["reproduce", "nosuchpaper", "--quick", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "unknown reproduction 'nosuchpaper'" in r.stderr
    r = runner.invoke(app, ["reproduce", "uchida", "--quick", "--out", str(out)])
    assert r.exit_code == 2 and "already exists" in r.stderr and "--force" in r.stderr
