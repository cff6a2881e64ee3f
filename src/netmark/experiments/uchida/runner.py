"""The runs of :mod:`.spec`'s ``STUDY``: their data roles, the methods that train them, their records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, cast

from netmark.bench.study import make_run
from netmark.data import ArrayDataset, load
from netmark.errors import ConfigError
from netmark.experiments.common import RunnerBase, TrainedBase
from netmark.keys import WatermarkKey
from netmark.methods.uchida import KeyType, Uchida, UchidaConfig, host_module, host_vector
from netmark.training import TrainConfig

from .spec import STUDY, RunSpec, Scale

_HISTORY_KEYS = ("epoch", "lr", "loss", "task_loss", "embed_loss", "embed_loss_raw", "bit_error_rate",
                 "train_accuracy", "test_accuracy", "test_loss", "seconds")


def key_summary(key: WatermarkKey) -> dict[str, Any]:
    return {"seed": key.seed, "layer": key.layer, "bits": len(key.message), "key_type": key.config.get("key_type"),
            "strength": key.config.get("strength"), "reduction": key.config.get("reduction"),
            "M": int(key.tensors["X"].shape[1]), "fingerprint": key.fingerprint}


@dataclass
class Trained(TrainedBase):
    """A model of the reproduction, with the owner key it carries (own or inherited)."""

    HISTORY_KEYS: ClassVar[tuple[str, ...]] = _HISTORY_KEYS

    attacker_key: WatermarkKey | None = None

    def record(self) -> dict[str, Any]:
        rec = super().record()
        if self.attacker_key is not None:
            rec["attacker_key"] = key_summary(self.attacker_key)
        return rec

    def _extra_record(self) -> dict[str, Any]:
        return {"test_error": 1.0 - self.test_accuracy}

    key_summary = staticmethod(key_summary)


class Runner(RunnerBase[Scale, RunSpec, Trained]):
    """Loads the data of a :class:`Scale` and trains/derives runs on demand, each once."""

    STUDY = STUDY
    TRAINED = Trained

    # ------------------------------------------------------------------ data

    def _load(self, role: str) -> tuple[ArrayDataset, ArrayDataset]:
        """``(train, test)`` for ``main`` / ``small`` / ``capacity`` / ``domain-a`` / ``domain-b``."""
        sc = self.scale
        kw = {"data_dir": self.data_dir, "split_seed": sc.split_seed}
        if role == "main":
            tr = load(sc.dataset, "train", train_size=sc.train_size, **kw)
            te = load(sc.dataset, "test", **kw)
        elif role in ("small", "capacity"):
            size = sc.small_train_size if role == "small" else sc.capacity_train_size
            tr = load(sc.dataset, "train", train_size=size, **kw)
            te = self.data("main")[1]
        elif role in ("domain-a", "domain-b"):
            classes = sc.domain_a if role == "domain-a" else sc.domain_b
            tr0, te0 = self.data("main")
            tr, te = tr0.select_classes(classes), te0.select_classes(classes)
        else:
            raise ConfigError(f"unknown data role {role!r}")
        return tr, te

    def _extra_keys(self, spec: RunSpec) -> tuple[str, ...]:
        return ("attacker_key",) if spec.attack == "overwrite" else ()

    def uchida_config(self, spec: RunSpec) -> UchidaConfig:
        return UchidaConfig(layer=spec.layer or self.scale.layer, bits=spec.bits or self.scale.bits,
                            key_type=cast(KeyType, spec.key_type or "random"), strength=self.scale.strength)

    def host_size(self, layer: str | None = None) -> int:
        """M of a host layer (averaged filter size) for this scale's model."""
        m = self.fresh_model(self.data("main")[0], 0)
        return int(host_vector(host_module(m, layer or self.scale.layer).weight).numel())

    # ------------------------------------------------------------------ runs

    def _method(self, spec: RunSpec) -> Uchida | None:
        return None if spec.key_type is None else Uchida(self.uchida_config(spec))

    def _describe(self, spec: RunSpec) -> str:
        return "plain" if spec.key_type is None else f"{spec.key_type} key, {spec.bits or self.scale.bits} bits"

    def _summary(self, trained: Trained) -> str:
        msg = f"  {trained.spec.name}: {trained.seconds:.0f} s, test error {100 * (1 - trained.test_accuracy):.2f}%"
        if trained.key is not None:
            ber = (Uchida.from_key(trained.key).extract(trained.model, trained.key).bits
                   != trained.key.bits).float().mean()
            msg += f", owner BER {float(ber):.3f}"
        return msg

    def _attack_options(self, spec: RunSpec, attack: str, train: TrainConfig) -> dict[str, Any]:
        """Fine-tuning, or §5.1's overwriting: the parent's Uchida config under the attacker's key seed."""
        if attack != "overwrite":
            return super()._attack_options(spec, attack, train)
        pcfg = self.uchida_config(self.plan[spec.parent or ""])
        return {"method": "uchida", "method_config": pcfg.to_dict(), "train": train,
                "seed": spec.attacker_key_seed if spec.attacker_key_seed is not None else 666}

    # ------------------------------------------------------------------ results

    def scale_record(self) -> dict[str, Any]:
        sc = self.scale
        return {"small_train_size_used": len(self.data("small")[0]),
                "capacity_train_size_used": len(self.data("capacity")[0]), "host_M": self.host_size(),
                "capacity_M": {la: self.host_size(la) for la in sc.capacity_layers}}

    def seed_record(self) -> dict[str, Any]:
        return {"overwrite_train_seed": self.scale.train_seed + 2, "attacker_key_seed": 666}

    def done_seconds(self, results: dict[str, Any], total: float) -> float:
        return results["timing"]["total_seconds"]


run = make_run(__package__, STUDY, "digits + simple-cnn, under a minute", "``quick``/``cpu``/``paper``")
