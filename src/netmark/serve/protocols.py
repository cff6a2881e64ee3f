"""Standard serving protocols for query-only verification: a suspect behind KServe, Triton, MLServer or BentoML.

``netmark verify URL --protocol P --key KEY`` sends the key's trigger inputs to a prediction endpoint and decides from
its answers only. Three protocols:

``netmark``
    netmark's own wire format (:mod:`netmark.serve`): ``POST /predict``, answered with labels.
``oip``
    the Open Inference Protocol v2 (KServe v2, Triton, MLServer, BentoML): ``POST
    /v2/models/{name}[/versions/{v}]/infer`` with ``{"inputs": [{"name", "shape", "datatype": "FP32", "data"}]}``
    (``INT64`` for integer inputs: token ids),
    answered with ``{"outputs": [...]}``. Sent through the maintained client ``tritonclient[http]`` (the extra
    ``netmark[serve]``); the one input is named ``input-0`` and the first output is read.
``kserve-v1``
    KServe's v1 protocol: ``POST /v1/models/{name}:predict`` with ``{"instances": [...]}`` (one ``C×H×W`` nested list
    per input), answered with ``{"predictions": [...]}``. Written here per the protocol's spec with the standard
    library: its only maintained client is KServe's own (``kserve.InferenceRESTClient``), which comes with the whole
    KServe server (Kubernetes client, gRPC, FastAPI) and whose protobuf module cannot be imported next to MLServer's
    in one process ("duplicate symbol 'inference.ServerLiveRequest'").

An answer per input may be a class label (an integer) or a vector of scores (logits or probabilities: its arg-max is
the label). ``--header 'Name: value'`` adds HTTP headers (an auth token); they are sent with every request and never
logged or printed. A query budget (``--max-queries``) is checked before anything is sent (:func:`planned_queries`) and
enforced while sending (:class:`QueryBudget`).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from netmark.errors import ConfigError
from netmark.methods.triggerset import Predictor, QueryError
from netmark.serve.client import HttpPredictor, _one_line, is_url, redact_url
from netmark.serve.wire import _short, check_positive_ints

PROTOCOLS = ("netmark", "oip", "kserve-v1")
#: the name of the one input tensor an OIP request carries
OIP_INPUT = "input-0"
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP field name (RFC 9110, section 5.1)


def parse_headers(values: Sequence[str] | None) -> dict[str, str]:
    """``['Name: value', ...]`` as a dict; ConfigError for a malformed one. A message never repeats a value (it may
    be a secret), only the header's position and, when it is well-formed, its name."""
    out: dict[str, str] = {}
    for i, raw in enumerate(values or [], 1):
        name, sep, value = raw.partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not _TOKEN.fullmatch(name):
            raise ConfigError(f"--header number {i} is not of the form 'Name: value' (a field name of letters, digits "
                              "and -, then a colon)")
        if not value or any(c in value for c in "\r\n\0"):
            raise ConfigError(f"--header {name!r} has an empty value or one with a line break")
        out[name] = value
    return out


def labels_from_answers(answers: Any, n: int, where: str) -> Tensor:
    """One label per input from an endpoint's answers: ``n`` integers, or ``n`` score vectors (arg-max)."""
    try:
        arr = np.asarray(answers)
    except (ValueError, TypeError):
        arr = np.asarray([], dtype=object)
    if arr.dtype == object or arr.dtype.kind not in "biuf" or arr.ndim == 0 or len(arr) != n:
        got = f"{len(arr)} answers" if arr.ndim and arr.dtype != object else f"answers {_short(answers, 60)}"
        raise QueryError(f"{where} sent {got} for {n} inputs: expected one label or one score vector per input")
    if arr.ndim > 2 and not all(d == 1 for d in arr.shape[2:]):
        raise QueryError(f"{where} answered outputs of shape {list(arr.shape[1:])} per input: expected one label or "
                         "one score vector")
    arr = arr.reshape(n, -1) if n else arr.reshape(0, 1)
    if arr.dtype.kind == "b":
        raise QueryError(f"{where} answered booleans, not labels or scores")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise QueryError(f"{where} answered NaN or infinite values")
    if arr.shape[1] > 1:  # scores: the label is the arg-max
        return torch.from_numpy(arr.argmax(axis=1).astype(np.int64))
    col = arr[:, 0]
    if arr.dtype.kind == "f" and not (col == np.round(col)).all():
        raise QueryError(f"{where} answered one non-integer number per input: neither a label nor a score vector")
    return torch.from_numpy(col.astype(np.int64))


