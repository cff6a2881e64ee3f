"""The prediction server of :mod:`netmark.serve`: one model's labels over HTTP (wire format: :mod:`netmark.serve`)."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import socketserver
import threading
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import torch
from torch import Tensor, nn

from netmark.errors import ArchitectureError
from netmark.serve import standard
from netmark.serve.wire import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY_BYTES,
    HANDLER_TIMEOUT_S,
    WIRE_FORMAT,
    BadRequest,
    ServeError,
    _short,
    check_positive_ints,
    decode_batch,
)
from netmark.training import model_device

log = logging.getLogger("netmark.serve")  # the logger the wire format's documentation names
_FORWARD_CHUNK = 256


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
    """Serves one model's labels (wire format: :mod:`netmark.serve`); one thread per request, one lock
    around the model. Start with :meth:`serve_forever` (or :meth:`start` for a background thread);
    stop with :meth:`shutdown` then :meth:`server_close`, which closes the open connections and joins their
    threads: a request thread left running inside torch at interpreter exit can abort the process (seen on
    Ctrl-C: "terminate called without an active exception", exit -6)."""

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, model: nn.Module, address: tuple[str, int], *, input_shape: Sequence[int] | None = None,
                 max_batch: int = DEFAULT_MAX_BATCH, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 protocol: str = "netmark", name: str = "model") -> None:
        check_positive_ints(ServeError, max_batch=max_batch, max_body_bytes=max_body_bytes)
        if protocol not in ("netmark", "oip", "kserve-v1"):
            raise ServeError(f"protocol must be netmark, oip or kserve-v1, got {protocol!r}")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise ServeError(f"a model name is letters, digits, '_', '.' and '-', got {name!r}")
        self.protocol, self.name = protocol, name
        self.predict_path = standard.predict_path(protocol, name)
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
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        """Stop listening, end every open (keep-alive) connection, then join the request threads."""
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):  # already closed by its thread
                conn.shutdown(socket.SHUT_RDWR)
        super().server_close()

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
            except RuntimeError as e:  # the start-up probe: the server cannot start; a request: answered 400
                raise (ServeError if probe else BadRequest)(
                    f"the model does not take inputs of shape {tuple(x.shape[1:])}: {_first_line(e)}") from None
        if out.ndim != 2:  # the start-up probe: cannot start; a request: the model failed (500)
            raise (ServeError if probe else RuntimeError)(
                f"the model answers outputs of shape {tuple(out.shape[1:])} per input, not one score per class")
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
        path, srv = self.path.split("?", 1)[0], self.server
        if path == "/health":
            self._reply(HTTPStatus.OK, srv.health())
        elif path in standard.ready_paths(srv.protocol, srv.name):
            self._reply(HTTPStatus.OK, {"name": srv.name, "ready": True})
        elif path == srv.predict_path:
            self._reply(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"use POST {srv.predict_path}"}, allow="POST")
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {_short(path)}; "
                                                        f"use POST {srv.predict_path} or GET /health"})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != self.server.predict_path:
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
                self._reply(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {_short(path)}; "
                                                            f"use POST {self.server.predict_path}"})
            return
        srv = self.server
        try:
            body = self._read_json()
            x = (decode_batch(body, max_batch=srv.max_batch) if srv.protocol == "netmark"
                 else standard.decode(srv.protocol, body, max_batch=srv.max_batch))
            labels = self.server.predict(x)
        except BadRequest as e:
            self._reply(e.status, {"error": str(e)})
        except (TimeoutError, ConnectionError):  # a client too slow or gone: nobody to answer
            self.close_connection = True
        except Exception as e:  # the model failed: answer 500, keep serving
            log.debug("prediction failed", exc_info=True)
            self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"the model failed: {_first_line(e)}"})
        else:
            self._reply(HTTPStatus.OK, {"labels": labels} if srv.protocol == "netmark"
                        else standard.encode(srv.protocol, labels, srv.name))

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
                max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, protocol: str = "netmark",
                name: str = "model") -> PredictionServer:
    """A :class:`PredictionServer` for ``model`` bound to ``host:port`` (port 0: any free port; see
    ``server.url``). Not yet serving: call ``serve_forever()`` or ``start()``.

    Args:
        model: the network (put in eval mode; queried under ``torch.no_grad()`` behind a lock).
        host: address to bind; the loopback by default. Anything else exposes the model to the network.
        input_shape: ``(C, H, W)`` the model takes (default: from its registry architecture; when unknown
            the shape is not checked up front and a model that fails on a request answers 400).
        max_batch, max_body_bytes: per-request limits (413 beyond them).
        protocol, name: ``netmark`` (``POST /predict``), or the standard protocol ``oip`` / ``kserve-v1``
            (:mod:`netmark.serve.standard`) for a model called ``name``.

    Raises:
        ServeError: the address cannot be bound, or the model does not take its own input shape.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ServeError(f"port must be an integer in 0..65535, got {port!r}")
    if not isinstance(host, str) or not host:
        raise ServeError(f"host must be a non-empty address, got {host!r}")
    try:
        return PredictionServer(model, (host, port), input_shape=input_shape, max_batch=max_batch,
                                max_body_bytes=max_body_bytes, protocol=protocol, name=name)
    except OSError as e:
        raise ServeError(f"cannot listen on {host}:{port}: {e.strerror or _first_line(e)}") from None
