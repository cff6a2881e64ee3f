"""The fine-tuning variants of the SoK (Lukas et al., "SoK: How Robust is Image Classification Deep Neural Network
Watermarking?", S&P 2022, §V and the WRT toolbox): which layers the thief retrains, and how.

* ``ftll`` — fine-tune the last layer only (the output head; every other weight frozen);
* ``ftal`` — fine-tune all layers;
* ``rtal`` — re-initialise the last layer, then fine-tune all layers (Adi et al. 2018 §5.1 introduced the four
  variants; the SoK keeps FTLL, FTAL and RTAL).

The SoK also runs each "with a large learning rate" (the thief trades some accuracy for removal: ``lr_factor`` times
the schedule's rate, or set ``train.lr``)
and "with label smoothing" (the training targets mix the label with the uniform distribution, ``(1 − ε)·onehot +
ε/C``, Szegedy et al. 2016, which flattens what the model is sure of, trigger answers included): ``label_smoothing``
= ε. Threat model: the thief holds the stolen model and some data of the task (the attacker's split).

Args:
    mode: ``ftll``, ``ftal`` (default) or ``rtal``.
    label_smoothing: ε in [0, 1) [0.0: plain cross-entropy].
    lr_factor: the schedule's learning rate is multiplied by it [1.0; the SoK's large-rate runs: about 10].
    train: the schedule [1 epoch, SGD lr 0.01; the SoK's large-rate runs use ~10× the owner's rate].
    seed: the re-initialisation (rtal) and the fine-tuning.

Example::

    stolen = SokFinetune(SokFinetuneConfig(mode="rtal", label_smoothing=0.1))(model, thief_data)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from netmark._util import check_finite, seeded
from netmark.attacks.base import Attack, AttackConfig, register_attack
from netmark.attacks.finetune import output_layer
from netmark.errors import ConfigError
from netmark.training import TrainConfig, TrainHook, train

MODES = ("ftll", "ftal", "rtal")


@dataclass
class SokFinetuneConfig(AttackConfig):
    """Settings of :class:`SokFinetune` (module docstring)."""

    mode: str = "ftal"
    label_smoothing: float = 0.0
    lr_factor: float = 1.0
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, lr=0.01, progress=False))

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if (isinstance(self.label_smoothing, bool) or not isinstance(self.label_smoothing, int | float)
                or not 0.0 <= float(self.label_smoothing) < 1.0):
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        check_finite("lr_factor", self.lr_factor, positive=True)
        if not isinstance(self.train, TrainConfig):
            raise ConfigError("SokFinetuneConfig.train must be a TrainConfig")


class LabelSmoothing(TrainHook):
    """Turns the task's cross-entropy into the label-smoothed one: ``(1 − ε)·CE + ε·U`` where ``U`` is the
    cross-entropy against the uniform distribution, by adding ``ε·(U − CE)``."""

    def __init__(self, eps: float) -> None:
        self.eps = float(eps)

    def extra_loss(self, model: nn.Module, x: Tensor, y: Tensor, logits: Tensor) -> dict[str, Tensor]:
        logp = F.log_softmax(logits, dim=1)
        uniform = -logp.mean(dim=1).mean()
        return {"label_smoothing": self.eps * (uniform - F.nll_loss(logp, y))}


@register_attack
class SokFinetune(Attack[SokFinetuneConfig]):
    """FTLL / FTAL / RTAL, optionally with label smoothing (module docstring)."""

    name = "sok-finetune"
    needs_data = True
    VERSION = 1

    @classmethod
    def example_config(cls) -> SokFinetuneConfig:
        return SokFinetuneConfig(mode="rtal", label_smoothing=0.1,
                                 train=TrainConfig(epochs=1, lr=0.01, batch_size=64, progress=False))

    def apply(self, model: nn.Module, data: Dataset | None) -> nn.Module:
        cfg = self.config
        head = model.get_submodule(output_layer(model))
        if cfg.mode == "rtal":
            reset = getattr(head, "reset_parameters", None)
            if not callable(reset):
                raise ConfigError(f"the output layer {output_layer(model)} cannot be re-initialised")
            with seeded(cfg.seed), torch.no_grad():
                reset()
        params = list(head.parameters()) if cfg.mode == "ftll" else None
        hooks = (LabelSmoothing(cfg.label_smoothing),) if cfg.label_smoothing > 0 else ()
        schedule = replace(cfg.train, seed=cfg.seed, lr=cfg.train.lr * cfg.lr_factor)
        train(model, data, schedule, hooks=hooks, params=params)  # type: ignore[arg-type]
        return model
