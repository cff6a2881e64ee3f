"""The anti-piracy transform as a secret key file (netmark's one key format, :mod:`netmark.keys`).

The transform G is the owner's secret (Chen & Wu 2018, §2: kept in a trusted module, never released
with the model). It is stored as a :class:`~netmark.keys.WatermarkKey` with ``method = "chen-wu"``, no
layer and no message: G's tensors (the universal δ or the generator's weights) plus its
:class:`TransformConfig` and input shape, fingerprinted, written atomically with 0600 permissions.
:func:`transform_from_key` rebuilds G and rejects anything else with a :class:`KeyFileError`.
US patent 11,687,623 B2 covers the scheme (see :mod:`netmark.access`).
"""

from __future__ import annotations

from typing import Any

import torch

from netmark.access.transforms import AntiPiracyTransform, TransformConfig, build_transform
from netmark.errors import ConfigError, KeyFileError
from netmark.keys import WatermarkKey

KEY_METHOD = "chen-wu"


def transform_key(transform: AntiPiracyTransform, **provenance: Any) -> WatermarkKey:
    """The key file content of ``transform`` (``provenance``: extra JSON-able config entries)."""
    tensors = {k: v.detach().cpu().clone() for k, v in transform.state_dict().items()}
    config = {"transform": transform.config.to_dict(), "shape": list(transform.shape), **provenance}
    root = transform.root
    return WatermarkKey(method=KEY_METHOD, layer=None, message="", tensors=tensors, config=config,
                        seed=root if isinstance(root, int) else None,
                        root=root.hex() if isinstance(root, bytes) else None)


def transform_from_key(key: WatermarkKey) -> AntiPiracyTransform:
    """Rebuild the transform a key holds; KeyFileError for another method's key or a malformed one."""
    if key.method != KEY_METHOD:
        raise KeyFileError(f"this is a {key.method!r} watermark key, not an anti-piracy transform key")
    cfg, shape = key.config.get("transform"), key.config.get("shape")
    if not isinstance(cfg, dict) or not isinstance(shape, list) or len(shape) != 3:
        raise KeyFileError("transform key has a malformed config (expected 'transform' and a 3-entry 'shape')")
    try:
        transform = build_transform(TransformConfig(**cfg), tuple(int(s) for s in shape))  # type: ignore[arg-type]
    except (ConfigError, TypeError, ValueError) as e:
        raise KeyFileError(f"transform key has an invalid transform config ({e})") from None
    expected = transform.state_dict()
    if set(expected) != set(key.tensors):
        raise KeyFileError(f"transform key holds tensors {sorted(key.tensors)}, a {transform.config.kind} "
                           f"transform needs {sorted(expected)}")
    for name, t in expected.items():
        if tuple(key.tensors[name].shape) != tuple(t.shape):
            raise KeyFileError(f"transform key tensor {name!r} has shape {list(key.tensors[name].shape)}, "
                               f"expected {list(t.shape)}")
    with torch.no_grad():
        transform.load_state_dict({k: v.to(expected[k].dtype) for k, v in key.tensors.items()})
    return transform
