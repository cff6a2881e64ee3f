"""The client of :mod:`netmark.serve`: :class:`HttpPredictor` turns a prediction server into a
:data:`~netmark.methods.triggerset.Predictor`."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPException
from typing import Any

import torch
from torch import Tensor

from netmark.errors import ConfigError
from netmark.methods.triggerset import QueryError
from netmark.serve.wire import DEFAULT_MAX_REPLY_BYTES, _short, check_positive_ints, encode_batch, is_loopback


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
    (any other path is used as given); it must speak the wire format of :mod:`netmark.serve`. Inputs are sent in
    batches of at most ``batch_size``; each request may take ``timeout`` seconds. Every failure
    (connection refused, timeout, HTTP error status, a reply that is not one integer label per input)
    raises :class:`~netmark.methods.triggerset.QueryError` with one line.

    Example::

        Adi.from_key(key).verify_query(HttpPredictor("http://127.0.0.1:8000"), key)
    """

    #: whether batches of any shape may be sent (netmark's wire format takes images only)
    _ANY_SHAPE = False

    def __init__(self, url: str, *, timeout: float = 30.0, batch_size: int = 64,
                 max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES, headers: dict[str, str] | None = None) -> None:
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
        check_positive_ints(ConfigError, batch_size=batch_size, max_reply_bytes=max_reply_bytes)
        self.url, self.timeout, self.batch_size, self.max_reply_bytes = url, float(timeout), batch_size, max_reply_bytes
        self.headers = dict(headers or {})  # e.g. an auth token: never logged, never in repr or messages
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
        if not isinstance(x, Tensor) or x.ndim < 1 or (x.ndim != 4 and not self._ANY_SHAPE):
            raise ConfigError(f"{type(self).__name__} takes a tensor batch of shape (N, C, H, W)")
        parts = []
        for i in range(0, len(x), self.batch_size):
            chunk = x[i:i + self.batch_size]
            reply = self._request(self.predict_url, json.dumps(self._body(chunk)).encode())
            parts.append(self._labels(reply, len(chunk)))
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64)

    def health(self) -> dict[str, Any]:
        """The server's ``GET /health`` answer (a JSON object)."""
        reply = self._request(self.health_url, None)
        if not isinstance(reply, dict):
            raise QueryError(f"{self._where()} answered a health reply that is not a JSON object")
        return reply

    def _body(self, chunk: Tensor) -> Any:
        """The JSON request for one batch (the wire format of :mod:`netmark.serve`; subclasses speak others)."""
        return encode_batch(chunk)

    def _where(self) -> str:
        return f"the prediction endpoint {redact_url(self.url)}"

    def _request(self, url: str, data: bytes | None) -> Any:
        req = urllib.request.Request(url, data=data, method="GET" if data is None else "POST",
                                     headers={**self.headers, "Content-Type": "application/json",
                                              "Accept": "application/json"})
        where = self._where()
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                raw = resp.read(self.max_reply_bytes + 1)
        except urllib.error.HTTPError as e:
            raise QueryError(f"{where} answered HTTP {e.code}{_error_detail(e)}") from None
        except (urllib.error.URLError, TimeoutError) as e:
            reason = getattr(e, "reason", e)  # a timeout while connecting comes wrapped in a URLError
            if isinstance(reason, TimeoutError):
                raise QueryError(f"{where} did not answer within {self.timeout:g} s") from None
            text = reason.strerror if isinstance(reason, OSError) and reason.strerror else str(reason)
            raise QueryError(f"cannot reach {where}: {_one_line(text)}") from None
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
        msg = (body.get("error") or body.get("detail")) if isinstance(body, dict) else None  # detail: FastAPI's
    except (OSError, ValueError, HTTPException, AttributeError):
        msg = None
    if isinstance(msg, str) and msg.strip():
        return f": {_one_line(msg)}"
    return f" ({_one_line(str(e.reason))})" if e.reason else ""
