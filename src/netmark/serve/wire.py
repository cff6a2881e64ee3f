"""The wire format of :mod:`netmark.serve` (described there): request bodies, their limits, the errors of both
ends, and what the server and the client share."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
from http import HTTPStatus
from typing import Any

import numpy as np
import torch
from torch import Tensor

from netmark.errors import ConfigError, NetmarkError

#: version of the wire format described in :mod:`netmark.serve` (reported by ``GET /health``)
WIRE_FORMAT = 1
#: most images one ``POST /predict`` may carry
DEFAULT_MAX_BATCH = 1024
#: largest request body the server reads (64 MiB)
DEFAULT_MAX_BODY_BYTES = 64 << 20
#: largest reply the client reads (16 MiB: far above a thousand labels)
DEFAULT_MAX_REPLY_BYTES = 16 << 20
#: seconds a server thread waits on a slow client before dropping it
HANDLER_TIMEOUT_S = 30.0


class ServeError(NetmarkError):
    """The prediction server cannot start (address in use, bad host or port, unusable model)."""


class BadRequest(Exception):  # noqa: N818 (a status to answer, not an error of the server)
    """A request the server refuses: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = status


def encode_batch(x: Tensor) -> dict[str, Any]:
    """The JSON request body of the wire format for a float batch ``x`` of shape ``(N, C, H, W)``."""
    if not isinstance(x, Tensor) or x.ndim != 4:
        raise ConfigError(f"a prediction batch must be a tensor of shape (N, C, H, W), got "
                          f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    arr = x.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4", copy=False)
    return {"shape": [int(s) for s in x.shape], "dtype": "float32",
            "data": base64.b64encode(arr.tobytes()).decode("ascii")}


def decode_batch(body: Any, *, max_batch: int = DEFAULT_MAX_BATCH) -> Tensor:
    """The float32 batch of a parsed request body (:class:`BadRequest` for anything off-format)."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object with shape, dtype and data")
    missing = [k for k in ("shape", "dtype", "data") if k not in body]
    if missing:
        raise BadRequest(f"the request lacks {', '.join(missing)}")
    shape, dtype, data = body["shape"], body["dtype"], body["data"]
    if (not isinstance(shape, list) or len(shape) != 4
            or any(isinstance(s, bool) or not isinstance(s, int) for s in shape)
            or shape[0] < 0 or any(s < 1 for s in shape[1:])):
        raise BadRequest(f"shape must be 4 integers [N, C, H, W] (N >= 0, the others >= 1), got {_short(shape)}")
    if dtype != "float32":
        raise BadRequest(f"dtype must be \"float32\", got {_short(dtype)}")
    if shape[0] > max_batch:
        raise BadRequest(f"a batch of {shape[0]} images exceeds this server's limit of {max_batch}; "
                         "send smaller batches", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
    if not isinstance(data, str):
        raise BadRequest("data must be a base64 string")
    expected = math.prod(shape) * 4
    if len(data) > 4 * ((expected + 2) // 3) + 4:  # refuse before decoding a body far off its shape
        raise BadRequest(f"data is longer than shape {shape} needs ({expected} bytes of float32)")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("data is not valid base64") from None
    if len(raw) != expected:
        raise BadRequest(f"data holds {len(raw)} bytes; shape {shape} of float32 needs {expected}")
    x = torch.from_numpy(np.frombuffer(raw, dtype="<f4").astype(np.float32)).reshape(shape)
    if not bool(torch.isfinite(x).all()):
        raise BadRequest("the batch holds NaN or infinite values")
    return x


def check_positive_ints(error: type[Exception], **values: Any) -> None:
    """``error`` naming the first of ``values`` that is not a positive integer."""
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise error(f"{name} must be a positive integer, got {v!r}")


def _short(v: Any, n: int = 80) -> str:
    s = repr(v)
    return s if len(s) <= n else s[:n] + "..."


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    h = host.strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False
