"""What netmark's runtimes for standard model servers share (:mod:`netmark.serve.mlserver_runtime` for MLServer,
:mod:`netmark.serve.kserve_server` for KServe): loading a netmark model file, answering a batch with scores or labels,
and an optional bearer token.

Token: when the server process has the environment variable :data:`TOKEN_ENV` set, every inference request must carry
``Authorization: Bearer <that value>`` (else HTTP 401), as a gateway in front of a deployed model would demand; the
value is compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from netmark.errors import ConfigError

#: the environment variable holding the bearer token a runtime demands (unset: no token)
TOKEN_ENV = "NETMARK_SERVE_TOKEN"
#: what a runtime answers per input: the model's scores (logits) or their arg-max
OUTPUTS = ("logits", "labels")


def load_served_model(path: str | os.PathLike[str], arch_from_key: str | os.PathLike[str] | None = None) -> nn.Module:
    """The model in ``path`` (netmark ``.safetensors``, or a plain state dict with the architecture of the key file
    ``arch_from_key``), in eval mode."""
    from netmark.io import load_model
    from netmark.keys import WatermarkKey

    arch = WatermarkKey.load(Path(arch_from_key)).arch if arch_from_key else None
    return load_model(path, arch=arch).eval()


def check_outputs(outputs: str) -> str:
    """``outputs`` if it is one of :data:`OUTPUTS` (ConfigError otherwise)."""
    if outputs not in OUTPUTS:
        raise ConfigError(f"outputs must be one of {', '.join(OUTPUTS)}, got {outputs!r}")
    return outputs


def answer(model: nn.Module, x: np.ndarray, outputs: str) -> np.ndarray:
    """The model's answers for the float batch ``x``: float32 scores ``(N, classes)`` or int64 labels ``(N,)``."""
    batch = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))
    with torch.no_grad():
        scores = model(batch).float()
    if outputs == "labels":
        return scores.argmax(1).numpy().astype(np.int64)
    return scores.numpy()


def authorized(headers: Mapping[str, str] | None) -> bool:
    """Whether a request with ``headers`` may be answered (always, when :data:`TOKEN_ENV` is unset)."""
    token = os.environ.get(TOKEN_ENV)
    if not token:
        return True
    given = {k.lower(): v for k, v in (headers or {}).items()}.get("authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
