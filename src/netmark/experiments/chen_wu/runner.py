"""The runs of :mod:`.spec`'s ``STUDY``: their data roles, the methods that train them, their records."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

from netmark.access import (
    AntiPiracyTransform,
    ProtectConfig,
    TransformConfig,
    protect,
    transform_from_key,
    transform_key,
)
from netmark.access.protect import PROTECT_VERSION
from netmark.bench.study import make_run
from netmark.data import ArrayDataset, load
from netmark.errors import ConfigError
from netmark.experiments.common import RunnerBase, TrainedBase
from netmark.keys import WatermarkKey
from netmark.training import evaluate, model_device

from .spec import STUDY, RunSpec, Scale

_HISTORY_KEYS = ("epoch", "lr", "loss", "task_loss", "raw_correct_prob", "distortion", "train_accuracy",
                 "test_accuracy", "seconds")


def key_summary(key: WatermarkKey) -> dict[str, Any]:
    return {"method": key.method, "seed": key.seed, "transform": key.config.get("transform"),
            "fingerprint": key.fingerprint}


@dataclass
class Trained(TrainedBase):
    """A model of the reproduction; ``key`` holds its secret transform (None: the baseline)."""

    HISTORY_KEYS: ClassVar[tuple[str, ...]] = _HISTORY_KEYS
    key_summary = staticmethod(key_summary)

    def transform(self) -> AntiPiracyTransform | None:
        """The run's secret transform, on the model's device (None: the baseline)."""
        return None if self.key is None else transform_from_key(self.key).to(model_device(self.model))

    @cached_property
    def authorized_accuracy(self) -> float | None:
        """Test accuracy through the run's transform (None: the baseline), evaluated once."""
        t = self.transform()
        return None if t is None else evaluate(self.model, self.test, transform=t)["accuracy"]

    def _extra_record(self) -> dict[str, Any]:
        return {} if self.key is None else {"authorized_accuracy": self.authorized_accuracy}


class Runner(RunnerBase[Scale, RunSpec, Trained]):
    """Loads the data of a :class:`Scale` and trains the runs on demand, each once."""

    STUDY = STUDY
    TRAINED = Trained
    DEVICES = True
    #: every attack of Table 3 (``measure.attack_results``), shared by ``table3`` and ``acceptance``.
    attacks: dict[str, Any] | None = None

    def _load(self, role: str) -> tuple[ArrayDataset, ArrayDataset]:
        sc = self.scale
        if role != "main":
            raise ConfigError(f"unknown data role {role!r}")
        return (load(sc.dataset, "train", data_dir=self.data_dir, train_size=sc.train_size, split_seed=sc.split_seed),
                load(sc.dataset, "test", data_dir=self.data_dir))


    def _model_name(self, spec: RunSpec) -> str:
        return spec.arch

    def protect_config(self, spec: RunSpec) -> ProtectConfig:
        sc = self.scale
        return ProtectConfig(TransformConfig(spec.transform, sigma=sc.sigma, p=sc.p, hidden=sc.hidden,  # type: ignore[arg-type]
                                             seed=spec.key_seed), alpha=sc.alpha, beta=sc.beta, gamma=sc.gamma)

    def _method_part(self, spec: RunSpec) -> dict[str, Any] | None:
        if spec.transform is None:
            return None
        return {"name": "chen-wu", "version": PROTECT_VERSION, "config": self.protect_config(spec).to_dict()}

    def _method(self, spec: RunSpec) -> None:
        return None

    def _describe(self, spec: RunSpec) -> str:
        return "unprotected baseline" if spec.transform is None else f"{spec.transform} transform"

    def _summary(self, trained: Trained) -> str:
        msg = f"  {trained.spec.name}: {trained.seconds:.0f} s, raw test accuracy {100 * trained.test_accuracy:.2f}%"
        if trained.authorized_accuracy is not None:
            msg += f", authorized {100 * trained.authorized_accuracy:.2f}%"
        return msg

    def _train(self, spec: RunSpec) -> Trained:
        if spec.transform is None:
            return super()._train(spec)
        tr, te = self.data(spec.data)
        cfg = self.train_config(spec)
        self.say(f"training {spec.name} ({self._describe(spec)}): {spec.arch} on {len(tr)} {tr.name} images, "
                 f"{cfg.epochs} epochs")
        model = self.fresh_model(tr, spec.model_seed, spec.arch)
        result = protect(model, tr, self.protect_config(spec), cfg, eval_data=te)
        return Trained(spec, result.model, transform_key(result.transform), te, len(tr),
                       history=result.history.history)

    def scale_record(self) -> dict[str, Any]:
        tr = self.data("main")[0]
        return {"model_parameters": {a: sum(p.numel() for p in self.fresh_model(tr, 0, a).parameters())
                                     for a, _ in self.scale.archs},
                "raw_pass": ProtectConfig().raw_pass,
                "raw_pass_batchnorm": "one batch [G(x); x]: shared batch statistics in training, their running "
                                      "averages when deployed"}


run = make_run(__package__, STUDY, "digits, under two minutes", "``quick``/``cpu``")
