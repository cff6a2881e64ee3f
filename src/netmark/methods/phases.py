"""The phases of an embedding, owned by :meth:`WatermarkMethod.embed <netmark.methods.base.WatermarkMethod.embed>`.

``embed`` runs, for every method::

    prep = method.prepare(model, data, train_config, ...)     # checks; copies; pre-training (frontier stitching)
    key = method.create_key(model, seed=..., data=..., ...)   # unless a key is given
    hook = method.hook(key)
    run = train(model, data, prep.train_config, hooks=[hook], ...)
    key = method.finalize(key, model, hook=hook, ...)         # the key's final form, from the hook's state
    run = prep.combine(run)                                   # pre-training epochs first
    check_embedding(...)                                      # netmark.methods.check

A method declares its phases by overriding :meth:`~netmark.methods.base.WatermarkMethod.prepare` and
:meth:`~netmark.methods.base.WatermarkMethod.finalize` (both default to nothing); it never overrides ``embed``.
A hook never writes into its key: what training learns beyond the model's weights (Wang et al.'s extractor)
stays in the hook until ``finalize`` returns a new key. Your own training loop runs the same phases: create_key,
hook, your loop, ``key = method.finalize(key, model, hook=hook)`` (README, "Your own training loop").
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from netmark.training import TrainConfig, TrainResult


@dataclass
class EmbedPrep:
    """What :meth:`~netmark.methods.base.WatermarkMethod.prepare` hands to the hooked training and to ``finalize``.

    Attributes:
        train_config: the schedule of the hooked training (frontier stitching: its fine-tuning).
        unmarked: a CPU copy of the model before embedding (trigger sets: the architecture of the reference
            models that calibrate the null; DeepSigns' black box: the model its keys must not fool).
        phases: the epochs ``prepare`` trained before the hook (frontier stitching's plain training, tagged
            ``finetune`` 0.0); ``None``: none. When a list, :meth:`combine` puts them first and numbers and tags
            (``finetune`` 1.0) the hooked epochs after them.
        seconds: training time of ``phases``.
    """

    train_config: TrainConfig | None = None
    unmarked: nn.Module | None = None
    phases: list[dict[str, float]] | None = None
    seconds: float = 0.0

    def combine(self, run: TrainResult) -> TrainResult:
        """``run`` (the hooked training) preceded by :attr:`phases`."""
        if self.phases is None:
            return run
        n = len(self.phases)
        run.history = self.phases + [{**h, "epoch": float(n + i + 1), "finetune": 1.0}
                                     for i, h in enumerate(run.history)]
        run.seconds += self.seconds
        return run


__all__ = ["EmbedPrep"]
