"""Knowledge distillation into a fresh model (Hinton, Vinyals, Dean 2015, "Distilling the Knowledge in a Neural
Network", arXiv:1503.02531, §2; Uchida et al. 2017 §2.2 cite it as "distill-to-embed").

Threat model: the thief holds the stolen model (or only its predictions) and unlabelled images of the task. They
never copy a weight: a *student* of the same architecture, freshly initialised from ``seed``, is trained to match
the stolen model's softened predictions on the thief's images (labels, if any, are ignored). A white-box mark in
the weights is not carried over at all, and a trigger-set mark only as far as the teacher's answers on the thief's
images encode it; the price is the student's accuracy. The comparative survey (``fkirin2022-comparative-study``)
evaluates fine-tuning, pruning, overwriting and compression; netmark adds distillation as the functional removal
attack next to them.

Loss (Hinton §2): soft targets ``q = softmax(z_teacher / T)``, the student's ``p = softmax(z_student / T)``,
``loss = T² · KL(q ‖ p)`` (batch mean; the ``T²`` keeps the gradient size independent of ``T``). No hard-label term.

Args:
    epochs: passes over the thief's images (>= 1; default 10).
    lr: learning rate (default 1e-3).
    temperature: ``T`` > 0 (default 4; Hinton et al. use 2-20).
    batch_size: minibatch size (default 64).
    optimizer: any :data:`netmark.training.OPTIMIZERS` name (default ``adam``).
    seed: initialises the student and shuffles the images.

Example::

    student = distill(stolen, thief_images, DistillConfig(epochs=5, temperature=4.0))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from netmark._util import check_choice, check_finite, check_int, generator
from netmark.attacks.base import Attack, AttackConfig, register_attack
from netmark.errors import ArchitectureError, ConfigError
from netmark.training import (
    OPTIMIZERS,
    OptimizerName,
    TrainConfig,
    iter_batches,
    make_optimizer,
    model_device,
    reinitialised,
)


@dataclass
class DistillConfig(AttackConfig):
    epochs: int = 10
    lr: float = 1e-3
    temperature: float = 4.0
    batch_size: int = 64
    optimizer: OptimizerName = "adam"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            check_int(f"distillation {name}", getattr(self, name))
        for name in ("lr", "temperature"):
            check_finite(f"distillation {name}", getattr(self, name), positive=True)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)

    def schedule(self) -> TrainConfig:
        """The optimizer settings as a :class:`TrainConfig` (for :func:`netmark.training.make_optimizer`)."""
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, optimizer=self.optimizer, lr=float(self.lr),
                           seed=self.seed, progress=False)


def fresh_student(model: nn.Module) -> nn.Module:
    """A freshly initialised model of ``model``'s architecture (from the global RNG: seed it around the call).

    A registered architecture is rebuilt with :func:`netmark.models.build`; any other module is copied and every
    submodule's ``reset_parameters`` called."""
    from netmark.models import arch_of, build

    try:
        arch = arch_of(model)
    except ArchitectureError:
        return reinitialised(model)
    return build(arch["name"], **arch["args"])


def distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T² · KL(softmax(teacher / T) ‖ softmax(student / T))``, mean over the batch."""
    t = float(temperature)
    return F.kl_div(F.log_softmax(student_logits / t, 1), F.log_softmax(teacher_logits / t, 1),
                    reduction="batchmean", log_target=True) * (t * t)


def fit_student(student: nn.Module, data: Dataset, targets: Callable[[Tensor, Tensor], Tensor],
                loss_fn: Callable[[Tensor, Tensor], Tensor], schedule: TrainConfig, *, what: str) -> nn.Module:
    """Train ``student`` in place for ``schedule.epochs`` passes over ``data`` (shuffled from ``schedule.seed``):
    each batch's ``(x, y)`` gives the target ``targets(x, y)`` (computed without gradient: the teacher's logits, or
    answers looked up by index) and the loss ``loss_fn(student(x), target)``. Shared by :class:`Distill` and the
    extraction attack (:mod:`netmark.attacks.extraction`); ``what`` names the attack in a divergence error."""
    device = model_device(student)
    opt = make_optimizer(list(student.parameters()), schedule)
    gen = generator(schedule.seed)
    for _ in range(schedule.epochs):
        student.train()
        for x, y in iter_batches(data, schedule.batch_size, shuffle=True, gen=gen):
            x = x.to(device)
            with torch.no_grad():
                target = targets(x, y)
            loss = loss_fn(student(x), target)
            if not torch.isfinite(loss):
                raise ConfigError(f"{what} diverged (loss {float(loss)}); lower the learning rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return student


@register_attack
class Distill(Attack[DistillConfig]):
    """Distillation of the stolen model into a fresh student (see module docstring)."""

    name = "distill"
    needs_data = True

    def apply(self, model: nn.Module, data: Dataset | None) -> nn.Module:
        if data is None:
            raise ConfigError("the distill attack needs the attacker's images")
        cfg = self.config
        teacher = model.eval()
        student = fresh_student(model).to(model_device(model))
        return fit_student(student, data, lambda x, _y: teacher(x),
                           lambda logits, soft: distill_loss(logits, soft, cfg.temperature), cfg.schedule(),
                           what="distillation")


def distill(model: nn.Module, data: Dataset, config: DistillConfig | None = None) -> nn.Module:
    """Functional form of :class:`Distill`."""
    return Distill(config)(model, data)
