"""The runs of :mod:`.spec`'s ``STUDY`` (:data:`RUNS`): their data roles, the method that embeds them, their records."""

from __future__ import annotations

from typing import Any, cast

from netmark.bench.reproduce import make_run
from netmark.bench.runner import Runner, Runs, Trained, finetune_options
from netmark.data import ArrayDataset, load
from netmark.errors import ConfigError
from netmark.keys import WatermarkKey
from netmark.methods.uchida import KeyType, Uchida, UchidaConfig, host_module, host_vector, host_weight_of
from netmark.training import TrainConfig

from .spec import STUDY, RunSpec


def key_summary(key: WatermarkKey) -> dict[str, Any]:
    return {"seed": key.seed, "layer": key.layer, "bits": len(key.message), "key_type": key.config.get("key_type"),
            "strength": key.config.get("strength"), "reduction": key.config.get("reduction"),
            "M": int(key.tensors["X"].shape[1]), "fingerprint": key.fingerprint}


def _load(runner: Runner, role: str) -> tuple[ArrayDataset, ArrayDataset]:
    """``(train, test)`` for ``main`` / ``small`` / ``capacity`` / ``domain-a`` / ``domain-b``."""
    sc = runner.scale
    kw = {"data_dir": runner.data_dir, "split_seed": sc.split_seed}
    if role == "main":
        return load(sc.dataset, "train", train_size=sc.train_size, **kw), load(sc.dataset, "test", **kw)
    if role in ("small", "capacity"):
        size = sc.small_train_size if role == "small" else sc.capacity_train_size
        return load(sc.dataset, "train", train_size=size, **kw), runner.data("main")[1]
    if role in ("domain-a", "domain-b"):
        classes = sc.domain_a if role == "domain-a" else sc.domain_b
        tr, te = runner.data("main")
        return tr.select_classes(classes), te.select_classes(classes)
    raise ConfigError(f"unknown data role {role!r}")


def uchida_config(runner: Runner, spec: RunSpec) -> UchidaConfig:
    sc = runner.scale
    return UchidaConfig(layer=spec.layer or sc.layer, bits=spec.bits or sc.bits,
                        key_type=cast(KeyType, spec.key_type or "random"), strength=sc.strength)


def host_size(runner: Runner, layer: str | None = None) -> int:
    """M of a host layer (averaged filter size) for the scale's model."""
    m = runner.fresh_model(runner.data("main")[0], 0)
    return int(host_vector(host_weight_of(host_module(m, layer or runner.scale.layer))).numel())


def _method(runner: Runner, spec: RunSpec) -> Uchida | None:
    return None if spec.key_type is None else Uchida(uchida_config(runner, spec))


def _score(runner: Runner, trained: Trained) -> str:
    key = trained.owner
    ber = (Uchida.from_key(key).extract(trained.model, key).bits != key.bits).float().mean()
    return f"owner BER {float(ber):.3f}"


def _attack_options(runner: Runner, spec: RunSpec, attack: str, train: TrainConfig) -> dict[str, Any]:
    """Fine-tuning, or §5.1's overwriting: the parent's Uchida config under the attacker's key seed."""
    if attack != "overwrite":
        return finetune_options(runner, spec, attack, train)
    pcfg = uchida_config(runner, runner.plan[spec.parent or ""])
    return {"method": "uchida", "method_config": pcfg.to_dict(), "train": train,
            "seed": spec.attacker_key_seed if spec.attacker_key_seed is not None else 666}


def _extra_keys(spec: RunSpec) -> tuple[str, ...]:
    return ("attacker_key",) if spec.attack == "overwrite" else ()


def _record(trained: Trained) -> dict[str, Any]:
    return {"test_error": 1.0 - trained.test_accuracy}


def _scale_record(runner: Runner) -> dict[str, Any]:
    sc = runner.scale
    return {"small_train_size_used": len(runner.data("small")[0]),
            "capacity_train_size_used": len(runner.data("capacity")[0]), "host_M": host_size(runner),
            "capacity_M": {la: host_size(runner, la) for la in sc.capacity_layers}}


def _seed_record(runner: Runner) -> dict[str, Any]:
    return {"overwrite_train_seed": runner.scale.train_seed + 2, "attacker_key_seed": 666}


RUNS = Runs(STUDY, _load, key_summary,
            ("epoch", "lr", "loss", "task_loss", "embed_loss", "embed_loss_raw", "bit_error_rate", "train_accuracy",
             "test_accuracy", "test_loss", "seconds"),
            method=_method, score=_score, record=_record, attack_options=_attack_options, extra_keys=_extra_keys,
            scale_record=_scale_record, seed_record=_seed_record)
run = make_run(__package__, STUDY, "digits + simple-cnn, under a minute", "``quick``/``cpu``/``paper``")
