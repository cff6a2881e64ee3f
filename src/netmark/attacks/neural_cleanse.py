"""Neural Cleanse (Wang, Yao, Shan, Li, Viswanath, Zheng, Zhao, "Neural Cleanse: Identifying and Mitigating Backdoor
Attacks in Neural Networks", S&P 2019, §IV–VI), as the SoK (Lukas et al., S&P 2022, §V; WRT toolbox
``neural_cleanse_unlearning``) turns it against trigger-set watermarks.

1. **Reverse-engineer a trigger per class** (§IV-B): for each target class ``t`` find a mask ``m ∈ [0,1]^{H×W}``
   (shared by the channels) and a pattern ``p ∈ [0,1]^{C×H×W}`` minimising
   ``CE(f((1−m)·x + m·p), t) + λ·|m|_1`` on the thief's clean images (Adam, ``m`` and ``p`` through tanh as in the
   authors' release). λ follows the paper's schedule (§IV-B: "adjusted dynamically ... to ensure > 99 % of clean
   images are misclassified"): starting at ``cost`` it is doubled after ``patience`` windows in a row whose attack
   success reaches ``success`` and divided by 2^1.5 after ``patience`` windows below it; ``dynamic_cost=False`` keeps
   it fixed. The kept trigger is the smallest-norm mask reached with success ≥ ``success`` (else the last one).
2. **Detect** (§IV-C): the anomaly index of class ``i`` is ``|L1_i − median| / (1.4826·MAD)`` over the mask norms;
   a class whose norm is *below* the median with an index above ``threshold`` (2: > 95 % confidence) is flagged.
3. **Unlearn** (§VI-C): fine-tune on the thief's data where a share ``share`` (20 %) of the images carry the reversed
   trigger of a flagged class with their TRUE label (paper: 10 % of the training set, one epoch).
   ``unlearn="smallest"`` unlearns the smallest-norm trigger even when no class is flagged (what the WRT toolbox
   does: it always takes the reversed trigger of smallest L1 norm); ``"flagged"`` (paper) fine-tunes on clean data
   only when nothing is flagged.

Defaults are the paper's / the authors' release (Adam lr 0.1, betas (0.5, 0.9), λ₀ = 1e-3, success 0.99, patience 5,
×2 up / ÷2^1.5 down, threshold 2, 20 % of the images, one epoch) except the optimisation length: ``steps`` Adam steps
of ``train.batch_size`` images per class (default 1000; the release runs up to 1000 passes over 1000 images with
early stopping, i.e. tens of thousands of steps: set ``steps`` to match). ``classes`` restricts the classes
reverse-engineered (scale-down; default all). The last run's norms, anomaly indices and flagged classes are in
:attr:`NeuralCleanse.report`.

Threat model: the thief holds the stolen model and some clean labelled data of the task (the attacker's split).

Args:
    steps: Adam steps per class [1000]: the strength axis of ``netmark evaluate``.
    classes: target classes to reverse (``None``: all).
    cost: λ₀ [1e-3]; dynamic_cost: the paper's schedule [True]; success: attack success for the schedule [0.99];
    patience: windows (of 10 steps) before λ moves [5]; lr: Adam rate for m, p [0.1];
    threshold: anomaly index above which a class is flagged [2.0]; share: images carrying a trigger [0.2];
    unlearn: ``flagged`` (paper) or ``smallest`` (WRT); train: the unlearning fine-tune [1 epoch, SGD lr 0.01];
    seed: the optimisation's batches, the unlearning draw and the fine-tuning.

Example::

    attack = NeuralCleanse(NeuralCleanseConfig(steps=200))
    cleaned = attack(model, thief_data); print(attack.report.anomaly)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from netmark._util import check_bool, check_choice, check_finite, check_int, generator
from netmark.attacks.base import Attack, AttackConfig, register_attack
from netmark.data import ArrayDataset
from netmark.errors import ConfigError
from netmark.training import TrainConfig, evaluating, forward, iter_batches, model_device, train

log = logging.getLogger(__name__)

WINDOW = 10  # steps per schedule window (the release checks once per pass over its 1000 images)
UP, DOWN = 2.0, 2.0**1.5


@dataclass
class NeuralCleanseConfig(AttackConfig):
    """Settings of :class:`NeuralCleanse` (module docstring)."""

    steps: int = 1000
    classes: list[int] | None = None
    cost: float = 1e-3
    dynamic_cost: bool = True
    success: float = 0.99
    patience: int = 5
    lr: float = 0.1
    threshold: float = 2.0
    share: float = 0.2
    unlearn: str = "flagged"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, lr=0.01, progress=False))

    def __post_init__(self) -> None:
        check_int("steps", self.steps)
        if isinstance(self.classes, tuple):
            self.classes = list(self.classes)
        if self.classes is not None and (not isinstance(self.classes, list) or len(self.classes) < 3 or any(
                isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in self.classes)):
            raise ConfigError(f"classes must be None or a list of at least 3 class indices, got {self.classes!r}")
        check_finite("cost", self.cost, positive=False)
        check_bool("dynamic_cost", self.dynamic_cost)
        check_finite("success", self.success, positive=True)
        if self.success > 1:
            raise ConfigError(f"success must be an attack success rate in (0, 1], got {self.success!r}")
        check_int("patience", self.patience)
        check_finite("lr", self.lr, positive=True)
        check_finite("threshold", self.threshold, positive=True)
        check_finite("share", self.share, positive=False)
        if self.share > 1:
            raise ConfigError(f"share must be a share of the images in [0, 1], got {self.share!r}")
        check_choice("unlearn", self.unlearn, ("flagged", "smallest"))
        if not isinstance(self.train, TrainConfig):
            raise ConfigError("NeuralCleanseConfig.train must be a TrainConfig")


@dataclass
class Trigger:
    """A reversed trigger: mask ``(1, H, W)``, pattern ``(C, H, W)``, its L1 norm and attack success rate."""

    target: int
    mask: Tensor
    pattern: Tensor
    norm: float
    success: float

    def apply(self, x: Tensor) -> Tensor:
        m, p = self.mask.to(x.device), self.pattern.to(x.device)
        return (1 - m) * x + m * p


@dataclass
class CleanseReport:
    """What the last run found: per reversed class its mask norm and anomaly index, the flagged classes and the
    classes whose reversed triggers were unlearned (empty: clean fine-tuning only), and the triggers."""

    norms: dict[int, float]
    anomaly: dict[int, float]
    success: dict[int, float]
    flagged: list[int]
    unlearned: list[int]
    triggers: dict[int, Trigger]


def _median(values: Tensor) -> Tensor:
    """The median as numpy takes it (the mean of the two middle values for an even count)."""
    v, n = values.sort().values, len(values)
    return v[(n - 1) // 2 : n // 2 + 1].mean()


def anomaly_indices(norms: dict[int, float]) -> dict[int, float]:
    """§IV-C: ``|L1_i − median| / (1.4826 · median |L1_j − median|)`` per class (0 where the MAD is 0)."""
    values = torch.tensor(list(norms.values()), dtype=torch.float64)
    med = _median(values)
    mad = 1.4826 * _median((values - med).abs())
    return {c: (float(abs(n - med) / mad) if mad > 0 else 0.0) for c, n in norms.items()}


def flagged_classes(norms: dict[int, float], anomaly: dict[int, float], threshold: float) -> list[int]:
    """Classes whose norm is below the median of the norms with an anomaly index above ``threshold``."""
    med = float(_median(torch.tensor(list(norms.values()), dtype=torch.float64)))
    return sorted((c for c in norms if norms[c] < med and anomaly[c] > threshold), key=lambda c: norms[c])


def _batches(data: Dataset, batch_size: int, gen: torch.Generator) -> Iterator[Tensor]:
    while True:
        for x, _ in iter_batches(data, batch_size, shuffle=True, gen=gen):
            yield x


def reverse_trigger(model: nn.Module, data: Dataset, target: int, cfg: NeuralCleanseConfig,
                    gen: torch.Generator) -> Trigger:
    """§IV-B for one target class (the model is left untouched, in eval mode)."""
    device = model_device(model)
    x0 = next(iter(iter_batches(data, 1)))[0]
    c, h, w = x0.shape[1:]
    init = torch.rand(1 + c, h, w, generator=gen)
    m_raw = torch.atanh((init[:1] * 2 - 1) * 0.999).to(device).requires_grad_(True)
    p_raw = torch.atanh((init[1:] * 2 - 1) * 0.999).to(device).requires_grad_(True)
    opt = torch.optim.Adam([m_raw, p_raw], lr=cfg.lr, betas=(0.5, 0.9))
    lam, ups, downs = float(cfg.cost), 0, 0
    best: Trigger | None = None
    window: list[float] = []
    batches = _batches(data, cfg.train.batch_size, gen)
    mask = pattern = torch.empty(0)
    rate = 0.0
    with evaluating(model):
        for step in range(1, cfg.steps + 1):
            x = next(batches).to(device)
            mask, pattern = torch.tanh(m_raw) / 2 + 0.5, torch.tanh(p_raw) / 2 + 0.5
            logits = forward(model, (1 - mask) * x + mask * pattern)
            t = torch.full((len(x),), target, dtype=torch.long, device=device)
            loss = F.cross_entropy(logits, t) + lam * mask.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            window.append(float((logits.argmax(1) == target).float().mean()))
            if step % WINDOW and step != cfg.steps:
                continue
            rate, window = sum(window) / len(window), []
            norm = float(mask.detach().sum())
            if rate >= cfg.success and (best is None or norm < best.norm):
                best = Trigger(target, mask.detach().cpu(), pattern.detach().cpu(), norm, rate)
            if cfg.dynamic_cost:
                ups, downs = (ups + 1, 0) if rate >= cfg.success else (0, downs + 1)
                if ups >= cfg.patience:
                    lam, ups = (lam * UP if lam > 0 else float(cfg.cost) or 1e-3), 0
                elif downs >= cfg.patience:
                    lam, downs = lam / DOWN, 0
    if best is not None:
        return best
    return Trigger(target, mask.detach().cpu(), pattern.detach().cpu(), float(mask.detach().sum()), rate)


def all_images(data: Dataset) -> tuple[Tensor, Tensor]:
    xs, ys = zip(*iter_batches(data, 1024), strict=True)
    return torch.cat(list(xs)).float(), torch.cat(list(ys)).long()


@register_attack
class NeuralCleanse(Attack[NeuralCleanseConfig]):
    """Reverse-engineer a trigger per class, flag the outliers, unlearn them (module docstring)."""

    name = "neural-cleanse"
    needs_data = True
    VERSION = 1
    report: CleanseReport | None = None

    @classmethod
    def example_config(cls) -> NeuralCleanseConfig:
        return NeuralCleanseConfig(steps=20, classes=[0, 1, 2],
                                   train=TrainConfig(epochs=1, lr=0.01, batch_size=64, progress=False))

    def apply(self, model: nn.Module, data: Dataset | None) -> nn.Module:
        cfg = self.config
        if data is None:
            raise ConfigError("neural-cleanse needs the thief's clean data")
        x, y = all_images(data)
        if x.dim() != 4:
            raise ConfigError("neural-cleanse needs image data (N, C, H, W)")
        with evaluating(model), torch.no_grad():
            num_classes = int(forward(model, x[:1].to(model_device(model))).shape[1])
        classes = cfg.classes if cfg.classes is not None else list(range(num_classes))
        if max(classes) >= num_classes:
            raise ConfigError(f"classes must be below the model's {num_classes} classes, got {classes}")
        gen = generator(cfg.seed)
        triggers = {t: reverse_trigger(model, data, t, cfg, gen) for t in classes}
        norms = {t: tr.norm for t, tr in triggers.items()}
        anomaly = anomaly_indices(norms)
        flagged = flagged_classes(norms, anomaly, cfg.threshold)
        unlearned = flagged or ([min(norms, key=lambda t: norms[t])] if cfg.unlearn == "smallest" else [])
        self.report = CleanseReport(norms, anomaly, {t: tr.success for t, tr in triggers.items()}, flagged, unlearned,
                                    triggers)
        log.info("neural-cleanse: mask norms %s, anomaly indices %s, flagged %s, unlearned %s",
                 {t: round(v, 2) for t, v in norms.items()}, {t: round(v, 2) for t, v in anomaly.items()},
                 flagged, unlearned)
        x_un = x.clone()
        if unlearned and cfg.share > 0:
            k = math.floor(float(cfg.share) * len(x))
            chosen = torch.randperm(len(x), generator=gen)[:k]
            for i, idx in enumerate(chosen.tensor_split(len(unlearned))):
                x_un[idx] = triggers[unlearned[i]].apply(x[idx])
        n_classes = getattr(data, "num_classes", num_classes)
        unlearn_set = ArrayDataset(x_un, y, name=getattr(data, "name", "thief"), num_classes=int(n_classes))
        if cfg.train.epochs > 0:
            train(model, unlearn_set, replace(cfg.train, seed=cfg.seed))
        return model
