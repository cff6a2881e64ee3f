"""What the paper studies' measurements share: the independent models of a false-positive check and its results
block, a run's per-epoch history as a series, and the hook that records an attack's history."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from torch import nn

from netmark.bench.spec import INDEPENDENT_SEED, independent_run
from netmark.keys import WatermarkKey
from netmark.methods import false_positive_rate
from netmark.training import TrainHook

if TYPE_CHECKING:
    from netmark.bench.runner import Runner, Trained


def independents(runner: Runner, n: int, prefix: str = "") -> list[Trained]:
    """The ``n`` independent models of the plan (:func:`netmark.bench.spec.independent_specs`)."""
    return [runner.get(independent_run(i, prefix)) for i in range(n)]


def independents_desc(n: int, arch: str, *details: str) -> str:
    """``20 independent lenet5 (seeds 1000..1019, 6000 images, 3 epochs)``: ``details`` inside the brackets."""
    return f"{n} independent {arch} (seeds {INDEPENDENT_SEED}..{INDEPENDENT_SEED + n - 1}, {', '.join(details)})"


def false_positives(models: Sequence[nn.Module], key: WatermarkKey, desc: str,
                    **extra: Any) -> tuple[dict[str, Any], list[float]]:
    """:func:`netmark.methods.false_positive_rate` of ``key`` over ``models`` as a results block (``models``:
    ``desc``, then ``extra``) and, apart, the models' scores."""
    block = false_positive_rate(list(models), key).to_dict()
    scores = block.pop("scores")
    return {**block, "models": desc, **extra}, scores


def series(history: Sequence[dict[str, float]], key: str, scale: float = 1.0) -> list[float | None]:
    """``key`` of every epoch of a history (times ``scale``; ``None`` where an epoch lacks it)."""
    return [h[key] * scale if key in h else None for h in history]


class HistoryHook(TrainHook):
    """Adds ``measure(model)`` (e.g. the owner's score) to the metrics after every epoch of an attack and keeps the
    history (an attack returns only the model)."""

    def __init__(self, measure: Callable[[nn.Module], dict[str, float]]) -> None:
        self.measure = measure
        self.history: list[dict[str, float]] = []

    def on_epoch_end(self, model: nn.Module, epoch: int, metrics: dict[str, float]) -> None:
        metrics.update(self.measure(model))
        self.history.append(dict(metrics))
