"""The Fkirin et al. reproduction end to end on a tiny custom scale (digits, two optimizers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netmark.bench.report import is_png
from netmark.errors import ConfigError
from netmark.experiments.fkirin import SCALES, Scale, plan, render, run
from netmark.experiments.fkirin.render import acceptance
from netmark.experiments.fkirin.spec import SCHEMES, STUDY_SCHEMES

TINY = Scale(name="tiny", datasets=(("digits", None),), attacker_size=400, model_args={"hidden": [64]}, epochs=10,
             batch_size=32, optimizers=(("sgd", 0.05), ("adam", 0.003)), runs=2, finetune_epochs=2,
             scheme_finetune_epochs=2, per_batch=8, null_models=2, n_independent=3, threads=1, command="(test)")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("fkirin")
    return out, run(out, scale=TINY)


def test_every_run_is_planned_once() -> None:
    p = plan(TINY)
    study = [n for n, r in p.items() if r.scheme in STUDY_SCHEMES and not r.parent]
    assert len(study) == 1 * 2 * 2 * len(STUDY_SCHEMES)  # datasets × optimizers × runs × schemes
    assert all(n + "/ft" in p for n in study)
    assert {r.scheme for r in p.values() if r.scheme} == set(SCHEMES)
    assert len([n for n in p if "/independent/" in n]) == 3


def test_reproduction_measures_and_renders(results) -> None:
    out, res = results
    opt = res["experiments"]["optimizers"]["measured"]["rows"]["digits"]
    assert set(opt) == set(STUDY_SCHEMES) and set(opt["adi"]) == {"sgd", "adam"}
    for rows in opt.values():
        for r in rows.values():
            assert r["watermark"]["n"] == 2 and 0 <= r["watermark_ft"]["mean"] <= 100
    sch = res["experiments"]["schemes"]["measured"]["rows"]
    assert set(sch) == set(SCHEMES)
    assert all(len(r["sweep"]) == 2 for r in sch.values())
    assert sch["adi"]["labels_random"] and not sch["zhang-content"]["labels_random"]
    assert sch["zhang-content"]["calibrated"] and sch["zhang-content"]["null_mean_accuracy"] is not None
    fp = res["experiments"]["false_positives"]["measured"]["rows"]
    assert fp["adi"]["http"]["n"] == 3 and fp["adi"]["file"]["n"] == 3 and fp["adi"]["http_matches_file"]
    assert fp["deepsigns-white"]["http"]["n"] == 0  # white-box: no query verification
    readme = (out / "README.md").read_text()
    assert "Acceptance (issue 6)" in readme and "optimizers.png" in readme
    assert all(is_png(out / f) for f in ("optimizers.png", "finetuning.png"))
    crit = acceptance(res)
    assert crit["optimizer table: optimizers × runs × datasets"]["passed"] is False  # 2 × 2 × 1 is not the table
    assert json.loads((out / "results.json").read_text())["experiment"] == "fkirin2022"


def test_render_rebuilds_the_page(results, tmp_path) -> None:
    out, _ = results
    written = render(out / "results.json", tmp_path)
    assert (tmp_path / "README.md").read_text() == (out / "README.md").read_text()
    assert len(written) == 3


def test_presets_and_bad_scales() -> None:
    assert SCALES["cpu"].runs == 10 and len(SCALES["cpu"].optimizers) == 6 and len(SCALES["cpu"].datasets) == 2
    with pytest.raises(ConfigError):
        Scale(name="x", datasets=(), attacker_size=10)
    with pytest.raises(ConfigError):
        Scale(name="x", datasets=(("digits", None),), attacker_size=10, optimizers=(("lbfgs", 1.0),))
