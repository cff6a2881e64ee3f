"""The runs of :mod:`.spec`'s ``STUDY``: their data roles, the methods that train them, their records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from netmark.attacks import FixedPointConfig, fixed_point_model
from netmark.bench.study import make_run
from netmark.data import ArrayDataset, load
from netmark.errors import ConfigError
from netmark.experiments.common import RunnerBase, TrainedBase
from netmark.keys import WatermarkKey
from netmark.methods.tartaglione import Tartaglione, TartaglioneConfig, demo_logo, init_seed, reinit
from netmark.training import TrainHook, evaluate, train

from .spec import STUDY, RunSpec, Scale

_HISTORY_KEYS = ("epoch", "loss", "task_loss", "replica_loss", "tartaglione_gamma", "pearson", "train_accuracy",
                 "test_accuracy", "seconds")


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


class PearsonHook(TrainHook):
    """Puts the owner's Pearson ρ (and the test accuracy) into the metrics after every epoch of an attack
    and keeps the history (``Finetune`` returns only the model)."""

    def __init__(self, key: WatermarkKey, test: ArrayDataset) -> None:
        self.key, self.test = key, test
        self.history: list[dict[str, float]] = []

    def on_epoch_end(self, model: nn.Module, epoch: int, metrics: dict[str, float]) -> None:
        metrics["pearson"] = pearson_of(model, self.key)
        metrics["test_accuracy"] = evaluate(model, self.test)["accuracy"]
        self.history.append(dict(metrics))


@dataclass
class Trained(TrainedBase):
    """A model of the reproduction, with the owner key it carries (own or inherited)."""

    HISTORY_KEYS: ClassVar[tuple[str, ...]] = _HISTORY_KEYS
    key_summary = staticmethod(key_summary)
    #: fixed-point widths whose owner Pearson a record carries (Fig. 4b's sweep; milliseconds per run)
    RECORD_BITS: ClassVar[tuple[int, ...]] = (16, 12, 10, 8, 6, 4)

    def _extra_record(self) -> dict[str, Any]:
        """A run carrying the owner's key: its Pearson ρ now and after §IV's compression ("mask") to each of
        :data:`RECORD_BITS` bits, so that a partial run (``--runs``) still shows Fig. 4b's point."""
        if self.key is None:
            return {}
        fx = {str(b): pearson_of(fixed_point_model(self.model, FixedPointConfig(bits=b, rounding="mask")), self.key)
              for b in self.RECORD_BITS}
        return {"pearson": pearson_of(self.model, self.key), "pearson_fixed_point": fx}


class Runner(RunnerBase[Scale, RunSpec, Trained]):
    """Loads the data of a :class:`Scale` and trains/derives runs on demand, each once."""

    STUDY = STUDY
    TRAINED = Trained
    DEVICES = True
    #: the step-cost measurement (``measure.step_costs``), shared by ``overhead`` and ``acceptance``.
    costs: dict[str, Any] | None = None

    def seed_record(self) -> dict[str, Any]:
        return {"landscape_seed": self.scale.landscape_seed}

    def _load(self, role: str) -> tuple[ArrayDataset, ArrayDataset]:
        """``(train, test)`` for ``main`` / ``small``."""
        sc = self.scale
        if role == "main":
            return (load(sc.dataset, "train", data_dir=self.data_dir, train_size=sc.train_size,
                         split_seed=sc.split_seed), load(sc.dataset, "test", data_dir=self.data_dir))
        if role == "small":
            return (load(sc.dataset, "train", data_dir=self.data_dir, train_size=sc.small_train_size,
                         split_seed=sc.split_seed), self.data("main")[1])
        raise ConfigError(f"unknown data role {role!r}")

    def _method(self, spec: RunSpec) -> Tartaglione | None:
        if spec.replicas is None:
            return None
        size = len(payload_of(spec.payload_shape or self.scale.payload_shape))
        return Tartaglione(method_config(self.scale, spec.replicas, spec.replica_batch, size, spec.gamma,
                                         spec.variant))

    def _describe(self, spec: RunSpec) -> str:
        if spec.replicas is None:
            return "plain" + (f", N{spec.init} init" if spec.init else "")
        g = f", γ = {spec.gamma:g}" if spec.gamma is not None else ""
        v = f", {spec.variant} variant" if spec.variant is not None else ""
        return f"R = {spec.replicas}, {spec.replica_batch} replicas{g}{v}, payload {spec.payload_shape}"

    def _owner_score(self, trained: Trained) -> str:
        assert trained.key is not None  # _summary asks for marked runs only
        return f"owner Pearson {pearson_of(trained.model, trained.key):.4f}"

    def _train(self, spec: RunSpec) -> Trained:
        tr, te = self.data(spec.data)
        cfg = self.train_config(spec)
        self.say(f"training {spec.name} ({self._describe(spec)}): {self.scale.model} on {len(tr)} {tr.name} images, "
                 f"{cfg.epochs} epochs")
        model = self.fresh_model(tr, spec.model_seed)
        method = self._method(spec)
        if method is None:
            if spec.init is not None:  # the watermarked runs' Eq. 2 initialisation, without a watermark
                reinit(model, spec.init[0], spec.init[1], init_seed(spec.key_seed))
            result, key = train(model, tr, cfg, eval_data=te), None
        else:
            shape = spec.payload_shape or self.scale.payload_shape
            key = method.create_key(model, seed=spec.key_seed, payload=payload_of(shape).reshape(shape))
            model, key, result = method.embed(model, tr, cfg, key=key, eval_data=te)
        return Trained(spec, model, key, te, len(tr), history=result.history)

    def _attack_hook(self, parent: Trained, test: ArrayDataset) -> PearsonHook:
        return PearsonHook(parent.key, test)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ results

    def scale_record(self) -> dict[str, Any]:
        tr = self.data("main")[0]
        model = self.fresh_model(tr, 0)
        n_params = sum(p.numel() for p in model.parameters())
        n = 3 * self.scale.logo[0] * self.scale.logo[1]
        return {"small_train_size_used": len(self.data("small")[0]), "payload_size": n, "model_parameters": n_params,
                "watermarked_fraction": n / n_params,
                "layer_parameters": sum(p.numel() for p in model.get_submodule(self.scale.layer).parameters())}


run = make_run(__package__, STUDY, "digits + simple-cnn, under a minute", "``quick``/``cpu``")
