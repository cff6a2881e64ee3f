"""Piracy attacks on an anti-piracy model (Chen & Wu 2018, §2.1 threat model, §4 Table 3).

**Patent notice.** US patent 11,687,623 B2 (University of Maryland) covers the scheme under attack.

Threat model: the adversary holds a copy of the released model F (weights and architecture), never
the owner's transform G. Every attack forges a transform G' and is scored by F's accuracy on G'(x):

* :func:`direct_piracy` — raw inputs into the stolen model (G' = identity).
* :func:`input_only_attack` — the adversary knows the Fixed scheme and its σ, p and draws its own
  universal bipolar perturbations (``trials`` of them, paper 100): mean and best accuracy.
* :func:`pair_attack` — the adversary knows G's structure (the Generator: conv 5×5 → 1×1 → tanh),
  not its weights, and fits a copy to (raw, processed) pairs of a share of the training set by least
  squares (paper: 10/50/100% of the pairs, 100 trials): mean and best accuracy.
* :func:`one_pair_attack` — the weakness of universal transforms the paper states (§2.3): a single
  (raw, processed) pair reveals δ = x_p − x_r, hence the exact Fixed/Learned transform.

Example::

    >>> from netmark.data import load
    >>> from netmark.models import build
    >>> test = load("digits", "test")
    >>> model = build("simple-cnn", in_channels=1, image_size=8, num_classes=10)
    >>> res = input_only_attack(model, test, InputOnlyConfig(trials=3))
    >>> len(res.accuracies), 0.0 <= res.best <= 1.0
    (3, True)
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from netmark._util import check_finite, check_int, check_unit, generator, seeded
from netmark.access.transforms import AntiPiracyTransform, TransformConfig, bipolar, build_transform, recover_universal
from netmark.data import TensorPairs, inputs_of
from netmark.errors import ConfigError
from netmark.training import TrainConfig, evaluate, iter_batches, make_optimizer, model_device

#: The behaviour version of the forged-transform attacks here, part of every cached piracy cell's key (with the
#: attack's config): bump it when an attack's result changes for the same config, model, data and seed.
PIRACY_VERSION = 1


@dataclass
class PiracyResult:
    """Accuracy of the stolen model through each forged transform (one per trial)."""

    attack: str
    accuracies: list[float]
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def best(self) -> float:
        return max(self.accuracies)

    def to_dict(self) -> dict[str, Any]:
        return {"attack": self.attack, "trials": len(self.accuracies), "mean": self.mean, "best": self.best,
                "accuracies": self.accuracies, **self.details}


def _shape(data: Dataset) -> tuple[int, int, int]:
    x0, _ = data[0]
    if x0.dim() != 3:
        raise ConfigError(f"anti-piracy attacks need image inputs (C, H, W), got shape {list(x0.shape)}")
    return tuple(int(s) for s in x0.shape)  # type: ignore[return-value]


def direct_piracy(model: nn.Module, data: Dataset) -> PiracyResult:
    """Raw inputs into the stolen model (Table 3 "Direct piracy")."""
    return PiracyResult("direct", [evaluate(model, data)["accuracy"]])


@dataclass(frozen=True)
class InputOnlyConfig:
    """The input-only attack (§2.1, Table 3).

    Args:
        trials: universal perturbations the adversary draws [100].
        sigma / p: the Fixed scheme's parameters, known to the adversary [0.1, 0.2].
        seed: the adversary's seed (trial i draws with ``seed + i``).
    """

    trials: int = 100
    sigma: float = 0.1
    p: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("trials", self.trials)
        TransformConfig("fixed", sigma=self.sigma, p=self.p)  # validates sigma and p


def input_only_attack(model: nn.Module, data: Dataset, config: InputOnlyConfig | None = None) -> PiracyResult:
    """Evaluate ``model`` on ``data`` + δ_i for ``trials`` bipolar perturbations δ_i of the adversary."""
    c = config or InputOnlyConfig()
    shape = _shape(data)
    dev = model_device(model)
    accs = []
    for i in range(c.trials):
        delta = bipolar(shape, c.sigma, c.p, c.seed + i).to(dev)

        def shifted(x: Tensor, d: Tensor = delta) -> Tensor:
            return x + d

        accs.append(evaluate(model, data, transform=shifted)["accuracy"])
    return PiracyResult("input-only", accs, {"config": asdict(c)})


@dataclass(frozen=True)
class PairAttackConfig:
    """The pair attack on a Generator (§2.1, Table 3): least-squares fit of a same-structure copy.

    The paper gives no optimiser for the adversary's fit; netmark uses Adam (lr 1e-3, batch 128).

    Args:
        fraction: share of the training set whose (raw, processed) pairs the adversary holds [0.1, 0.5, 1.0].
        trials: independent fits (a fresh subset and initialisation each) [100; fewer at CPU scale].
        epochs: passes of each fit over its pairs.
        lr / batch_size: the fit's Adam learning rate and batch.
        seed: the adversary's seed (trial i uses ``seed + i``).
    """

    fraction: float = 1.0
    trials: int = 100
    epochs: int = 5
    lr: float = 1e-3
    batch_size: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        check_unit("fraction", self.fraction)
        for name in ("trials", "epochs", "batch_size"):
            check_int(name, getattr(self, name))
        check_finite("lr", self.lr, positive=True)


@torch.no_grad()
def processed_pairs(transform: AntiPiracyTransform, x: Tensor, batch_size: int = 1024) -> Tensor:
    """G(x) for a batch of raw inputs (what a wiretap of the trusted module records), on ``x``'s device."""
    transform.eval()
    dev = model_device(transform)
    return torch.cat([transform(x[i : i + batch_size].to(dev)).to(x.device) for i in range(0, len(x), batch_size)])


