"""Combined attacks: registered attacks applied one after another (issue 23, item 3).

Lukas et al. ("SoK: How Robust is Image Classification Deep Neural Network Watermarking?", S&P 2022) find that
attacks a scheme survives one at a time remove it in combination, e.g. fine-pruning after a JPEG-filtered model
extraction. ``combined`` runs ``steps`` in order on the stolen model, each step the output of the one before: a step
is ``{"attack": NAME, "config": {...}}`` with any registered attack but ``combined`` and that attack's options. Every
step that trains uses the combination's ``train`` schedule (so a sweep over ``epochs`` scales the whole
combination's compute); step ``i`` is seeded with ``seed + i``; steps that need data get the same attacker data.

Threat model: that of the most demanding step (the attacker's data when a step trains on it).

Args:
    steps: the attacks in order [JPEG-filtered extraction, then fine-pruning (the SoK's example)].
    train: the schedule of every step that trains [1 epoch, SGD lr 0.01].
    seed: the steps' seeds (``seed + i``).

Example::

    stolen = Combined(CombinedConfig(steps=[{"attack": "fine-pruning", "config": {"rate": 0.5}},
                                            {"attack": "sok-finetune", "config": {"mode": "rtal"}}]))(model, data)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from netmark.attacks.base import ATTACKS, Attack, AttackConfig, register_attack
from netmark.errors import ConfigError
from netmark.training import TrainConfig

#: the most steps a combination may have (a bound on untrusted configs)
MAX_STEPS = 8


def _default_steps() -> list[dict[str, Any]]:
    return [{"attack": "preprocess", "config": {"kind": "jpeg"}}, {"attack": "extraction", "config": {}},
            {"attack": "fine-pruning", "config": {}}]


@dataclass
class CombinedConfig(AttackConfig):
    """Settings of :class:`Combined` (module docstring)."""

    steps: list[dict[str, Any]] = field(default_factory=_default_steps)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, lr=0.01, progress=False))

    def __post_init__(self) -> None:
        if not isinstance(self.train, TrainConfig):
            raise ConfigError("CombinedConfig.train must be a TrainConfig")
        if not isinstance(self.steps, list | tuple) or not 1 <= len(self.steps) <= MAX_STEPS:
            raise ConfigError(f"steps must be a list of 1 to {MAX_STEPS} attacks, got {self.steps!r}")
        self.steps = [dict(s) if isinstance(s, Mapping) else s for s in self.steps]
        self.step_configs()  # every step must make a valid attack config

    def step_configs(self) -> list[tuple[str, AttackConfig]]:
        """Each step's attack name and config (module docstring); ConfigError naming a bad step."""
        out = []
        for i, step in enumerate(self.steps):
            if not isinstance(step, dict) or set(step) - {"attack", "config"} or "attack" not in step:
                raise ConfigError(f"step {i + 1} must be {{'attack': NAME, 'config': {{...}}}}, got {step!r}")
            name, options = step["attack"], step.get("config", {})
            if name == Combined.name or name not in ATTACKS:
                raise ConfigError(f"step {i + 1}: {name!r} is not an attack to combine; known: "
                                  f"{', '.join(sorted(set(ATTACKS) - {Combined.name}))}")
            if not isinstance(options, Mapping) or "train" in options or "seed" in options:
                raise ConfigError(f"step {i + 1} ({name}): config must be a mapping of the attack's options without "
                                  "train and seed (the combination's apply)")
            cls = ATTACKS[name].config_cls
            kw: dict[str, Any] = {**options, "seed": self.seed + i}
            if "train" in {f.name for f in fields(cls)}:
                kw["train"] = self.train
            try:
                out.append((name, cls(**kw)))
            except TypeError as e:
                raise ConfigError(f"step {i + 1} ({name}): {e}") from None
        return out

    def training_epochs(self) -> float:
        return sum(c.training_epochs() for _, c in self.step_configs())


@register_attack
class Combined(Attack[CombinedConfig]):
    """Registered attacks one after another (module docstring)."""

    name = "combined"
    needs_data = True  # the attacker's data, passed to the steps that need it (the others ignore it)
    VERSION = 1

    @classmethod
    def example_config(cls) -> AttackConfig:
        return CombinedConfig(steps=[{"attack": "prune", "config": {"rate": 0.3}},
                                     {"attack": "sok-finetune", "config": {"mode": "ftal"}}],
                              train=TrainConfig(epochs=1, lr=0.01, batch_size=64, progress=False))

    def apply(self, model: nn.Module, data: Dataset | None) -> nn.Module:
        for name, cfg in self.config.step_configs():
            attack = ATTACKS[name](cfg)
            model = attack(model, data if attack.needs_data else None)
        return model
