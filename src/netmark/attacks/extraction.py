"""Model extraction through queries only, knockoff-style (Orekondy, Schiele, Fritz, "Knockoff Nets: Stealing
Functionality of Black-Box Models", CVPR 2019, §3-§4; the SoK of Lukas et al., S&P 2022, lists it among the
"retraining" / extraction attacks).

Threat model: the thief can only query the stolen model's API (image in, answer out) and holds unlabelled images
of some distribution — the task's (the attacker's split) or another domain's: whatever dataset is passed. They send
``queries`` of them to the API, keep the answers as labels (the *transfer set*) and train a FRESH model on it; no
weight of the victim is read or copied, and the labels of the passed dataset are never read (only its inputs).

Knockoff Nets' two steps (§3): (i) query a set of images — netmark uses their ``random`` sampling strategy (a uniform
draw without replacement from the passed images, from ``seed``), not the adaptive (reinforcement-learning) one;
(ii) train the knockoff on the image–answer pairs. The API answers either the top-1 label (``answers="label"``, the
default: the weakest API, the one a trigger-set verifier also sees) or the full probability vector
(``answers="probs"``; the paper's main setting); the knockoff is trained by cross-entropy with the labels or with the
probabilities (``KL(p_victim ‖ p_knockoff)``, :func:`netmark.attacks.distill.distill_loss` at ``T = 1``).

Departures from the paper (scale): Knockoff Nets fine-tunes an ImageNet-pretrained ResNet-34 on the order of
10^4-10^5 queries of natural images; netmark trains a freshly initialised model of the victim's architecture (or
``arch``, a registered architecture built with the victim's input shape and class count) from scratch, with the
schedule ``train`` (netmark's default, not the paper's: 10 epochs of SGD, lr 0.01, momentum 0.9, batch 64). The
answers are asked once per query image and kept (a deterministic API answers the same each time): ``queries`` is the
number of images sent, the API cost.

Args:
    queries: images sent to the API (>= 1, at most the size of the passed data; ``None``: all of them) [None].
    answers: ``"label"`` (top-1) or ``"probs"`` (softmax vector) ["label"].
    arch: a registered architecture for the knockoff (``None``: the victim's) [None].
    train: the knockoff's training schedule (its ``seed`` is replaced by the attack's).
    batch_size: images per API call [256].
    seed: the query draw, the knockoff's initialisation and its training.

Example::

    knockoff = Extraction(ExtractionConfig(queries=1000))(stolen, thief_images)
"""

from __future__ import annotations

from collections.abc import Sized
from dataclasses import dataclass, field, replace
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from netmark._util import check_choice, check_int, generator
from netmark.attacks.base import Attack, AttackConfig, register_attack
from netmark.attacks.distill import distill_loss, fit_student, fresh_student
from netmark.data import TensorPairs, inputs_of
from netmark.errors import ArchitectureError, ConfigError
from netmark.training import TrainConfig, evaluating, forward, model_device

Answers = Literal["label", "probs"]
ANSWERS: tuple[str, ...] = ("label", "probs")
#: the victim's architecture arguments a knockoff of another registered architecture takes over
SHARED_ARGS = ("in_channels", "image_size", "num_classes")


@dataclass
class ExtractionConfig(AttackConfig):
    """Settings of :class:`Extraction` (module docstring)."""

    queries: int | None = None
    answers: Answers = "label"
    arch: str | None = None
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=10, lr=0.01, batch_size=64, progress=False))
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.queries is not None:
            check_int("extraction queries", self.queries)
        check_int("extraction batch_size", self.batch_size)
        check_choice("answers", self.answers, ANSWERS)
        if self.arch is not None and not isinstance(self.arch, str):
            raise ConfigError(f"extraction arch must be a registered architecture name, got {self.arch!r}")
        if not isinstance(self.train, TrainConfig):
            raise ConfigError("ExtractionConfig.train must be a TrainConfig")


def query_inputs(data: Dataset, queries: int | None, gen: torch.Generator) -> Tensor:
    """``queries`` inputs of ``data`` drawn uniformly without replacement (all of them, shuffled, for ``None``);
    only the inputs are read, never the labels (an in-memory dataset's ``x`` is indexed directly)."""
    n = len(cast(Sized, data))
    if queries is not None and queries > n:
        raise ConfigError(f"a budget of {queries} queries needs at least that many images; the data has {n}")
    return inputs_of(data, torch.randperm(n, generator=gen)[: n if queries is None else queries])


@torch.no_grad()
def ask(model: nn.Module, x: Tensor, answers: str, batch_size: int) -> Tensor:
    """The API's answers to ``x``: top-1 labels (int64) or softmax probabilities, one call per ``batch_size``."""
    device = model_device(model)
    out = []
    with evaluating(model):
        for i in range(0, len(x), batch_size):
            logits = forward(model, x[i : i + batch_size].to(device)).float()
            out.append((logits.argmax(1) if answers == "label" else F.softmax(logits, 1)).cpu())
    return torch.cat(out)


def knockoff_of(model: nn.Module, arch: str | None) -> nn.Module:
    """A fresh model: the victim's architecture, or the registered ``arch`` built with the victim's input shape
    and class count (:data:`SHARED_ARGS`; from the global RNG: seed it around the call)."""
    if arch is None:
        return fresh_student(model)
    from netmark.models import arch_of, build

    args = {k: v for k, v in arch_of(model)["args"].items() if k in SHARED_ARGS}
    try:
        return build(arch, args)
    except ArchitectureError as e:
        raise ConfigError(f"extraction: cannot build {arch!r} with the victim's arguments ({e})") from e


@register_attack
class Extraction(Attack[ExtractionConfig]):
    """Knockoff-style extraction: a fresh model trained on the victim's answers to ``queries`` images."""

    name = "extraction"
    needs_data = True
    VERSION = 1

    #: images sent to the API by the last call (the query budget actually spent)
    queries_sent: int = 0

    @classmethod
    def example_config(cls) -> ExtractionConfig:
        return ExtractionConfig(queries=32, train=TrainConfig(epochs=1, lr=0.01, batch_size=64, progress=False))

    def apply(self, model: nn.Module, data: Dataset | None) -> nn.Module:
        cfg = self.config
        x = query_inputs(cast(Dataset, data), cfg.queries, generator(cfg.seed))  # needs_data: the base checked it
        book = ask(model, x, cfg.answers, cfg.batch_size)
        self.queries_sent = len(x)
        knockoff = knockoff_of(model, cfg.arch).to(model_device(model))
        transfer = TensorPairs(x, torch.arange(len(x)))  # each image's "label": its index in the book

        def lookup(_x: Tensor, idx: Tensor) -> Tensor:
            return book[idx].to(_x.device)

        return fit_student(knockoff, transfer, lookup, answer_loss if cfg.answers == "probs" else F.cross_entropy,
                           replace(cfg.train, seed=cfg.seed), what="extraction")


def answer_loss(logits: Tensor, probs: Tensor) -> Tensor:
    """``KL(probs ‖ softmax(logits))``, batch mean: the knockoff's loss on probability answers."""
    return distill_loss(logits, probs.clamp_min(1e-12).log(), 1.0)
