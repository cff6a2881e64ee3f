"""The declarations every study shares (bench.spec, bench.study.Study) and the evaluation's typed runs."""

from __future__ import annotations

import dataclasses

import pytest

from netmark.bench.report import criterion
from netmark.bench.spec import RunSpecBase, ScaleBase, at_least
from netmark.errors import ConfigError
from netmark.evaluation.cells import BASELINE, Job, independent_run, marked_run
from netmark.evaluation.presets import preset
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


def test_shared_declaration_helpers() -> None:
    from netmark.bench.spec import independent_specs, pick_schedule
    from netmark.training import TrainConfig

    @dataclasses.dataclass(frozen=True)
    class Sc(ScaleBase):
        train: TrainConfig
        sizes: tuple[tuple[str, int], ...] = (("a", 1),)
        model_args: tuple[tuple[str, int], ...] = (("depth", 10),)

    d = Sc("s", TrainConfig(epochs=2, milestones=(1,))).to_dict()  # as results.json reads it back
    assert d["train"]["milestones"] == [1] and d["sizes"] == [["a", 1]] and d["model_args"] == {"depth": 10}
    seeds = Sc("s", TrainConfig(), model_seed=1, train_seed=2, key_seed=3).seeds
    assert seeds == {"model_seed": 1, "train_seed": 2, "key_seed": 3}

    @dataclasses.dataclass(frozen=True)
    class Run(RunSpecBase):
        OPTIONAL = ("lr",)
        schedule: str = "main"
        lr: float | None = None

    assert "lr" not in Run("r").to_dict() and Run("r", lr=0.1).to_dict()["lr"] == 0.1
    assert "parent" in Run("r").to_dict()  # only the OPTIONAL fields are left out while None
    ind = independent_specs(Run, 2, schedule="small")
    assert [(r.name, r.model_seed, r.train_seed, r.schedule) for r in ind] == [
        ("independent-00", 1000, 1000, "small"), ("independent-01", 1001, 1001, "small")]
    cfg = pick_schedule(Run("r", train_seed=7), {"main": TrainConfig(lr=0.1)}, lr=0.5)
    assert (cfg.seed, cfg.lr) == (7, 0.5)
    with pytest.raises(ConfigError, match="unknown schedule 'small'"):
        pick_schedule(ind[0], {"main": TrainConfig()})


def test_shared_measure_helpers() -> None:
    from torch import nn

    from netmark.bench.measure import HistoryHook, false_positives, independents_desc, series
    from netmark.methods.uchida import Uchida, UchidaConfig
    from netmark.models import build

    assert series([{"a": 1.0}, {}, {"a": 2.0}], "a", 0.5) == [0.5, None, 1.0]
    assert independents_desc(3, "mlp", "9 images", "1 epochs") == (
        "3 independent mlp (seeds 1000..1002, 9 images, 1 epochs)")
    models = [build("simple-cnn", in_channels=1, image_size=8, num_classes=10) for _ in range(2)]
    key = Uchida(UchidaConfig(layer="conv2", bits=16)).create_key(models[0], seed=1)
    block, scores = false_positives(models, key, "two models", extra=1)
    assert "scores" not in block and len(scores) == 2 and block["n_models"] == 2
    assert block["models"] == "two models" and block["extra"] == 1
    hook = HistoryHook(lambda m: {"params": float(sum(p.numel() for p in m.parameters()))})
    metrics = {"loss": 1.0}
    hook.on_epoch_end(nn.Linear(2, 1), 0, metrics)
    assert metrics == {"loss": 1.0, "params": 3.0} and hook.history == [metrics]
