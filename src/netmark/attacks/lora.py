"""LoRA fine-tuning merged into the base: the adapter route a thief takes to make a stolen model his own (issue 22,
item 6).

Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models" (ICLR 2022): each targeted weight ``W`` is frozen and
trained as ``W + (α/r)·B·A`` with rank-``r`` factors ``B`` (zero-initialised) and ``A``; after training the product is
merged into ``W`` (``merge_and_unload``), so the released model has the base architecture and no adapter. Every
targeted weight moves by a low-rank update; the others keep their values. Implemented with Hugging Face ``peft``
(``pip install 'netmark[hf]'``), which adapts Linear, Conv2d, Embedding and GPT-2's Conv1D layers of any
``nn.Module``; the paper's defaults: ``r`` = 8, α = 16 (their §7 uses r ∈ {1, 2, 4, 8, 64}), dropout 0.

Threat model: the thief holds the stolen model and some data of the task; he spends a fine-tuning's compute on the
adapters only (the cheapest way to fine-tune a large model).

Args:
    rank, alpha, dropout: LoRA's ``r``, ``α`` and dropout [8, 16, 0.0].
    targets: layer names to adapt (default: every Linear, Conv2d and Conv1D layer but the output head).
    train: the fine-tuning schedule [1 epoch, Adam lr 1e-3].
    seed: the adapters' initialisation and the fine-tuning.

Example::

    stolen = Lora(LoraConfig(rank=4, train=TrainConfig(epochs=2, lr=1e-3, optimizer="adam")))(model, thief_data)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from torch import nn
from torch.utils.data import Dataset

from netmark._util import seeded
from netmark.attacks.base import Attack, AttackConfig, register_attack
from netmark.errors import ConfigError
from netmark.models import ARCH_ATTR
from netmark.training import TrainConfig, train


@dataclass
class LoraConfig(AttackConfig):
    """Settings of :class:`Lora` (module docstring)."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    targets: list[str] | None = None
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, lr=1e-3, optimizer="adam",
                                                                   progress=False))

    def __post_init__(self) -> None:
        if not isinstance(self.train, TrainConfig):
            raise ConfigError("LoraConfig.train must be a TrainConfig")
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or not 1 <= self.rank <= 4096:
            raise ConfigError(f"rank must be an integer in 1..4096, got {self.rank!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, int) or not 0 < self.alpha <= 1_000_000:
            raise ConfigError(f"alpha must be a positive integer, got {self.alpha!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, int | float) or not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if isinstance(self.targets, tuple):
            self.targets = list(self.targets)
        if self.targets is not None and (not isinstance(self.targets, list) or not self.targets
                                         or not all(isinstance(t, str) and t for t in self.targets)):
            raise ConfigError(f"targets must be a non-empty list of layer names or None, got {self.targets!r}")


def default_targets(model: nn.Module) -> list[str]:
    """Every Linear, Conv2d and Hugging Face Conv1D layer of ``model`` but the last of them (the output head)."""
    from netmark.models import host_layers

    names = [n for n, m in host_layers(model).items() if not isinstance(m, nn.Embedding | nn.Conv1d | nn.Conv3d)]
    if len(names) < 2:
        raise ConfigError("LoRA needs a hidden Linear/Conv2d/Conv1D layer besides the output head")
    return names[:-1]


@register_attack
class Lora(Attack[LoraConfig]):
    """LoRA adapters trained on the thief's data, merged into the weights (module docstring)."""

    name = "lora"
    needs_data = True
    VERSION = 1

    @classmethod
    def example_config(cls) -> LoraConfig:
        return LoraConfig(rank=4, train=TrainConfig(epochs=1, lr=1e-3, optimizer="adam", batch_size=64,
                                                    progress=False))

    def apply(self, model: nn.Module, data: Dataset | None) -> nn.Module:
        try:
            import peft
        except ImportError:
            raise ConfigError("the lora attack needs peft: pip install 'netmark[hf]'") from None
        cfg = self.config
        targets = cfg.targets or default_targets(model)
        known = {n for n, _ in model.named_modules()}
        unknown = [t for t in targets if t not in known]
        if unknown:
            raise ConfigError(f"lora targets {', '.join(unknown)} are not layers of the model")
        arch = getattr(model, ARCH_ATTR, None)
        lora = peft.LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets)
        with seeded(cfg.seed):
            wrapped = peft.get_peft_model(model, lora)
        trainable = [p for p in wrapped.parameters() if p.requires_grad]
        train(wrapped, data, replace(cfg.train, seed=cfg.seed), params=trainable)  # type: ignore[arg-type]
        merged = wrapped.merge_and_unload()
        if not isinstance(merged, nn.Module):
            raise ConfigError("peft did not return the merged model")
        for p in merged.parameters():
            p.requires_grad_(True)
        if arch is not None:
            setattr(merged, ARCH_ATTR, arch)  # the registry's record survives the merge
        return merged


def lora(model: nn.Module, data: Dataset, config: LoraConfig | None = None) -> nn.Module:
    """Functional form of :class:`Lora`."""
    return Lora(config)(model, data)


