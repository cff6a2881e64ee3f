"""Input ranges of Chen & Wu 2018, §3.2: grey images in [0, 1], colour images in [−1, 1].

netmark's loaders yield every image in [0, 1]; the anti-piracy transform's σ = 0.1 and the Generator's
tanh output are relative to the range the model sees, so a colour model is protected (and must be
queried) on ``2x − 1``. The range is recorded in the transform key and in the released model's metadata
(``input_range``), so ``netmark evaluate`` and ``netmark piracy`` feed the model what it was trained on.
"""

from __future__ import annotations

from typing import Literal

from netmark.data import ArrayDataset
from netmark.errors import ConfigError

InputRange = Literal["unit", "symmetric"]
RANGES: dict[str, str] = {"unit": "[0, 1]", "symmetric": "[-1, 1]"}


def paper_range(channels: int) -> InputRange:
    """§3.2: ``unit`` ([0, 1]) for grey images, ``symmetric`` ([−1, 1]) for colour images."""
    return "unit" if channels == 1 else "symmetric"


def to_range(data: ArrayDataset, input_range: str) -> ArrayDataset:
    """``data`` (images in [0, 1], as netmark's loaders give them) mapped to ``input_range``."""
    if input_range not in RANGES:
        raise ConfigError(f"unknown input range {input_range!r}; choose one of {', '.join(RANGES)}")
    if input_range == "unit":
        return data
    return ArrayDataset(2.0 * data.x - 1.0, data.y, name=data.name, num_classes=data.num_classes,
                        classes=data.classes)
