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
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import math
import socket
import socketserver
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from http import HTTPStatus
from http.client import HTTPException
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from netmark.errors import ArchitectureError, ConfigError, NetmarkError
from netmark.methods.triggerset import QueryError
from netmark.training import model_device

__all__ = [
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_BODY_BYTES",
    "WIRE_FORMAT",
    "HttpPredictor",
    "PredictionServer",
    "ServeError",
    "decode_batch",
    "encode_batch",
    "make_server",
]

log = logging.getLogger(__name__)

#: version of the wire format described in the module docstring (reported by ``GET /health``)
WIRE_FORMAT = 1
#: most images one ``POST /predict`` may carry
DEFAULT_MAX_BATCH = 1024
#: largest request body the server reads (64 MiB)
DEFAULT_MAX_BODY_BYTES = 64 << 20
#: largest reply the client reads (16 MiB: far above a thousand labels)
DEFAULT_MAX_REPLY_BYTES = 16 << 20
#: seconds a server thread waits on a slow client before dropping it
HANDLER_TIMEOUT_S = 30.0
_FORWARD_CHUNK = 256


class ServeError(NetmarkError):
    """The prediction server cannot start (address in use, bad host or port, unusable model)."""


class BadRequest(Exception):  # noqa: N818 (a status to answer, not an error of the server)
    """A request the server refuses: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = status


# ----------------------------------------------------------------------------- wire format


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


def _short(v: Any, n: int = 80) -> str:
    s = repr(v)
    return s if len(s) <= n else s[:n] + "..."


# ----------------------------------------------------------------------------- the server


def _model_info(model: nn.Module, input_shape: Sequence[int] | None) -> tuple[str | None, tuple[int, ...] | None]:
    """The model's registry name and input shape ``(C, H, W)`` (given, else from its registry args)."""
    from netmark.models import arch_of

    try:
        arch: dict[str, Any] | None = arch_of(model)
    except ArchitectureError:
        arch = None
    name = arch["name"] if arch else None
    if input_shape is not None:
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != 3 or any(s < 1 for s in shape):
            raise ServeError(f"input_shape must be 3 positive integers (C, H, W), got {tuple(input_shape)}")
        return name, shape
    try:
        args = arch["args"] if arch else {}
        return name, (int(args["in_channels"]), int(args["image_size"]), int(args["image_size"]))
    except (KeyError, TypeError, ValueError):
        return name, None


