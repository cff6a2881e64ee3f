"""Joint training of an anti-piracy DNN F and its transform G (Chen & Wu 2018, §2.2, Eqs. 1–3).

**Patent notice.** US patent 11,687,623 B2 (University of Maryland) covers this scheme; commercial
use may need a licence.

E = α·E_p + β·E_r + γ·‖x_p − x_r‖², with E_p the cross-entropy of F on processed inputs
x_p = G(x_r) (Eq. 1), E_r = Σ_i p_i q_{r,i} the probability F gives the correct class of the *raw*
input (Eq. 2, minimised: F must fail on raw inputs) and the distortion term keeping x_p close to x_r
(Eq. 3; netmark takes the squared L2 norm per input, averaged over the batch). Paper settings
(§3.1): α = β = 1, γ = 0.01; SGD lr 0.1 ÷ 10 every 10k iterations, momentum 0.9, weight decay
5e-4, batch 128, 40k iterations (:func:`paper_train`).

F and G are trained together by netmark's one training loop: the module it trains is
:class:`Protected` (G then F), whose forward is the authorized path, and a hook adds β·E_r and the
distortion term. In training, F sees [G(x); x] as one batch (``ProtectConfig.raw_pass``): BatchNorm
then normalises both halves alike and its running statistics are those the deployed model uses. The
released model is F alone; G is the owner's secret.

Example::

    >>> from netmark.data import load
    >>> from netmark.models import build
    >>> data = load("digits", "train")
    >>> model = build("simple-cnn", in_channels=1, image_size=8, num_classes=10)
    >>> result = protect(model, data, ProtectConfig(TransformConfig("generator")),
    ...                  TrainConfig(epochs=1, progress=False))
    >>> accs = access_accuracy(result.model, result.transform, data)  # authorized / unauthorized
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from netmark._util import check_choice, check_finite
from netmark.access.transforms import AntiPiracyTransform, TransformConfig, build_transform
from netmark.errors import ConfigError
from netmark.training import TrainConfig, TrainHook, TrainResult, evaluate, train

#: The behaviour version of :func:`protect` and of the transforms (:mod:`netmark.access.transforms`), part of every
#: cached protected run's key (with the ProtectConfig): bump it when the protected model or transform changes for the
#: same config, data and seeds. Moving code does not need a bump.
PROTECT_VERSION = 1
#: §3.1: SGD lr 0.1, momentum 0.9, weight decay 5e-4, batch 128 (epochs/milestones: :func:`paper_train`).
PAPER_ITERATIONS = 40_000
PAPER_STEP_ITERATIONS = 10_000


def paper_train(n_train: int, iterations: int = PAPER_ITERATIONS, **overrides: Any) -> TrainConfig:
    """The paper's schedule for a training set of ``n_train`` examples: ``iterations`` SGD steps of
    batch 128 with the lr divided by 10 every 10k iterations, rounded to whole epochs."""
    if n_train < 1 or iterations < 1:
        raise ConfigError("n_train and iterations must be >= 1")
    per_epoch = math.ceil(n_train / 128)
    epochs = max(1, round(iterations / per_epoch))
    milestones = tuple(sorted({round(k / per_epoch) for k in range(PAPER_STEP_ITERATIONS, iterations,
                                                                    PAPER_STEP_ITERATIONS)} - {0}))
    base = TrainConfig(epochs=epochs, batch_size=128, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4,
                       milestones=tuple(m for m in milestones if m < epochs), gamma=0.1)
    return replace(base, **overrides)


@dataclass(frozen=True)
class ProtectConfig:
    """Loss weights of Eq. 3 and the transform (paper defaults).

    Args:
        transform: which anti-piracy transform G (:class:`TransformConfig`).
        alpha: weight of E_p, the cross-entropy on processed inputs [1].
        beta: weight of E_r, the correct-class probability on raw inputs [1].
        gamma: weight of the distortion ‖x_p − x_r‖² [0.01].
        raw_pass: how E_r's raw inputs go through F [the paper does not say]. ``"joint"`` (default): one
            batch [G(x); x], so BatchNorm normalises both by the same batch statistics in training and its
            running statistics (used when deployed) are those of the same mixture — training and deployment
            agree. ``"separate"``: a second pass over x with BatchNorm in eval mode (the processed inputs'
            running statistics, never updated); a BatchNorm network learns to exploit the gap between
            batch and running statistics there (ResNet-20 on Fashion-MNIST: 10% authorized accuracy). The
            two are the same computation for a network without BatchNorm (up to dropout draws).
    """

    transform: TransformConfig = field(default_factory=TransformConfig)
    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 0.01
    raw_pass: Literal["joint", "separate"] = "joint"

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "gamma"):
            check_finite(name, getattr(self, name), positive=False)
        if self.alpha == 0:
            raise ConfigError("alpha must be > 0 (the authorized task loss)")
        check_choice("raw_pass", self.raw_pass, ("joint", "separate"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Protected(nn.Module):
    """The authorized pipeline F(G(x)): what the owner's trusted module and the model compute together."""

    def __init__(self, transform: AntiPiracyTransform, model: nn.Module) -> None:
        super().__init__()
        self.transform, self.model = transform, model
        #: training with ``raw_pass="joint"``: F's logits on the raw half of the last batch (for E_r).
        self.joint_raw = False
        self.raw_logits: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.training and self.joint_raw:
            out = self.model(torch.cat([self.transform(x), x]))
            self.raw_logits = out[len(x):]
            return out[: len(x)]
        return self.model(self.transform(x))


