"""The declarations every study shares (bench.spec, bench.study.Study) and the evaluation's typed runs."""

from __future__ import annotations

import dataclasses

import pytest

from netmark.bench.report import criterion
from netmark.bench.spec import RunSpecBase, ScaleBase, at_least
from netmark.errors import ConfigError
from netmark.evaluation.cells import BASELINE, Job, independent_run, marked_run
from netmark.evaluation.spec import preset
from netmark.experiments import chen_wu, fkirin, tartaglione, uchida, wang


def test_at_least_names_every_checked_field() -> None:
    @dataclasses.dataclass
    class S:
        a: int = 1
        b: int = 0

    at_least(S(), 1, "a")
    with pytest.raises(ConfigError, match=r"^b must be >= 1$"):
        at_least(S(), 1, "b")
    with pytest.raises(ConfigError, match=r"^a and b must be >= 1$"):
        at_least(S(), 1, "a", "b")


def test_scale_and_run_bases_keep_seeds_keyword_only() -> None:
    with pytest.raises(ConfigError, match="threads"):
        ScaleBase("s", threads=0)
    with pytest.raises(TypeError):
        RunSpecBase("r", 1)  # type: ignore[misc]
    r = RunSpecBase("r", parent="p", attack="finetune", key_seed=3)
    assert r.to_dict() == {"name": "r", "model_seed": 0, "train_seed": 0, "key_seed": 3, "parent": "p",
                           "attack": "finetune"}


@pytest.mark.parametrize("pkg, key_seed", [(chen_wu, 2018), (fkirin, 2022), (tartaglione, 2021), (uchida, 2017),
                                           (wang, 2020)])
def test_each_study_declares_itself(pkg, key_seed: int) -> None:
    study = pkg.spec.STUDY
    assert pkg.RUNS.study is study and study.id == pkg.EXPERIMENT_ID and study.experiments == pkg.EXPERIMENTS
    quick = study.get_scale("quick")
    assert study.get_scale(None, quick=True) is quick and study.get_scale(quick) is quick
    assert study.get_scale(None).name == "cpu"
    with pytest.raises(ConfigError, match="unknown scale"):
        study.get_scale("nosuch")
    # the per-paper key seed stays the default of a run that does not set one (it keys cached runs)
    assert pkg.RunSpec.__dataclass_fields__["key_seed"].default == key_seed == pkg.Scale.__dataclass_fields__[
        "key_seed"].default
    for exp in study.experiments:  # every @group expands, each run once, all in the plan
        runs = exp.resolve_runs(quick)
        assert len(runs) == len(set(runs)) and set(runs) <= set(study.plan(quick)) and not any(
            r.startswith("@") for r in runs)


def test_evaluation_runs_are_typed() -> None:
    assert [r.name for r in (BASELINE, marked_run("uchida"), independent_run(2))] == [
        "baseline", "marked-uchida", "independent-2"]
    cfg = preset("tiny", methods=["uchida"])
    assert Job("embed", cfg, "c", "uchida").run == marked_run("uchida")
    assert Job("independent", cfg, "c", index=2).name == "independent-2"
    with pytest.raises(ConfigError):
        _ = Job("attack", cfg, "c", "uchida").run


def test_criterion() -> None:
    assert criterion(0.2, "<= 0.5", 0.2 <= 0.5) == {"value": 0.2, "threshold": "<= 0.5", "passed": True}
