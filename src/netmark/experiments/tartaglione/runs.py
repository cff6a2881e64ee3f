"""The runs of :mod:`.spec`'s ``STUDY`` (:data:`RUNS`): their data roles, the method that embeds them, their records."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from netmark.attacks import FixedPointConfig, fixed_point_model
from netmark.bench.measure import HistoryHook
from netmark.bench.reproduce import make_run
from netmark.bench.runner import Runner, Runs, Trained
from netmark.data import ArrayDataset, load
from netmark.errors import ConfigError
from netmark.keys import WatermarkKey
from netmark.methods.tartaglione import Tartaglione, TartaglioneConfig, demo_logo, init_seed, reinit
from netmark.training import evaluate, train

from .spec import STUDY, RunSpec, Scale

#: fixed-point widths whose owner Pearson a record carries (Fig. 4b's sweep; milliseconds per run)
RECORD_BITS: tuple[int, ...] = (16, 12, 10, 8, 6, 4)


def payload_of(shape: tuple[int, ...]) -> Tensor:
    """The ``demo_logo`` of ``shape = (3, h, w)``, flattened channel-first."""
    return demo_logo(shape[1], shape[2]).reshape(-1)


def method_config(scale: Scale, replicas: int, replica_batch: str, size: int, gamma: float | None = None,
                  variant: str | None = None) -> TartaglioneConfig:
    """The scale's Tartaglione config for R = ``replicas`` (``split``: the scale's fraction; ``full``: 1.0),
    with γ = ``gamma`` (``None``: the scale's) and the embedding ``variant`` (``None``: the paper's)."""
    return TartaglioneConfig(size=size, mu=scale.mu, sigma=scale.sigma, replicas=replicas, noise=scale.noise,
                             gamma=scale.gamma if gamma is None else gamma, gamma_step=scale.gamma_step,
                             gamma_decay=scale.gamma_decay,
                             replica_batch=replica_batch,  # type: ignore[arg-type]
                             replica_fraction=scale.replica_fraction if replica_batch == "split" else 1.0,
                             reinit=scale.reinit, max_layer_fraction=scale.max_layer_fraction,
                             variant=variant or "paper")  # type: ignore[arg-type]


def key_summary(key: WatermarkKey) -> dict[str, Any]:
    c = key.config
    return {"method": key.method, "seed": key.seed, "size": c.get("size"), "payload_shape": c.get("payload_shape"),
            "replicas": c.get("replicas"), "replica_batch": c.get("replica_batch"), "gamma": c.get("gamma"),
            "variant": c.get("variant", "paper"),
            "reinit": c.get("reinit"), "fingerprint": key.fingerprint}


def pearson_of(model: nn.Module, key: WatermarkKey) -> float:
    return float(Tartaglione.from_key(key).extract(model, key).details["pearson"])


def _record(trained: Trained) -> dict[str, Any]:
    """A run carrying the owner's key: its Pearson ρ now and after §IV's compression ("mask") to each of
    :data:`RECORD_BITS` bits, so that a partial run (``--runs``) still shows Fig. 4b's point."""
    if trained.key is None:
        return {}
    fx = {str(b): pearson_of(fixed_point_model(trained.model, FixedPointConfig(bits=b, rounding="mask")), trained.key)
          for b in RECORD_BITS}
    return {"pearson": pearson_of(trained.model, trained.key), "pearson_fixed_point": fx}


def _load(runner: Runner, role: str) -> tuple[ArrayDataset, ArrayDataset]:
    """``(train, test)`` for ``main`` / ``small``."""
    sc = runner.scale
    if role not in ("main", "small"):
        raise ConfigError(f"unknown data role {role!r}")
    tr = load(sc.dataset, "train", data_dir=runner.data_dir, split_seed=sc.split_seed,
              train_size=sc.train_size if role == "main" else sc.small_train_size)
    return tr, (load(sc.dataset, "test", data_dir=runner.data_dir) if role == "main" else runner.data("main")[1])


def _method(runner: Runner, spec: RunSpec) -> Tartaglione | None:
    if spec.replicas is None:
        return None
    size = len(payload_of(spec.payload_shape or runner.scale.payload_shape))
    return Tartaglione(method_config(runner.scale, spec.replicas, spec.replica_batch, size, spec.gamma, spec.variant))


def _describe(runner: Runner, spec: RunSpec) -> str:
    if spec.replicas is None:
        return "plain" + (f", N{spec.init} init" if spec.init else "")
    g = f", γ = {spec.gamma:g}" if spec.gamma is not None else ""
    v = f", {spec.variant} variant" if spec.variant is not None else ""
    return f"R = {spec.replicas}, {spec.replica_batch} replicas{g}{v}, payload {spec.payload_shape}"


def _score(runner: Runner, trained: Trained) -> str:
    return f"owner Pearson {pearson_of(trained.model, trained.owner):.4f}"


def _train(runner: Runner, spec: RunSpec) -> Trained:
    """A root run; a marked one embeds the scale's logo, a plain one may take the marked runs' Eq. 2 init."""
    tr, te = runner.data(spec.data)
    cfg = runner.train_config(spec)
    runner.announce(spec, runner.scale.model, tr, cfg)
    model = runner.fresh_model(tr, spec.model_seed)
    method = _method(runner, spec)
    if method is None:
        if spec.init is not None:  # the watermarked runs' Eq. 2 initialisation, without a watermark
            reinit(model, spec.init[0], spec.init[1], init_seed(spec.key_seed))
        result, key = train(model, tr, cfg, eval_data=te), None
    else:
        shape = spec.payload_shape or runner.scale.payload_shape
        key = method.create_key(model, seed=spec.key_seed, payload=payload_of(shape).reshape(shape))
        model, key, result = method.embed(model, tr, cfg, key=key, eval_data=te)
    return runner.trained(spec, model, key, te, len(tr), history=result.history)


def _attack_hook(parent: Trained, test: ArrayDataset) -> HistoryHook:
    """The owner's Pearson ρ and the test accuracy after every epoch of an attack."""
    return HistoryHook(lambda m: {"pearson": pearson_of(m, parent.owner),
                                  "test_accuracy": evaluate(m, test)["accuracy"]})


def _scale_record(runner: Runner) -> dict[str, Any]:
    model = runner.fresh_model(runner.data("main")[0], 0)
    n_params = sum(p.numel() for p in model.parameters())
    n = 3 * runner.scale.logo[0] * runner.scale.logo[1]
    return {"small_train_size_used": len(runner.data("small")[0]), "payload_size": n, "model_parameters": n_params,
            "watermarked_fraction": n / n_params,
            "layer_parameters": sum(p.numel() for p in model.get_submodule(runner.scale.layer).parameters())}


def _seed_record(runner: Runner) -> dict[str, Any]:
    return {"landscape_seed": runner.scale.landscape_seed}


RUNS = Runs(STUDY, _load, key_summary,
            ("epoch", "loss", "task_loss", "replica_loss", "tartaglione_gamma", "pearson", "train_accuracy",
             "test_accuracy", "seconds"),
            method=_method, describe=_describe, score=_score, record=_record, train=_train,
            attack_hook=_attack_hook, scale_record=_scale_record, seed_record=_seed_record, devices=True)
run = make_run(__package__, STUDY, "digits + simple-cnn, under a minute", "``quick``/``cpu``")