@contextmanager
def deployed_batchnorm(model: nn.Module) -> Iterator[None]:
    """BatchNorm layers in eval mode for the raw-input pass of E_r: raw inputs are normalised by the
    running statistics of the processed ones, as in the deployed model, and never update them (a raw
    batch's statistics in the running averages wreck the authorized accuracy of a BatchNorm network,
    and a raw pass normalised by its own batch statistics teaches a failure that does not transfer to
    eval mode). Other layers (dropout) keep their mode; gradients flow as usual."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    for m in bns:
        m.eval()
    try:
        yield
    finally:
        for m in bns:
            m.train()


class AntiPiracyHook(TrainHook):
    """Adds (α − 1)·E_p, β·E_r and γ·‖x_p − x_r‖² to the loop's cross-entropy on F(G(x)) (= E_p)."""

    def __init__(self, config: ProtectConfig) -> None:
        self.config = config

    def on_train_start(self, model: nn.Module) -> None:
        if isinstance(model, Protected):
            model.joint_raw = self.config.raw_pass == "joint" and bool(self.config.beta)

    def on_train_end(self, model: nn.Module) -> None:
        if isinstance(model, Protected):
            model.joint_raw, model.raw_logits = False, None

    def extra_loss(self, model: nn.Module, x: Tensor, y: Tensor, logits: Tensor) -> dict[str, Tensor]:
        if not isinstance(model, Protected):
            raise ConfigError("AntiPiracyHook trains a Protected(transform, model) pipeline")
        c = self.config
        out: dict[str, Tensor] = {}
        if c.alpha != 1.0:
            out["processed_extra"] = (c.alpha - 1.0) * F.cross_entropy(logits, y)
        if c.beta:
            if model.joint_raw and model.raw_logits is not None:
                raw_logits, model.raw_logits = model.raw_logits, None
            else:
                with deployed_batchnorm(model.model):
                    raw_logits = model.model(x)
            q_raw = F.softmax(raw_logits, dim=1)
            out["raw_correct_prob"] = c.beta * q_raw.gather(1, y.view(-1, 1)).mean()
        if c.gamma:
            out["distortion"] = c.gamma * model.transform.perturbation(x).pow(2).flatten(1).sum(1).mean()
        return out


@dataclass
class ProtectResult:
    """The released model F, the secret transform G and the training history."""

    model: nn.Module
    transform: AntiPiracyTransform
    history: TrainResult


def protect(model: nn.Module, data: Dataset, config: ProtectConfig | None = None,
            train_config: TrainConfig | None = None, *, eval_data: Dataset | None = None) -> ProtectResult:
    """Train ``model`` (in place) with a new transform so that it works only on transformed inputs.

    ``data`` yields (x, y) with inputs normalised as in §3.2 ([0, 1] grey, [−1, 1] colour). Returns the
    model, the transform (keep it secret) and the history (``eval_data``: authorized test accuracy per epoch).
    """
    config = config or ProtectConfig()
    x0, _ = data[0]
    transform = build_transform(config.transform, tuple(x0.shape))
    pipeline = Protected(transform, model)
    history = train(pipeline, data, train_config or TrainConfig(), hooks=[AntiPiracyHook(config)],
                    eval_data=eval_data)
    return ProtectResult(model, transform, history)


def access_accuracy(model: nn.Module, transform: AntiPiracyTransform | None, data: Dataset,
                    batch_size: int = 512) -> dict[str, float]:
    """Accuracy of ``model`` on ``data``: ``authorized`` through ``transform``, ``unauthorized`` on raw inputs."""
    out = {"unauthorized": evaluate(model, data, batch_size=batch_size)["accuracy"]}
    if transform is not None:
        out["authorized"] = evaluate(model, data, batch_size=batch_size, transform=transform)["accuracy"]
    return out