def _model_path(url: str, marker: str, example: str) -> tuple[urllib.parse.SplitResult, str, str]:
    """The parts of ``url``, the path before ``marker`` (a server's prefix) and the rest after it."""
    if not isinstance(url, str) or not is_url(url):
        raise ConfigError(f"a prediction endpoint must be an http:// or https:// URL, got {redact_url(str(url))!r}")
    parts = urllib.parse.urlsplit(url)
    prefix, found, rest = parts.path.partition(marker)
    if not found or not rest.strip("/"):
        raise ConfigError(f"URL {redact_url(url)!r} names no model: expected {example}")
    return parts, prefix.rstrip("/"), rest


class KServeV1Predictor(HttpPredictor):
    """A :data:`~netmark.methods.triggerset.Predictor` for KServe's v1 protocol (``POST
    /v1/models/{name}:predict``); ``url`` is that endpoint or ``.../v1/models/{name}``. Errors as
    :class:`~netmark.serve.HttpPredictor` (one-line :class:`~netmark.methods.triggerset.QueryError`)."""

    def __init__(self, url: str, **kw: Any) -> None:
        parts, prefix, rest = _model_path(url, "/v1/models/", "http://HOST:PORT/v1/models/NAME:predict")
        name = rest.split("/", 1)[0].removesuffix(":predict")
        super().__init__(url, **kw)
        base = parts._replace(query="", fragment="")
        self.model_name = urllib.parse.unquote(name)
        self.predict_url = urllib.parse.urlunsplit(base._replace(path=f"{prefix}/v1/models/{name}:predict"))
        self.health_url = urllib.parse.urlunsplit(base._replace(path=f"{prefix}/v1/models/{name}"))

    def __repr__(self) -> str:
        return f"KServeV1Predictor({redact_url(self.url)!r}, timeout={self.timeout:g}, batch_size={self.batch_size})"

    _ANY_SHAPE = True

    def _body(self, chunk: Tensor) -> Any:
        return {"instances": _plain(chunk).tolist()}

    def _labels(self, reply: Any, n: int) -> Tensor:
        where = self._where()
        if not isinstance(reply, dict) or not isinstance(reply.get("predictions"), list):
            raise QueryError(f"{where} answered JSON without a \"predictions\" list (is it a KServe v1 endpoint?): "
                             f"{_short(reply, 60)}")
        return labels_from_answers(reply["predictions"], n, where)


class OipPredictor:
    """A :data:`~netmark.methods.triggerset.Predictor` for the Open Inference Protocol v2 through ``tritonclient``.

    ``url``: ``http(s)://host:port[/prefix]/v2/models/{name}[/versions/{v}][/infer]``. Inputs go as one FP32 tensor
    named :data:`OIP_INPUT` in batches of ``batch_size``; the first output is read (labels or scores). Every failure
    raises a one-line :class:`~netmark.methods.triggerset.QueryError`."""

    def __init__(self, url: str, *, timeout: float = 30.0, batch_size: int = 64,
                 headers: dict[str, str] | None = None) -> None:
        parts, prefix, rest = _model_path(url, "/v2/models/", "http://HOST:PORT/v2/models/NAME/infer")
        if not parts.hostname:
            raise ConfigError(f"URL {redact_url(url)!r} names no host")
        if "@" in parts.netloc:
            raise ConfigError("--protocol oip takes no user:password in the URL; pass credentials with --header")
        check_positive_ints(ConfigError, batch_size=batch_size)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < float("inf"):
            raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
        segs = [s for s in rest.split("/") if s]
        if segs and segs[-1] == "infer":
            segs.pop()
        if not (len(segs) == 1 or (len(segs) == 3 and segs[1] == "versions")):
            raise ConfigError(f"URL {redact_url(url)!r} is not an OIP model endpoint: expected "
                              "http://HOST:PORT/v2/models/NAME[/versions/V]/infer")
        try:
            import tritonclient.http as triton
        except ImportError:
            raise ConfigError("--protocol oip needs tritonclient: pip install 'netmark[serve]'") from None
        self._triton = triton
        self.url, self.timeout, self.batch_size = url, float(timeout), batch_size
        self.headers = dict(headers or {})
        self.model_name = urllib.parse.unquote(segs[0])
        self.model_version = segs[2] if len(segs) == 3 else ""
        self._client = triton.InferenceServerClient(parts.netloc + prefix, ssl=parts.scheme.lower() == "https",
                                                    connection_timeout=self.timeout, network_timeout=self.timeout)

    def __repr__(self) -> str:
        return f"OipPredictor({redact_url(self.url)!r}, timeout={self.timeout:g}, batch_size={self.batch_size})"

    def __call__(self, x: Tensor) -> Tensor:
        """The endpoint's labels for ``x``, as an int64 tensor of length ``len(x)``."""
        if not isinstance(x, Tensor) or x.ndim < 1:
            raise ConfigError("OipPredictor takes a tensor batch of shape (N, ...)")
        out = [self._infer(x[i:i + self.batch_size]) for i in range(0, len(x), self.batch_size)]
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64)

    def close(self) -> None:
        self._client.close()

    def _infer(self, chunk: Tensor) -> Tensor:
        where = f"the OIP endpoint {redact_url(self.url)}"
        arr = _plain(chunk).contiguous().numpy()
        inp = self._triton.InferInput(OIP_INPUT, list(arr.shape), "INT64" if arr.dtype == np.int64 else "FP32")
        inp.set_data_from_numpy(arr, binary_data=False)
        try:
            res = self._client.infer(self.model_name, [inp], model_version=self.model_version,
                                     headers=dict(self.headers))
            outputs = (res.get_response() or {}).get("outputs") or []
            answers = res.as_numpy(outputs[0]["name"]) if outputs and isinstance(outputs[0], dict) else None
        except self._triton.InferenceServerException as e:
            status = e.status()
            head = f"{where} answered HTTP {status}" if status else f"{where} failed"
            raise QueryError(f"{head}: {_one_line(_server_message(e.debug_details()) or str(e.message()))}") from None
        except TimeoutError:
            raise QueryError(f"{where} did not answer within {self.timeout:g} s") from None
        except OSError as e:
            raise QueryError(f"cannot reach {where}: {_one_line(e.strerror or str(e) or type(e).__name__)}") from None
        except (ValueError, KeyError, TypeError) as e:
            raise QueryError(f"{where} sent a reply that is not an OIP inference response "
                             f"({type(e).__name__}: {_one_line(str(e), 80)})") from None
        if answers is None:
            raise QueryError(f"{where} answered no outputs")
        return labels_from_answers(answers, len(chunk), where)


