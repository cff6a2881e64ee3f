"""The one table of small example configs: each registered method's :meth:`~WatermarkMethod.example_config` (and
:meth:`~WatermarkMethod.example_variants`), so that a new method brings its own.

An example embeds on digits with a simple-cnn (12 epochs, lr 0.05, batch 64) and is detected. The method contract
tests (``tests/test_methods.py``) run every :func:`example_cases` entry; the DDP tests (``tests/test_ddp.py``) and
the ``quick`` / ``tiny`` evaluation presets (:data:`netmark.evaluation.presets.SMALL_OPTIONS`) start from the same
configs and state their differences where they use them.
"""

from __future__ import annotations

from typing import Any

from netmark.methods.base import METHODS, MethodConfig


def example(name: str, variant: str | None = None) -> MethodConfig:
    """Method ``name``'s example config (``variant``: one of its :meth:`~WatermarkMethod.example_variants`)."""
    cls = METHODS[name]
    return cls.example_config() if variant is None else cls.example_variants()[variant]


def example_cases() -> list[tuple[str, str, MethodConfig]]:
    """``(case id, method name, config)``: every registered method's example (id: its name), then every variant
    (id: ``name-variant``), in name order."""
    names = sorted(METHODS)
    cases = [(n, n, example(n)) for n in names]
    return cases + [(f"{n}-{v}", n, c) for n in names for v, c in METHODS[n].example_variants().items()]


def example_options(name: str, variant: str | None = None) -> dict[str, Any]:
    """The example's options that differ from the config's defaults (what a preset writes down)."""
    config = example(name, variant)
    default = type(config)().to_dict()
    return {k: v for k, v in config.to_dict().items() if v != default[k]}


__all__ = ["example", "example_cases", "example_options"]
