"""netmark: embed, verify and attack ownership watermarks in PyTorch models."""

from __future__ import annotations

__version__ = "0.1.0"
