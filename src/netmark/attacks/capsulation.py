"""Capsulation (Li, Wang, Zhu, "Measure and Countermeasure of the Capsulation Attack against Backdoor-based Deep
Neural Network Watermarks", ICASSP 2023, arXiv 2208.14127, §2): the thief encapsulates the stolen network with a
filter that spots abnormal queries — a backdoor-based watermark's triggers are out-of-distribution by design — and
answers them with a random label, so black-box verification fails while ordinary inputs get the network's answers.
No weight changes.

The filter here is a k-nearest-neighbour distance detector fitted on the thief's own data: an input's score is its
mean distance to its ``k`` nearest points of a reference set (the thief's inputs, or their hidden features: the
input of the network's output layer, ``space="feature"``); the threshold is the ``quantile`` of the scores of a
held-out part of the thief's data (``calibration`` of it), so about ``1 − quantile`` of clean queries are refused.
A refused query gets a random label drawn from ``seed`` and a hash of the input (the same query, the same answer),
returned as a one-hot logit vector. The paper measures a scheme's exposure with a generic detector; this detector is
netmark's simple stand-in (the issue asks for "a simple density or feature-distance detector"), not the paper's.

Measured (``benchmarks/capsulation.py``: simple-cnn on digits, owner 1,000 / thief 437 disjoint training images,
12 epochs; served by ``netmark serve``'s server and verified through queries only): at quantile 0.99 the capsule
removes Adi, Zhang content / noise / unrelated and DeepSigns' black-box mark at 0–2.2 pp of clean accuracy
(0.3–2.8 % false alarms); frontier stitching's triggers (adversarial examples of real images) and Zhang's noise
triggers made faint (σ 0.1) pass it and stay detected — the benchmark's docstring has the table.

Threat model: the thief holds the stolen model and some data of the task (the attacker's split) and serves the
wrapped model (``netmark attack capsulation M --dataset D -o OUT``, then ``netmark serve OUT``).

Args:
    space: ``feature`` (default: the output layer's input) or ``input`` (raw pixels).
    quantile: the threshold's quantile of the thief's held-out scores [0.99; 0.95 refuses more].
    k: neighbours averaged [1].
    max_reference: most reference points kept (a seeded subset) [2000].
    calibration: share of the thief's data held out to set the threshold [0.2].
    seed: the subsets and the random labels.

Example::

    served = Capsulation(CapsulationConfig(quantile=0.95))(stolen, thief_data)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from netmark._util import generator
from netmark.attacks.base import Attack, AttackConfig, register_attack
from netmark.attacks.finetune import output_layer
from netmark.errors import ConfigError
from netmark.models.wrapped import Capsule
from netmark.training import evaluating, iter_batches, model_device


@dataclass
class CapsulationConfig(AttackConfig):
    """Settings of :class:`Capsulation` (module docstring)."""

    space: str = "feature"
    quantile: float = 0.99
    k: int = 1
    max_reference: int = 2000
    calibration: float = 0.2

    def __post_init__(self) -> None:
        if self.space not in ("feature", "input"):
            raise ConfigError(f"space must be 'feature' or 'input', got {self.space!r}")
        for name, lo, hi in (("quantile", 0.5, 1.0), ("calibration", 0.01, 0.9)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= float(v) <= hi:
                raise ConfigError(f"{name} must be in [{lo:g}, {hi:g}], got {v!r}")
        for name, lo in (("k", 1), ("max_reference", 2)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ConfigError(f"{name} must be an integer >= {lo}, got {v!r}")


def thief_features(capsule: Capsule, data: Dataset, batch_size: int = 256) -> Tensor:
    """The features ``capsule`` scores, for every input of ``data`` (CPU, float32)."""
    out: list[Tensor] = []
    with evaluating(capsule), torch.no_grad():
        for x, _ in iter_batches(data, batch_size):
            if not isinstance(x, Tensor):
                raise ConfigError("capsulation needs image tensors (keyword inputs are not supported)")
            out.append(capsule.logits_and_features(x.to(model_device(capsule)))[1].float().cpu())
    return torch.cat(out)


@register_attack
class Capsulation(Attack[CapsulationConfig]):
    """The stolen model behind an out-of-distribution filter that answers random labels (module docstring)."""

    name = "capsulation"
    needs_data = True
    VERSION = 1

    def apply(self, model: nn.Module, data: Dataset | None) -> nn.Module:
        cfg = self.config
        if data is None:
            raise ConfigError("capsulation needs the thief's data to fit its filter")
        n = len(data)  # type: ignore[arg-type]
        n_cal = max(1, math.floor(cfg.calibration * n))
        if n - n_cal < cfg.k:
            raise ConfigError(f"capsulation needs more than {n_cal + cfg.k - 1} inputs of the thief's data, got {n}")
        base = {"space": cfg.space, "feature_layer": output_layer(model) if cfg.space == "feature" else None,
                "k": cfg.k, "seed": cfg.seed}
        probe = Capsule(model, {**base, "threshold": 0.0}, {"reference": torch.zeros(cfg.k, 1)})
        feats = thief_features(probe, data)
        order = torch.randperm(n, generator=generator(cfg.seed))
        ref_idx, cal_idx = order[n_cal:][: cfg.max_reference], order[:n_cal]
        scorer = Capsule(model, {**base, "threshold": 0.0}, {"reference": feats[ref_idx]})
        scores = scorer.scores(feats[cal_idx])
        threshold = float(torch.quantile(scores.double(), float(cfg.quantile)))
        return Capsule(model, {**base, "threshold": threshold}, {"reference": feats[ref_idx]})