def _plain(x: Tensor) -> Tensor:
    """``x`` on the CPU as float32, or as int64 when it holds integers (token ids stay ids)."""
    return x.detach().to("cpu", torch.float32 if x.is_floating_point() else torch.int64)


def _server_message(body: Any) -> str:
    """The message of a JSON error body (``{"error": ...}`` of OIP servers, ``{"detail": ...}`` of FastAPI's)."""
    try:
        obj = json.loads(body) if isinstance(body, str | bytes) else None
    except ValueError:
        return ""
    msg = (obj.get("error") or obj.get("detail")) if isinstance(obj, dict) else None
    return msg if isinstance(msg, str) else ""


class QueryBudget:
    """``predict`` that refuses (QueryError, before sending) a call that would take the inputs sent past ``limit``."""

    def __init__(self, predict: Predictor, limit: int) -> None:
        check_positive_ints(ConfigError, max_queries=limit)
        self.predict, self.limit, self.used = predict, limit, 0

    def __call__(self, x: Tensor) -> Tensor | Sequence[int]:
        if self.used + len(x) > self.limit:
            raise QueryError(f"the query budget of {self.limit} inputs is spent ({self.used} sent; the next request "
                             f"has {len(x)}): not sent")
        self.used += len(x)
        return self.predict(x)


def planned_queries(triggers: int, *, claim: bool, labels_random: bool, redraws: int) -> int:
    """Most inputs a verification sends: the key's ``triggers`` once; with a claim on a key whose labels are not
    random (zhang-*, frontier-stitching), the specificity step (:mod:`netmark.methods.ownership`) sends the claimed
    triggers again and those of ``redraws`` keys drawn from other roots."""
    return triggers * (2 + redraws) if claim and not labels_random else triggers


def make_predictor(url: str, protocol: str = "netmark", *, timeout: float = 30.0, batch_size: int = 64,
                   headers: dict[str, str] | None = None, max_queries: int | None = None) -> Predictor:
    """The predictor for ``url`` speaking ``protocol`` (one of :data:`PROTOCOLS`), within ``max_queries`` inputs."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    check_positive_ints(ConfigError, batch_size=batch_size)
    predict: Predictor
    if protocol == "oip":
        predict = OipPredictor(url, timeout=timeout, batch_size=batch_size, headers=headers)
    elif protocol == "kserve-v1":
        predict = KServeV1Predictor(url, timeout=timeout, batch_size=batch_size, headers=headers)
    else:
        predict = HttpPredictor(url, timeout=timeout, batch_size=batch_size, headers=headers)
    return predict if max_queries is None else QueryBudget(predict, max_queries)