class PredictionServer(ThreadingHTTPServer):
    """Serves one model's labels (wire format: module docstring); one thread per request, one lock
    around the model. Start with :meth:`serve_forever` (or :meth:`start` for a background thread);
    stop with :meth:`shutdown` then :meth:`server_close`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, model: nn.Module, address: tuple[str, int], *, input_shape: Sequence[int] | None = None,
                 max_batch: int = DEFAULT_MAX_BATCH, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        for name, v in (("max_batch", max_batch), ("max_body_bytes", max_body_bytes)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ServeError(f"{name} must be a positive integer, got {v!r}")
        self.model = model.eval()
        self.lock = threading.Lock()
        self.max_batch, self.max_body_bytes = max_batch, max_body_bytes
        self.arch, self.input_shape = _model_info(model, input_shape)
        self.num_classes: int | None = None
        if self.input_shape is not None:
            out = self._forward(torch.zeros(1, *self.input_shape), probe=True)
            self.num_classes = int(out.shape[1])
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        """``http://host:port`` the server listens on (the bound port when started with port 0)."""
        host, port = self.server_address[:2]
        host = str(host)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> threading.Thread:
        """Serve in a daemon thread (returned); stop with ``shutdown()`` and ``server_close()``."""
        t = threading.Thread(target=self.serve_forever, name=f"netmark-serve-{self.server_address[1]}", daemon=True)
        t.start()
        return t

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "format": WIRE_FORMAT, "arch": self.arch,
                "input_shape": list(self.input_shape) if self.input_shape else None,
                "num_classes": self.num_classes, "max_batch": self.max_batch, "max_body_bytes": self.max_body_bytes}

    def predict(self, x: Tensor) -> list[int]:
        """The model's arg-max labels for ``x`` (:class:`BadRequest` when it does not take that shape)."""
        if self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape:
            raise BadRequest(f"this model takes inputs of shape (N, {', '.join(map(str, self.input_shape))}), "
                             f"got {tuple(x.shape)}")
        if len(x) == 0:
            return []
        out = self._forward(x)
        if self.num_classes is not None and out.shape[1] != self.num_classes:
            raise RuntimeError(f"the model answered {out.shape[1]} outputs, not {self.num_classes}")
        return [int(v) for v in out.argmax(1).tolist()]

    def _forward(self, x: Tensor, *, probe: bool = False) -> Tensor:
        with self.lock:
            self.model.eval()
            dev = model_device(self.model)
            try:
                with torch.no_grad():
                    out = torch.cat([self.model(x[i:i + _FORWARD_CHUNK].to(dev)).float().cpu()
                                     for i in range(0, len(x), _FORWARD_CHUNK)])
            except RuntimeError as e:
                msg = f"the model does not take inputs of shape {tuple(x.shape[1:])}: {_first_line(e)}"
                if probe:
                    raise ServeError(msg) from None
                raise BadRequest(msg) from None
        if out.ndim != 2:
            msg = f"the model answers outputs of shape {tuple(out.shape[1:])} per input, not one score per class"
            if probe:
                raise ServeError(msg)
            raise RuntimeError(msg)
        return out

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look the host up in DNS (socket.getfqdn): slow, and not needed
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A dropped connection or a handler bug: logged (debug), never printed; the server goes on."""
        log.debug("error while serving %s", client_address, exc_info=True)


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0][:300] if s else type(e).__name__


class _Handler(BaseHTTPRequestHandler):
    server: PredictionServer
    server_version = "netmark-serve"
    timeout = HANDLER_TIMEOUT_S

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/health":
            self._reply(HTTPStatus.OK, self.server.health())
        elif path == "/predict":
            self._reply(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "use POST /predict"}, allow="POST")
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {_short(path)}; "
                                                        "use POST /predict or GET /health"})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != "/predict":
            try:
                n = self._content_length()
            except BadRequest:
                n = 0
            if n <= self.server.max_body_bytes:
                self._discard(n)
            else:
                self.close_connection = True
            if path == "/health":
                self._reply(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "use GET /health"}, allow="GET")
            else:
                self._reply(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {_short(path)}; use POST /predict"})
            return
        try:
            body = self._read_json()
            x = decode_batch(body, max_batch=self.server.max_batch)
            labels = self.server.predict(x)
        except BadRequest as e:
            self._reply(e.status, {"error": str(e)})
        except (TimeoutError, ConnectionError):  # a client too slow or gone: nobody to answer
            self.close_connection = True
        except Exception as e:  # the model failed: answer 500, keep serving
            log.debug("prediction failed", exc_info=True)
            self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"the model failed: {_first_line(e)}"})
        else:
            self._reply(HTTPStatus.OK, {"labels": labels})

    def _content_length(self) -> int:
        if self.headers.get("Transfer-Encoding", "").lower() not in ("", "identity"):
            self.close_connection = True
            raise BadRequest("chunked request bodies are not supported; send a Content-Length",
                             HTTPStatus.LENGTH_REQUIRED)
        raw_len = self.headers.get("Content-Length")
        if raw_len is None:
            raise BadRequest("the request has no Content-Length", HTTPStatus.LENGTH_REQUIRED)
        try:
            n = int(raw_len)
        except ValueError:
            n = -1
        if n < 0:
            self.close_connection = True
            raise BadRequest(f"Content-Length {_short(raw_len)} is not a byte count")
        return n

    def _discard(self, n: int) -> None:
        """Read and drop ``n`` body bytes, so that closing the connection does not reset it (a reset can
        destroy the reply before the client reads it)."""
        while n > 0:
            chunk = self.rfile.read(min(n, 1 << 16))
            if not chunk:
                break
            n -= len(chunk)

    def _read_json(self) -> Any:
        n = self._content_length()
        limit = self.server.max_body_bytes
        if n > limit:
            self.close_connection = True  # the body must not be parsed as the next request
            if n <= 2 * limit:
                self._discard(n)
            raise BadRequest(f"the request body of {n} bytes exceeds this server's limit of {limit}; "
                             "send smaller batches", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        raw = self.rfile.read(n)
        if len(raw) != n:
            self.close_connection = True
            raise BadRequest(f"the request body ended after {len(raw)} of {n} bytes")
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise BadRequest("the request body is not JSON") from None

    def _reply(self, status: HTTPStatus, obj: dict[str, Any], *, allow: str | None = None) -> None:
        body = json.dumps(obj).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if allow:
                self.send_header("Allow", allow)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client went away
            self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol errors caught by ``http.server`` itself (bad request line, unsupported method): JSON too."""
        self.close_connection = True
        try:
            status = HTTPStatus(code)
        except ValueError:
            status = HTTPStatus.BAD_REQUEST
        self._reply(status, {"error": message or status.phrase})

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)


