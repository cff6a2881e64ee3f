"""The check after every embedding: does the owner's key verify, and did the task learn?

:meth:`WatermarkMethod.embed <netmark.methods.base.WatermarkMethod.embed>` runs :func:`check_embedding`
on the model it trained and returns the outcome as ``run.check`` (an :class:`EmbedCheck`); ``netmark embed``
refuses to write a model that fails it (exit 3, unless ``--allow-undetected``).

Two questions, two rules:

* **Detected.** The owner's model is verified with the owner's key exactly as ``netmark verify`` does
  (:func:`netmark.methods.verify`, default ``alpha = 1e-6``).
* **At chance.** The marked model's accuracy on the evaluation data (the test set when one is given, else
  the training data) is compared with the accuracy of the best constant answer, the majority-class share
  ``p0`` of the evaluated labels (1/C on a balanced set). Null hypothesis: the model is no better than that;
  then its number of correct answers ``k`` out of ``n`` is at most Binomial(n, p0). The model is *at chance*
  when this null is not rejected: ``P[Binomial(n, p0) >= k] > CHANCE_ALPHA`` (1e-3). On the 10,000 balanced
  Fashion-MNIST test images (p0 = 0.1) that means fewer than 1095 correct (accuracy < 10.95%); on the 360
  digits test images (p0 = 37/360), fewer than 57 (< 15.8%). A model between that bound and a useful
  accuracy passes: the rule flags a model that learnt nothing, not a weak one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from netmark.training import TrainResult, evaluating, forward, iter_batches, model_device, to_device
from netmark.verify import DEFAULT_ALPHA, VerificationResult

if TYPE_CHECKING:
    from netmark.keys import WatermarkKey
    from netmark.methods.base import WatermarkMethod

#: significance level of the one-sided binomial test "accuracy above the majority-class rate"
CHANCE_ALPHA = 1e-3


def chance_p_value(correct: int, n: int, rate: float) -> float:
    """``P[Binomial(n, rate) >= correct]``: how likely a model no better than ``rate`` scores ``correct``."""
    from scipy.stats import binom

    if n <= 0:
        return 1.0
    return float(binom.sf(correct - 1, n, min(max(rate, 0.0), 1.0)))


@torch.no_grad()
def accuracy_and_chance(model: nn.Module, data: Dataset | DataLoader, batch_size: int = 512) -> tuple[int, int, float]:
    """(correct answers, images, majority-class share of the labels) of ``model`` on ``data``."""
    device = model_device(model)
    correct, n = 0, 0
    counts: torch.Tensor | None = None
    with evaluating(model):
        for x, y in iter_batches(data, batch_size):
            logits = forward(model, to_device(x, device))
            y = y.to(torch.int64).reshape(-1)
            correct += int((logits.argmax(1).cpu() == y).sum())
            n += len(y)
            c = torch.bincount(y, minlength=int(logits.shape[1]))
            counts = c if counts is None else _add_counts(counts, c)
    rate = float(counts.max()) / n if counts is not None and n else 0.0
    return correct, n, rate


def _add_counts(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    size = max(len(a), len(b))
    return torch.nn.functional.pad(a, (0, size - len(a))) + torch.nn.functional.pad(b, (0, size - len(b)))


@dataclass(frozen=True)
class EmbedCheck:
    """Outcome of :func:`check_embedding`.

    Attributes:
        verification: the owner's key verified on the marked model.
        correct, images: correct answers / images of the accuracy measurement.
        data: which data the accuracy was measured on: ``"test"`` (the embed's ``eval_data``) or ``"train"``.
        chance_rate: majority-class share of those images' labels (the best constant answer's accuracy).
        chance_p_value: ``P[Binomial(images, chance_rate) >= correct]``.
        advice: what to change (the method's :meth:`~netmark.methods.base.WatermarkMethod.embed_advice`),
            empty when the check passes.
        unverifiable: why the key could not be verified (then ``verification`` is ``None``).
        match: what the verification reached, in the method's words
            (:meth:`~netmark.methods.base.WatermarkMethod.describe`).
    """

    verification: VerificationResult | None
    correct: int
    images: int
    data: str
    chance_rate: float
    chance_p_value: float
    advice: str = ""
    unverifiable: str = ""
    match: str = ""

    @property
    def detected(self) -> bool:
        return self.verification is not None and self.verification.detected

    @property
    def accuracy(self) -> float:
        return self.correct / self.images if self.images else float("nan")

    @property
    def at_chance(self) -> bool:
        """Accuracy not significantly above the majority-class rate (``chance_p_value > CHANCE_ALPHA``)."""
        return self.chance_p_value > CHANCE_ALPHA

    @property
    def ok(self) -> bool:
        return self.detected and not self.at_chance

    def reached(self) -> str:
        """What the embedding reached, in one line."""
        v = self.verification
        chance = (f" (at chance: the majority class alone scores {self.chance_rate:.4f})" if self.at_chance else "")
        acc = f"{self.data} accuracy {self.accuracy:.4f} on {self.images} images{chance}"
        if v is None:
            return f"the key cannot be verified ({self.unverifiable}); {acc}"
        op = "<=" if v.detected else ">"
        return f"{self.match}, p = {v.p_value:.3g} {op} alpha {v.threshold:g}; {acc}"

    def problem(self) -> str | None:
        """One line saying what failed, what was reached and what to change; ``None`` when the check passes."""
        if self.ok:
            return None
        what = " and ".join(w for w, bad in (("watermark not detected", not self.detected),
                                            ("task accuracy at chance", self.at_chance)) if bad)
        return f"{what}: {self.reached()}. {self.advice}"

    def to_dict(self) -> dict[str, Any]:
        v = self.verification
        return {"detected": self.detected, "p_value": v.p_value if v else None, "score": v.score if v else None,
                "alpha": v.threshold if v else None, "unverifiable": self.unverifiable or None,
                "accuracy": self.accuracy, "accuracy_data": self.data,
                "images": self.images, "chance_rate": self.chance_rate, "chance_p_value": self.chance_p_value,
                "at_chance": self.at_chance, "ok": self.ok}


def check_embedding(method: WatermarkMethod, model: nn.Module, key: WatermarkKey, data: Dataset, *,
                    data_name: str = "test", alpha: float = DEFAULT_ALPHA) -> EmbedCheck:
    """Verify ``key`` on ``model`` and test its accuracy on ``data`` against chance (module docstring).

    A key that cannot be verified yet (a trigger set with image-dependent labels embedded with ``null_models=0``:
    its null is not calibrated) fails the check as not detected, with the reason in ``unverifiable``."""
    from netmark.errors import KeyFileError
    from netmark.methods.dispatch import verify

    res: VerificationResult | None
    unverifiable = ""
    try:
        res = verify(model, key, alpha=alpha)
    except KeyFileError as e:
        res, unverifiable = None, str(e)
    correct, n, rate = accuracy_and_chance(model, data)
    p = chance_p_value(correct, n, rate)
    at_chance = p > CHANCE_ALPHA
    detected = res is not None and res.detected
    advice = "" if detected and not at_chance else method.embed_advice(at_chance=at_chance)
    return EmbedCheck(verification=res, correct=correct, images=n, data=data_name, chance_rate=rate,
                      chance_p_value=p, advice=advice, unverifiable=unverifiable,
                      match=method.describe(res) if res is not None else "")


@dataclass
class EmbedResult(TrainResult):
    """What :meth:`~netmark.methods.base.WatermarkMethod.embed` returns as ``run``: the training history
    plus ``check``, the :class:`EmbedCheck` of the marked model."""

    check: EmbedCheck | None = None

    @classmethod
    def of(cls, run: TrainResult, check: EmbedCheck) -> EmbedResult:
        return cls(**{f.name: getattr(run, f.name) for f in fields(run) if f.name != "check"}, check=check)


__all__ = ["CHANCE_ALPHA", "EmbedCheck", "EmbedResult", "accuracy_and_chance", "chance_p_value", "check_embedding"]
