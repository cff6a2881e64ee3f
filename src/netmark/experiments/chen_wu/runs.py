"""The runs of :mod:`.spec`'s ``STUDY`` (:data:`RUNS`): their data roles, how a protected run trains, their records."""

from __future__ import annotations

from typing import Any

from netmark.access import (
    AntiPiracyTransform,
    ProtectConfig,
    TransformConfig,
    protect,
    transform_from_key,
    transform_key,
)
from netmark.access.protect import PROTECT_VERSION
from netmark.bench.reproduce import make_run
from netmark.bench.runner import Runner, Runs, Trained
from netmark.data import ArrayDataset, load
from netmark.errors import ConfigError
from netmark.keys import WatermarkKey
from netmark.training import evaluate, model_device

from .spec import STUDY, RunSpec


def key_summary(key: WatermarkKey) -> dict[str, Any]:
    return {"method": key.method, "seed": key.seed, "transform": key.config.get("transform"),
            "fingerprint": key.fingerprint}


def transform_of(t: Trained) -> AntiPiracyTransform | None:
    """The run's secret transform (its ``key``), on the model's device (None: the baseline)."""
    return None if t.key is None else transform_from_key(t.key).to(model_device(t.model))


def authorized_accuracy(t: Trained) -> float | None:
    """Test accuracy through the run's transform (None: the baseline), evaluated once."""
    if "authorized_accuracy" not in t.memo:
        g = transform_of(t)
        t.memo["authorized_accuracy"] = None if g is None else evaluate(t.model, t.test, transform=g)["accuracy"]
    return t.memo["authorized_accuracy"]


def _record(t: Trained) -> dict[str, Any]:
    return {} if t.key is None else {"authorized_accuracy": authorized_accuracy(t)}


def _load(runner: Runner, role: str) -> tuple[ArrayDataset, ArrayDataset]:
    sc = runner.scale
    if role != "main":
        raise ConfigError(f"unknown data role {role!r}")
    return (load(sc.dataset, "train", data_dir=runner.data_dir, train_size=sc.train_size, split_seed=sc.split_seed),
            load(sc.dataset, "test", data_dir=runner.data_dir))


def protect_config(runner: Runner, spec: RunSpec) -> ProtectConfig:
    sc = runner.scale
    return ProtectConfig(TransformConfig(spec.transform, sigma=sc.sigma, p=sc.p, hidden=sc.hidden,  # type: ignore[arg-type]
                                         seed=spec.key_seed), alpha=sc.alpha, beta=sc.beta, gamma=sc.gamma)


def _method_part(runner: Runner, spec: RunSpec) -> dict[str, Any] | None:
    if spec.transform is None:
        return None
    return {"name": "chen-wu", "version": PROTECT_VERSION, "config": protect_config(runner, spec).to_dict()}


def _describe(runner: Runner, spec: RunSpec) -> str:
    return "unprotected baseline" if spec.transform is None else f"{spec.transform} transform"


def _score(runner: Runner, t: Trained) -> str:
    return f"authorized {100 * (authorized_accuracy(t) or 0.0):.2f}%"


def _train(runner: Runner, spec: RunSpec) -> Trained:
    """The baseline (plain training), or a model protected with its transform (:func:`netmark.access.protect`)."""
    if spec.transform is None:
        return runner.train(spec)
    tr, te = runner.data(spec.data)
    cfg = runner.train_config(spec)
    runner.announce(spec, spec.arch, tr, cfg)
    result = protect(runner.fresh_model(tr, spec.model_seed, spec.arch), tr, protect_config(runner, spec), cfg,
                     eval_data=te)
    return runner.trained(spec, result.model, transform_key(result.transform), te, len(tr),
                          history=result.history.history)


def _model(runner: Runner, spec: RunSpec) -> str:
    return spec.arch


def _scale_record(runner: Runner) -> dict[str, Any]:
    tr = runner.data("main")[0]
    return {"model_parameters": {a: sum(p.numel() for p in runner.fresh_model(tr, 0, a).parameters())
                                 for a, _ in runner.scale.archs},
            "raw_pass": ProtectConfig().raw_pass,
            "raw_pass_batchnorm": "one batch [G(x); x]: shared batch statistics in training, their running "
                                  "averages when deployed"}


RUNS = Runs(STUDY, _load, key_summary,
            ("epoch", "lr", "loss", "task_loss", "raw_correct_prob", "distortion", "train_accuracy", "test_accuracy",
             "seconds"),
            describe=_describe, score=_score, record=_record, train=_train, method_part=_method_part, model=_model,
            scale_record=_scale_record, devices=True)
run = make_run(__package__, STUDY, "digits, under two minutes", "``quick``/``cpu``")
