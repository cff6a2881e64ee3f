"""Watermarking schemes: one file per scheme, one protocol (:mod:`netmark.methods.base`).

Importing this package registers every scheme in :data:`METHODS`: it imports every module of the package (name
order), so a new scheme is one new module (plus its golden entry in ``tests/data/method_outputs.json``), with no
list to edit here. The scheme modules named below are only re-exported.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.utils.data import Dataset

from netmark._util import import_submodules
from netmark.errors import ConfigError
from netmark.keys import WatermarkKey
from netmark.methods import adi, deepsigns, frontier, tartaglione, triggerset, uchida, wang, zhang
from netmark.methods.base import METHODS, Extraction, MethodConfig, WatermarkMethod, random_message, register_method
from netmark.methods.dispatch import false_positive_rate, get_method, method_from_key, verify

#: every module of this package, imported (each scheme registers itself in METHODS)
MODULES: list[str] = import_submodules(__name__, __path__)

__all__ = [
    "METHODS", "MODULES", "Extraction", "MethodConfig", "WatermarkMethod", "adi", "deepsigns", "embed",
    "false_positive_rate", "frontier", "get_method", "method_for_config", "method_from_key", "random_message",
    "register_method", "tartaglione", "triggerset", "uchida", "verify", "wang", "zhang",
]


def method_for_config(config: MethodConfig) -> WatermarkMethod:
    """The registered method whose config class ``config`` is an instance of."""
    for cls in METHODS.values():
        if type(config) is cls.config_cls:
            return cls(config)
    raise ConfigError(f"no registered watermark method takes a {type(config).__name__}")


def embed(model: nn.Module, data: Dataset, config: MethodConfig, train_config: Any = None, *, seed: int | None = None,
          message: str | None = None, eval_data: Dataset | None = None, teacher: nn.Module | None = None,
          ) -> tuple[nn.Module, WatermarkKey, Any]:
    """``embed(model, data, UchidaConfig(...), TrainConfig(...))`` → ``(model, key, history)``.

    The method is chosen by the config's type; see :meth:`WatermarkMethod.embed` (``seed``: draw the key from this
    research seed; default a secret root from the OS CSPRNG).
    """
    return method_for_config(config).embed(model, data, train_config, seed=seed, message=message,
                                           eval_data=eval_data, teacher=teacher)
