"""Fine-tuning / transfer learning (Uchida et al. 2017 §2.3 and §4.3 Table 8).

Threat model: the thief keeps training the stolen model, either on the same task
(same domain) or on another label set (different domain: the output layer is replaced by a
freshly initialised head for ``data.num_classes`` classes, e.g. another dataset or a
disjoint split of classes, and every layer is trained).

Args:
    train: the fine-tuning schedule (:class:`~netmark.training.TrainConfig`). Uchida
        re-initialises the learning rate to 0.1 for the second training (footnote 5) and
        trains as long as the first run; netmark's default is SGD lr 0.01, 10 epochs.
    new_head: replace the output layer; ``None`` = only when the data has a different
        number of classes than the model.

Example::

    stolen = finetune(model, other_data, FinetuneConfig(train=TrainConfig(epochs=5), new_head=True))
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn
from torch.utils.data import Dataset

from netmark.attacks.base import Attack, AttackConfig, register_attack
from netmark.errors import ArchitectureError, ConfigError
from netmark.training import TrainConfig, TrainHook, train


@dataclass
class FinetuneConfig(AttackConfig):
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=10, lr=0.01, progress=False))
    new_head: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.train, TrainConfig):
            raise ConfigError("FinetuneConfig.train must be a TrainConfig")


def num_classes_of(data: Dataset) -> int | None:
    n = getattr(data, "num_classes", None)
    return int(n) if n is not None else None


def output_layer(model: nn.Module) -> str:
    """The name of the output layer: the last Linear/Conv2d module (a 1×1 class conv in All-CNN-C)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    if not names:
        raise ArchitectureError(f"{type(model).__name__} has no Linear or Conv2d output layer")
    return names[-1]


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Rebuild the registered architecture with ``num_classes`` outputs and copy every tensor
    except the output layer's, which is freshly initialised (also when the class count is unchanged)."""
    from netmark.models import arch_of, build

    try:
        arch = arch_of(model)
    except (ArchitectureError, AttributeError) as e:
        raise ArchitectureError(f"a new output head needs a registered architecture ({e})") from None
    new = build(arch["name"], **{**arch["args"], "num_classes": num_classes})
    head = output_layer(model) + "."
    old_state, new_state = model.state_dict(), new.state_dict()
    kept = {k: v for k, v in old_state.items()
            if k in new_state and new_state[k].shape == v.shape and not k.startswith(head)}
    new.load_state_dict({**new_state, **kept})
    return new


@register_attack
class Finetune(Attack[FinetuneConfig]):
    """Same- or different-domain fine-tuning (see module docstring)."""

    name = "finetune"
    needs_data = True

    def __init__(self, config: FinetuneConfig | None = None, hooks: tuple[TrainHook, ...] = ()) -> None:
        super().__init__(config)
        self.hooks = hooks

    def apply(self, model: nn.Module, data: Dataset | None) -> nn.Module:
        if data is None:
            raise ConfigError("the finetune attack needs training data")
        k = num_classes_of(data)
        new_head = self.config.new_head
        if new_head is None:
            new_head = k is not None and k != _output_size(model)
        if new_head:
            if k is None:
                raise ConfigError("a new head needs data with a num_classes attribute")
            model = replace_head(model, k)
        train(model, data, self.config.train, hooks=self.hooks)
        return model


def _output_size(model: nn.Module) -> int | None:
    from netmark.models import arch_of

    try:
        return int(arch_of(model)["args"]["num_classes"])
    except (ArchitectureError, AttributeError, KeyError, TypeError):
        return None


def finetune(model: nn.Module, data: Dataset, config: FinetuneConfig | None = None) -> nn.Module:
    """Functional form of :class:`Finetune`."""
    return Finetune(config)(model, data)
