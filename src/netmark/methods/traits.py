"""What a watermarking method is, declared once (:class:`MethodTraits`) instead of guessed by its callers.

Every method class declares ``TRAITS``; a method whose kind depends on its config (DeepSigns' white and black
modes) overrides :meth:`~netmark.methods.base.WatermarkMethod.traits`. Callers ask the instance:

* ``payload``: what a key carries and a suspect gives back: ``"bits"`` (a multi-bit message read from the model),
  ``"values"`` (a real-valued payload, compared by Pearson's r) or ``"labels"`` (a trigger set: the labels the
  marked model answers, a zero-bit watermark);
* ``query_verifiable``: the key is verified from the suspect's answers alone (black box: a prediction API is
  enough); otherwise the suspect's weights or activations are read (white box);
* ``needs_data`` / ``needs_payload``: what :meth:`~netmark.methods.base.WatermarkMethod.create_key` must be given
  (training images; a payload). A bit message is taken by ``bits`` methods only, a payload by ``values`` ones;
* ``needs_trained_model``: the key is crafted on a trained model (frontier stitching's adversaries);
* ``reads_weights``: the extraction reads named weight tensors only, so any file holding them verifies, whatever
  its architecture (:mod:`netmark.weights`; the key records them: ``WatermarkKey.hosts``);
* :meth:`MethodTraits.describe` / :attr:`MethodTraits.score_name`: what a verification reached, in words, and what
  its ``score`` is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from netmark.verify import VerificationResult

PayloadKind = Literal["bits", "values", "labels"]
PAYLOAD_KINDS: tuple[str, ...] = ("bits", "values", "labels")
#: what ``VerificationResult.score`` is, by payload kind
SCORE_NAMES: dict[str, str] = {"bits": "bit accuracy", "values": "Pearson r", "labels": "trigger accuracy"}


@dataclass(frozen=True)
class MethodTraits:
    """The declared kind of a watermarking method (module docstring)."""

    payload: PayloadKind
    query_verifiable: bool = False
    needs_data: bool = False
    needs_payload: bool = False
    needs_trained_model: bool = False
    reads_weights: bool = False

    def __post_init__(self) -> None:
        if self.payload not in PAYLOAD_KINDS:
            raise ValueError(f"payload kind must be one of {', '.join(PAYLOAD_KINDS)}, got {self.payload!r}")
        if self.needs_payload and self.payload != "values":
            raise ValueError("only a method that embeds real values can need a payload")

    @property
    def takes_message(self) -> bool:
        """``create_key`` accepts a bit ``message`` (multi-bit methods only)."""
        return self.payload == "bits"

    @property
    def takes_payload(self) -> bool:
        """``create_key`` accepts a real-valued ``payload``."""
        return self.payload == "values"

    @property
    def score_name(self) -> str:
        """What ``VerificationResult.score`` measures for this method."""
        return SCORE_NAMES[self.payload]

    def describe(self, res: VerificationResult, *, with_ber: bool = False) -> str:
        """What ``res`` reached: ``16/100 triggers answered with the key's label``, ``64/64 bits match``
        (``with_ber``: ``(BER 0.0000)`` after it), ``Pearson r 0.9900 over 1800 values``."""
        if self.payload == "labels" and res.total_bits is not None:
            return f"{res.matched_bits}/{res.total_bits} triggers answered with the key's label"
        if self.payload == "bits" and res.total_bits is not None and res.bit_error_rate is not None:
            ber = f" (BER {res.bit_error_rate:.4f})" if with_ber else ""
            return f"{res.matched_bits}/{res.total_bits} bits match{ber}"
        if self.payload == "values" and "pearson" in res.details:
            return f"Pearson r {res.details['pearson']:.4f} over {res.details.get('size', '?')} values"
        return f"{self.score_name} {res.score:.4f}"


__all__ = ["PAYLOAD_KINDS", "SCORE_NAMES", "MethodTraits", "PayloadKind"]
