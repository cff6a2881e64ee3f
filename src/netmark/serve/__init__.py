"""A model behind HTTP: a tiny prediction server and the client that queries one.

Black-box watermarks (:mod:`netmark.methods.triggerset`) are verified through queries only. This
module gives that setting a concrete form with the standard library alone (``http.server``,
``urllib.request``): :func:`make_server` serves a model, :class:`HttpPredictor` turns an endpoint
into a :data:`~netmark.methods.triggerset.Predictor`, so
``method.verify_query(HttpPredictor(url), key)`` (or ``netmark verify URL --key KEY``) tests a
suspect you can only query.

Wire format (version 1)
-----------------------

``POST /predict`` with ``Content-Type: application/json`` and the body::

    {"shape": [N, C, H, W], "dtype": "float32", "data": "<base64>"}

``data`` is the standard base64 (RFC 4648, with padding) of the ``N*C*H*W`` values as little-endian
IEEE-754 float32, in C (row-major) order; every value must be finite. The answer is ``200`` with::

    {"labels": [l_0, ..., l_{N-1}]}

one integer class index (the arg-max of the model's outputs) per image, in order.

``GET /health`` answers ``200`` with what the server knows of its model::

    {"status": "ok", "format": 1, "arch": "simple-cnn" | null, "input_shape": [C, H, W] | null,
     "num_classes": 10 | null, "max_batch": 1024, "max_body_bytes": 67108864}

Every error is a JSON object ``{"error": "<one line>"}`` with a 4xx status for a bad request (400
malformed body, shape, dtype, non-finite values or an input shape the model does not take; 404
unknown path; 405 wrong method; 411 no ``Content-Length``; 413 body or batch over the limits) and
500 if the model itself fails. The server never dies of a bad request and never prints tracebacks
(they go to the ``netmark.serve`` logger at debug level).

Security: the server binds ``127.0.0.1`` by default; bind another address only on a network you
trust (there is no authentication; anyone who reaches it can query the model).

Standard protocols: ``netmark serve --protocol oip|kserve-v1`` answers the Open Inference Protocol v2 or KServe v1
instead (:mod:`~netmark.serve.standard`), and ``netmark verify URL --protocol oip|kserve-v1 [--header 'Name: value']``
queries any server that speaks them: KServe, Triton, MLServer, BentoML (:mod:`~netmark.serve.protocols`). netmark
models run on MLServer through :mod:`~netmark.serve.mlserver_runtime` and on KServe's ModelServer through
:mod:`~netmark.serve.kserve_server` (the extra ``netmark[serve]``).

Modules: :mod:`~netmark.serve.wire` (the format, its limits and errors), :mod:`~netmark.serve.server` (the server)
and :mod:`~netmark.serve.client` (:class:`HttpPredictor`); everything public is importable from here.
"""

from __future__ import annotations

from netmark.serve.client import HttpPredictor, is_url, redact_url
from netmark.serve.server import PredictionServer, make_server
from netmark.serve.wire import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_REPLY_BYTES,
    HANDLER_TIMEOUT_S,
    WIRE_FORMAT,
    BadRequest,
    ServeError,
    decode_batch,
    encode_batch,
    is_loopback,
)

__all__ = ["DEFAULT_MAX_BATCH", "DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_REPLY_BYTES", "HANDLER_TIMEOUT_S", "WIRE_FORMAT",
           "BadRequest", "HttpPredictor", "PredictionServer", "ServeError", "decode_batch", "encode_batch",
           "is_loopback", "is_url", "make_server", "redact_url"]
