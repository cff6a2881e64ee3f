"""``netmark serve --protocol oip|kserve-v1``: the request and answer bodies of the standard protocols for netmark's own
server (:mod:`netmark.serve.server`), with the standard library only.

``oip`` (Open Inference Protocol v2, JSON form): ``POST /v2/models/{name}/infer`` with one input ``{"name", "shape":
[N, C, H, W], "datatype": "FP32"|"FP64"|integer, "data": [...]}`` (flat or nested, row-major) → ``{"model_name",
"outputs": [{"name": "output-0", "shape": [N], "datatype": "INT64", "data": [labels]}]}``; ``GET /v2/health/ready``
and ``GET /v2/models/{name}/ready`` answer 200. The binary tensor extension is refused (400).

``kserve-v1``: ``POST /v1/models/{name}:predict`` with ``{"instances": [C×H×W nested lists]}`` → ``{"predictions":
[labels]}``; ``GET /v1/models/{name}`` answers ``{"name", "ready": true}``.

As with netmark's own format the server answers labels only (the arg-max), never scores. Errors are ``{"error": "<one
line>"}`` with the statuses of :mod:`netmark.serve`.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import numpy as np
import torch
from torch import Tensor

from netmark.serve.wire import BadRequest, _short

_OIP_TYPES = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT8": np.int8, "INT16": np.int16,
              "INT32": np.int32, "INT64": np.int64, "UINT8": np.uint8}


def predict_path(protocol: str, name: str) -> str:
    """The path a client POSTs inputs to."""
    return {"oip": f"/v2/models/{name}/infer", "kserve-v1": f"/v1/models/{name}:predict"}.get(protocol, "/predict")


def ready_paths(protocol: str, name: str) -> tuple[str, ...]:
    """The paths a GET answers with the server's readiness (besides ``/health``)."""
    if protocol == "oip":
        return ("/v2/health/ready", "/v2/health/live", f"/v2/models/{name}/ready", f"/v2/models/{name}")
    if protocol == "kserve-v1":
        return (f"/v1/models/{name}",)
    return ()


def _tensor(values: Any, shape: list[int] | None, dtype: Any, max_batch: int) -> Tensor:
    try:
        arr = np.asarray(values, dtype=dtype)
    except (ValueError, TypeError, OverflowError):
        raise BadRequest("the input data is not a (nested) list of numbers of its datatype") from None
    if shape is not None:
        if not isinstance(shape, list) or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in shape):
            raise BadRequest(f"shape must be a list of non-negative integers, got {_short(shape)}")
        if arr.size != int(np.prod(shape)):
            raise BadRequest(f"data holds {arr.size} values; shape {shape} needs {int(np.prod(shape))}")
        arr = arr.reshape(shape)
    if arr.ndim != 4:
        raise BadRequest(f"inputs must be a batch of images (N, C, H, W), got shape {list(arr.shape)}")
    if arr.shape[0] > max_batch:
        raise BadRequest(f"a batch of {arr.shape[0]} images exceeds this server's limit of {max_batch}; send smaller "
                         "batches", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
    x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    if not bool(torch.isfinite(x).all()):
        raise BadRequest("the batch holds NaN or infinite values")
    return x


def decode(protocol: str, body: Any, *, max_batch: int) -> Tensor:
    """The float32 batch of a parsed ``oip`` or ``kserve-v1`` request (:class:`BadRequest` when off-format)."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    if protocol == "kserve-v1":
        if not isinstance(body.get("instances"), list):
            raise BadRequest("a KServe v1 request is {\"instances\": [...]}")
        return _tensor(body["instances"], None, np.float32, max_batch)
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise BadRequest("an OIP request carries exactly one input: {\"inputs\": [{\"name\", \"shape\", "
                         "\"datatype\", \"data\"}]}")
    inp = inputs[0]
    if "data" not in inp:
        raise BadRequest("the input has no \"data\" (the binary tensor extension is not supported)")
    if inp.get("datatype") not in _OIP_TYPES:
        raise BadRequest(f"datatype must be one of {', '.join(_OIP_TYPES)}, got {_short(inp.get('datatype'))}")
    return _tensor(inp["data"], inp.get("shape"), _OIP_TYPES[inp["datatype"]], max_batch)


def encode(protocol: str, labels: list[int], name: str) -> dict[str, Any]:
    """The answer body for ``labels``."""
    if protocol == "kserve-v1":
        return {"predictions": labels}
    return {"model_name": name, "outputs": [{"name": "output-0", "shape": [len(labels)], "datatype": "INT64",
                                             "data": labels}]}
