"""netmark: embed, verify and attack ownership watermarks in PyTorch models.

>>> import netmark
>>> from netmark.methods.uchida import UchidaConfig
>>> model = netmark.build_model("simple-cnn", in_channels=1, image_size=8, num_classes=10)
>>> model, key, run = netmark.embed(model, netmark.load_data("digits"), UchidaConfig(bits=64))
>>> from netmark.methods import verify     # (netmark.verify is the statistics module)
>>> verify(model, key).detected
"""

from __future__ import annotations

from typing import Any

from netmark._version import __version__

__all__ = [
    "TrainConfig", "VerificationResult", "WatermarkKey", "__version__", "build_model", "embed", "load_data",
    "load_model", "save_model", "train",
]


def __getattr__(name: str) -> Any:
    """Lazy re-exports, so ``import netmark`` stays cheap and free of import cycles."""
    if name in ("embed",):
        from netmark.methods import embed

        return embed
    if name == "VerificationResult":
        from netmark.verify import VerificationResult

        return VerificationResult
    if name == "WatermarkKey":
        from netmark.keys import WatermarkKey

        return WatermarkKey
    if name in ("load_model", "save_model"):
        from netmark import io

        return getattr(io, name)
    if name in ("train", "TrainConfig"):
        from netmark import training

        return getattr(training, name)
    if name == "build_model":
        from netmark.models import build

        return build
    if name == "load_data":
        from netmark.data import load

        return load
    raise AttributeError(f"module 'netmark' has no attribute {name!r}")
