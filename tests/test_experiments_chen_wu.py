"""The Chen & Wu 2018 reproduction: one tiny run (digits, simple CNN) shared by the tests."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from netmark.bench import report
from netmark.errors import ConfigError, OutputExistsError
from netmark.experiments.chen_wu import EXPERIMENTS, SCALES, Scale, get_scale, plan, render, run
from netmark.experiments.chen_wu.render import FIGURES
from netmark.experiments.chen_wu.spec import quarter_schedule

TINY = replace(SCALES["quick"], name="tiny", archs=(("simple-cnn", 12),), input_only_trials=3, pair_fractions=(1.0,),
               pair_trials=1, pair_epochs=1, attack_test_size=200)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], list[str], Path]:
    out = tmp_path_factory.mktemp("chen-wu-tiny")
    cache = tmp_path_factory.mktemp("chen-wu-cache")
    messages: list[str] = []
    results = run(out, scale=TINY, progress=messages.append, cache_dir=cache)
    return out, results, messages, cache


def _measured(results: dict[str, Any], name: str) -> dict[str, Any]:
    return results["experiments"][name]["measured"]


def test_run_writes_every_file_section_and_run_once(tiny) -> None:
    out, results, messages, _ = tiny
    for name in ("results.json", "README.md", *FIGURES):
        assert (out / name).is_file(), name
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["experiment"] == "chen-wu2018" and "11,687,623" in on_disk["paper"]
    assert set(on_disk["experiments"]) == {"table2", "fig2", "table3", "acceptance"}
    assert set(on_disk["runs"]) == {"simple-cnn-baseline", "simple-cnn-fixed", "simple-cnn-learned",
                                    "simple-cnn-generator"}
    for name, rec in on_disk["runs"].items():
        assert len(rec["history"]) == 12 and (("authorized_accuracy" in rec) == (name != "simple-cnn-baseline"))
        assert rec["key"]["method"] == "chen-wu" if name != "simple-cnn-baseline" else "key" not in rec
    assert messages[-1].startswith("done") and sum(m.startswith("training ") for m in messages) == 4
    for name in FIGURES:
        assert report.is_png(out / name) and (out / name).stat().st_size > 2000, name


def test_measurements_are_consistent(tiny) -> None:
    _, results, _, _ = tiny
    t2 = _measured(results, "table2")["rows"]["simple-cnn"]
    runs = results["runs"]
    for kind in ("fixed", "learned", "generator"):
        assert t2[kind]["authorized"] == pytest.approx(100 * runs[f"simple-cnn-{kind}"]["authorized_accuracy"])
        assert t2[kind]["unauthorized"] == pytest.approx(100 * runs[f"simple-cnn-{kind}"]["test_accuracy"])
    t3 = _measured(results, "table3")
    assert t3["test_size"] == 200
    rows = t3["rows"]["simple-cnn"]
    assert rows["fixed"]["one_pair"]["accuracy"] == pytest.approx(rows["fixed"]["authorized"])  # one pair breaks Fixed
    assert rows["generator"]["pair"]["1"]["trials"] == 1 and rows["generator"]["pair"]["1"]["pairs"] == 1437
    assert rows["generator"]["input_only"]["trials"] == 3 and "pair" not in rows["fixed"]
    crit = _measured(results, "acceptance")["criteria"]
    assert {"simple-cnn_generator_unauthorized_pct", "simple-cnn_input_only_vs_generator_mean_pct",
            "simple-cnn_pair_100_best_below_authorized_pp"} <= set(crit)
    assert _measured(results, "acceptance")["all_passed"] == all(c["passed"] for c in crit.values())
    fig2 = _measured(results, "fig2")
    assert len(fig2["raw"]) == 4 and fig2["transforms"]["fixed"]["max_abs"] == pytest.approx(0.1, abs=1e-6)


def test_readme_puts_paper_values_beside_measured(tiny) -> None:
    out, results, _, _ = tiny
    md = (out / "README.md").read_text()
    for section in ("Scale", "Acceptance (issue 5)", "Table 2", "Fig. 2", "Table 3", "Training curves", "Runs"):
        assert f"## {section}" in md, section
    assert "US patent 11,687,623 B2" in md
    for paper_value in ("91.80", "91.88", "2.76", "92.55", "86.00", "66.23", "40k iterations"):
        assert paper_value in md, paper_value
    g = _measured(results, "table2")["rows"]["simple-cnn"]["generator"]
    assert f"| simple-cnn | generator | {g['authorized']:.2f} | {g['unauthorized']:.2f} | 91.82 | 2.76 |" in md
    for name in FIGURES:
        assert f"({name})" in md


def test_cache_rerun_trains_nothing_and_render_rebuilds(tiny, tmp_path: Path) -> None:
    out, results, _, cache = tiny
    messages: list[str] = []
    again = run(tmp_path / "again", scale=TINY, progress=messages.append, cache_dir=cache)
    assert not any(m.startswith("training ") for m in messages)
    assert again["experiments"]["table2"]["measured"] == results["experiments"]["table2"]["measured"]
    with pytest.raises(OutputExistsError):
        run(out, scale=TINY)
    written = render(out / "results.json", tmp_path / "r")
    assert {p.name for p in written} == {"README.md", *FIGURES}
    assert (tmp_path / "r" / "README.md").read_text() == (out / "README.md").read_text()


def test_scales_plan_and_schedule() -> None:
    cpu = get_scale(None)
    assert cpu.name == "cpu" and cpu.dataset == "fashion-mnist" and dict(cpu.archs)["simple-cnn"] >= 8
    assert cpu.input_only_trials == 100 and cpu.pair_fractions == (0.1, 0.5, 1.0) and cpu.hidden == 16
    assert (cpu.alpha, cpu.beta, cpu.gamma, cpu.sigma, cpu.p) == (1.0, 1.0, 0.01, 0.1, 0.2)
    assert get_scale(None, quick=True).name == "quick"
    assert len(plan(cpu)) == 4 * len(cpu.archs)
    s = quarter_schedule(8)
    assert (s.lr, s.momentum, s.weight_decay, s.batch_size, s.milestones) == (0.1, 0.9, 5e-4, 128, (2, 4, 6))
    assert quarter_schedule(85).milestones == (21, 42, 64)  # the paper's 10k/20k/30k of 40k iterations
    assert {e.name for e in EXPERIMENTS} == {"table2", "fig2", "table3", "acceptance"}
    for bad in ({"archs": ()}, {"archs": (("simple-cnn", 0),)}, {"pair_fractions": (1.5,)}, {"pair_trials": 0},
                {"attack_test_size": 0}):
        with pytest.raises(ConfigError):
            replace(cpu, **bad)
    with pytest.raises(ConfigError):
        get_scale("nosuch")
    assert isinstance(get_scale(TINY), Scale)
    paper, gpu = get_scale("paper"), get_scale("gpu")
    assert dict(paper.archs) == {"simple-cnn": 85, "resnet20": 85} and paper.pair_trials == 100
    assert paper.clip_grad_norm is None and quarter_schedule(85).clip_grad_norm is None  # the paper clips nothing
    assert gpu.clip_grad_norm == cpu.clip_grad_norm == 5.0 and gpu.attack_test_size is None


def test_devices_are_checked_before_any_work(tmp_path: Path) -> None:
    import torch

    from netmark.bench.runner import Runner
    from netmark.experiments.chen_wu.runs import RUNS
    from netmark.experiments.uchida import get_scale as uchida_scale
    from netmark.experiments.uchida.runs import RUNS as UCHIDA

    with pytest.raises(ConfigError, match="unknown device"):
        Runner(RUNS, TINY, device="warp-drive")
    with pytest.raises(ConfigError, match="CPU only"):
        Runner(UCHIDA, uchida_scale(None, quick=True), device="cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA"):
            run(tmp_path / "out", scale=TINY, device="cuda")
        assert not (tmp_path / "out" / "results.json").exists()
    assert Runner(RUNS, TINY).train_config(plan(TINY)["simple-cnn-baseline"]).device == "cpu"