def fit_generator(pairs_raw: Tensor, pairs_processed: Tensor, config: TransformConfig,
                  fit: PairAttackConfig, seed: int) -> AntiPiracyTransform:
    """A generator of ``config``'s structure fitted to the pairs by least squares (Adam), on the pairs' device."""
    g = build_transform(TransformConfig("generator", hidden=config.hidden, seed=seed),
                        tuple(pairs_raw.shape[1:])).to(pairs_raw.device)  # type: ignore[arg-type]
    opt = make_optimizer(g.parameters(), TrainConfig(optimizer="adam", lr=fit.lr, progress=False))
    data = TensorPairs(pairs_raw, pairs_processed)
    gen = generator(seed)
    g.train()
    with seeded(seed):
        for _ in range(fit.epochs):
            for xr, xp in iter_batches(data, fit.batch_size, shuffle=True, gen=gen):
                loss = F.mse_loss(g(xr), xp)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return g.eval()


def pair_attack(model: nn.Module, transform: AntiPiracyTransform, train_data: Dataset, test_data: Dataset,
                config: PairAttackConfig | None = None) -> PiracyResult:
    """Fit ``trials`` copies of the owner's generator to (raw, G(raw)) pairs of ``fraction`` of
    ``train_data`` and evaluate ``model`` on G'(test). ``transform`` only produces the pairs (the
    wiretap); the adversary's copy shares its structure (``hidden``), never its weights."""
    c = config or PairAttackConfig()
    if transform.config.kind != "generator":
        raise ConfigError("the pair attack fits a Generator copy; a universal transform falls to one_pair_attack")
    dev = model_device(model)
    x_all = inputs_of(train_data).to(dev)
    xp_all = processed_pairs(transform, x_all)
    xt = inputs_of(test_data)[:2048].to(dev)
    xt_p = processed_pairs(transform, xt)
    n = max(1, round(c.fraction * len(x_all)))
    accs, mse = [], []
    for i in range(c.trials):
        idx = torch.randperm(len(x_all), generator=generator(c.seed + i))[:n]
        g = fit_generator(x_all[idx], xp_all[idx], transform.config, c, c.seed + i)
        accs.append(evaluate(model, test_data, transform=g)["accuracy"])
        with torch.no_grad():
            mse.append(float(F.mse_loss(g(xt), xt_p)))
    return PiracyResult("pair", accs, {"config": asdict(c), "pairs": n, "test_mse": mse})


def one_pair_attack(model: nn.Module, transform: AntiPiracyTransform, train_data: Dataset, test_data: Dataset,
                    index: int = 0) -> PiracyResult:
    """One (raw, processed) pair → δ = x_p − x_r, applied to every test input (exact for Fixed/Learned;
    for a Generator, δ of one input misses the input-dependent part)."""
    dev = model_device(model)
    x = inputs_of(train_data)[index : index + 1].to(dev)
    delta = recover_universal(x, processed_pairs(transform, x))
    acc = evaluate(model, test_data, transform=lambda t: t + delta)["accuracy"]
    with torch.no_grad():
        xt = inputs_of(test_data)[:2048].to(dev)
        err = float((processed_pairs(transform, xt) - (xt + delta)).abs().max())
    return PiracyResult("one-pair", [acc], {"index": index, "max_abs_error": err})