def make_server(model: nn.Module, host: str = "127.0.0.1", port: int = 0, *,
                input_shape: Sequence[int] | None = None, max_batch: int = DEFAULT_MAX_BATCH,
                max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> PredictionServer:
    """A :class:`PredictionServer` for ``model`` bound to ``host:port`` (port 0: any free port; see
    ``server.url``). Not yet serving: call ``serve_forever()`` or ``start()``.

    Args:
        model: the network (put in eval mode; queried under ``torch.no_grad()`` behind a lock).
        host: address to bind; the loopback by default. Anything else exposes the model to the network.
        input_shape: ``(C, H, W)`` the model takes (default: from its registry architecture; when unknown
            the shape is not checked up front and a model that fails on a request answers 400).
        max_batch, max_body_bytes: per-request limits (413 beyond them).

    Raises:
        ServeError: the address cannot be bound, or the model does not take its own input shape.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ServeError(f"port must be an integer in 0..65535, got {port!r}")
    if not isinstance(host, str) or not host:
        raise ServeError(f"host must be a non-empty address, got {host!r}")
    try:
        return PredictionServer(model, (host, port), input_shape=input_shape, max_batch=max_batch,
                                max_body_bytes=max_body_bytes)
    except OSError as e:
        raise ServeError(f"cannot listen on {host}:{port}: {e.strerror or _first_line(e)}") from None


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    h = host.strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


# ----------------------------------------------------------------------------- the client


def redact_url(url: str) -> str:
    """``url`` without a ``user:password@`` part (for messages and reports)."""
    try:
        p = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    if "@" not in p.netloc:
        return url
    return urllib.parse.urlunsplit(p._replace(netloc="***@" + p.netloc.rsplit("@", 1)[1]))


def is_url(s: str) -> bool:
    """Whether ``s`` looks like an ``http://`` / ``https://`` URL."""
    return s.lower().startswith(("http://", "https://"))


class HttpPredictor:
    """A :data:`~netmark.methods.triggerset.Predictor` that asks a prediction server for labels.

    ``url`` is the server (``http://host:port``, then ``/predict`` is appended) or the full endpoint
    (any other path is used as given); it must speak the wire format of this module. Inputs are sent in
    batches of at most ``batch_size``; each request may take ``timeout`` seconds. Every failure
    (connection refused, timeout, HTTP error status, a reply that is not one integer label per input)
    raises :class:`~netmark.methods.triggerset.QueryError` with one line.

    Example::

        Adi.from_key(key).verify_query(HttpPredictor("http://127.0.0.1:8000"), key)
    """

    def __init__(self, url: str, *, timeout: float = 30.0, batch_size: int = 64,
                 max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES) -> None:
        if not isinstance(url, str) or not is_url(url):
            raise ConfigError(f"a prediction endpoint must be an http:// or https:// URL, got {url!r}")
        try:
            parts = urllib.parse.urlsplit(url)
            _ = parts.port  # raises ValueError for a malformed port
        except ValueError as e:
            raise ConfigError(f"malformed URL {redact_url(url)!r}: {e}") from None
        if not parts.hostname:
            raise ConfigError(f"URL {redact_url(url)!r} names no host")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < math.inf:
            raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
        for name, v in (("batch_size", batch_size), ("max_reply_bytes", max_reply_bytes)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        self.url, self.timeout, self.batch_size, self.max_reply_bytes = url, float(timeout), batch_size, max_reply_bytes
        root = parts.path in ("", "/")
        base = parts._replace(query="", fragment="")
        self.predict_url = urllib.parse.urlunsplit(base._replace(path="/predict")) if root else url
        hpath = "/health" if root else parts.path.rsplit("/", 1)[0] + "/health"
        self.health_url = urllib.parse.urlunsplit(base._replace(path=hpath))
        # a local endpoint is never reached through an environment proxy
        handlers = [urllib.request.ProxyHandler({})] if is_loopback(parts.hostname) else []
        self._opener = urllib.request.build_opener(*handlers)

    def __repr__(self) -> str:
        return f"HttpPredictor({redact_url(self.url)!r}, timeout={self.timeout:g}, batch_size={self.batch_size})"

    def __call__(self, x: Tensor) -> Tensor:
        """The endpoint's labels for ``x`` ``(N, C, H, W)``, as an int64 tensor of length ``N``."""
        if not isinstance(x, Tensor) or x.ndim != 4:
            raise ConfigError("HttpPredictor takes a tensor batch of shape (N, C, H, W)")
        parts = []
        for i in range(0, len(x), self.batch_size):
            chunk = x[i:i + self.batch_size]
            reply = self._request(self.predict_url, json.dumps(encode_batch(chunk)).encode())
            parts.append(self._labels(reply, len(chunk)))
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64)

    def health(self) -> dict[str, Any]:
        """The server's ``GET /health`` answer (a JSON object)."""
        reply = self._request(self.health_url, None)
        if not isinstance(reply, dict):
            raise QueryError(f"{self._where()} answered a health reply that is not a JSON object")
        return reply

    def _where(self) -> str:
        return f"the prediction endpoint {redact_url(self.url)}"

    def _request(self, url: str, data: bytes | None) -> Any:
        req = urllib.request.Request(url, data=data, method="GET" if data is None else "POST",
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        where = self._where()
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                raw = resp.read(self.max_reply_bytes + 1)
        except urllib.error.HTTPError as e:
            raise QueryError(f"{where} answered HTTP {e.code}{_error_detail(e)}") from None
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, TimeoutError):
                raise QueryError(f"{where} did not answer within {self.timeout:g} s") from None
            text = reason.strerror if isinstance(reason, OSError) and reason.strerror else str(reason)
            raise QueryError(f"cannot reach {where}: {_one_line(text)}") from None
        except TimeoutError:
            raise QueryError(f"{where} did not answer within {self.timeout:g} s") from None
        except (HTTPException, OSError, ValueError) as e:
            raise QueryError(f"{where} sent a broken HTTP reply ({type(e).__name__}: "
                             f"{_one_line(str(e)) or 'connection closed'})") from None
        if len(raw) > self.max_reply_bytes:
            raise QueryError(f"{where} sent a reply over {self.max_reply_bytes} bytes")
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise QueryError(f"{where} answered something that is not JSON: {_one_line(repr(raw[:60]))}") from None

    def _labels(self, reply: Any, n: int) -> Tensor:
        where = self._where()
        if not isinstance(reply, dict) or not isinstance(reply.get("labels"), list):
            raise QueryError(f"{where} answered JSON without a \"labels\" list: {_short(reply, 60)}")
        labels = reply["labels"]
        if len(labels) != n:
            raise QueryError(f"{where} answered {len(labels)} labels for {n} inputs")
        for v in labels:
            if isinstance(v, bool) or not isinstance(v, int) or not -(2**63) <= v < 2**63:
                raise QueryError(f"{where} answered a label that is not an integer: {_short(v, 40)}")
        return torch.tensor(labels, dtype=torch.int64)


def _one_line(s: str, n: int = 200) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[:n] + "..."


def _error_detail(e: urllib.error.HTTPError) -> str:
    """``: <the server's error message>`` from a JSON error body, else the reason phrase."""
    try:
        body = json.loads(e.read(64 << 10))
        msg = body.get("error") if isinstance(body, dict) else None
    except (OSError, ValueError, HTTPException, AttributeError):
        msg = None
    if isinstance(msg, str) and msg.strip():
        return f": {_one_line(msg)}"
    return f" ({_one_line(str(e.reason))})" if e.reason else ""
