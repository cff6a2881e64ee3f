"""netmark.serve end to end: a model behind HTTP verified through queries only, malformed requests,
broken endpoints, and the `netmark serve` / `netmark verify URL` commands."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import queue
import re
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from netmark.cli import app
from netmark.errors import ConfigError
from netmark.methods.adi import Adi, AdiConfig
from netmark.methods.triggerset import QueryError, model_predictor
from netmark.serve import HttpPredictor, PredictionServer, encode_batch, make_server
from netmark.training import TrainConfig, train
from tests.conftest import make_cnn

runner = CliRunner()
EMBED_CFG = TrainConfig(epochs=12, lr=0.05, batch_size=64, seed=0, progress=False)


# ----------------------------------------------------------------------------- fixtures


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Train on one torch thread: on 2 cores shared with other jobs this is several times faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def marked(digits_train) -> tuple[torch.nn.Module, Any]:
    """simple-cnn trained on digits with Adi's trigger set embedded (random labels: exact null)."""
    method = Adi(AdiConfig(per_batch=16))
    with one_thread():
        model, key, _ = method.embed(make_cnn(0), digits_train, EMBED_CFG, seed=3)
    return model.eval(), key


@pytest.fixture(scope="module")
def independent(digits_train) -> torch.nn.Module:
    model = make_cnn(1)
    with one_thread():
        train(model, digits_train, TrainConfig(epochs=4, lr=0.05, batch_size=64, seed=1, progress=False))
    return model.eval()


@pytest.fixture(scope="module")
def serve() -> Iterator[Callable[..., PredictionServer]]:
    """Start ``make_server(model, **kw)`` on a free loopback port in a background thread; all stop at the end."""
    started: list[PredictionServer] = []

    def start(model: torch.nn.Module, **kw: Any) -> PredictionServer:
        server = make_server(model, port=0, **kw)
        server.start()
        started.append(server)
        return server

    yield start
    for s in started:
        s.shutdown()
        s.server_close()


@pytest.fixture(scope="module")
def marked_url(marked, serve) -> str:
    return serve(marked[0]).url


@pytest.fixture(scope="module")
def independent_url(independent, serve) -> str:
    return serve(independent).url


@pytest.fixture(scope="module")
def key_file(marked, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "adi.key"
    marked[1].save(path)
    return path


def _request(url: str, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """Raw HTTP (no client-side checks): status and the parsed JSON reply."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest(method, path)
        hdrs = {"Content-Type": "application/json", **({"Content-Length": str(len(body))} if body is not None else {}),
                **(headers or {})}
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders()
        if body is not None:
            with contextlib.suppress(OSError):  # the server may answer (and close) before reading a huge body
                conn.send(body)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def _assert_serving(url: str) -> None:
    """The server still answers health checks and valid predictions."""
    assert _request(url, "GET", "/health")[0] == 200
    status, reply = _request(url, "POST", "/predict", json.dumps(encode_batch(torch.rand(3, 1, 8, 8))).encode())
    assert status == 200 and len(reply["labels"]) == 3


# ----------------------------------------------------------------------------- the server


def test_health_describes_the_model(marked_url: str) -> None:
    h = HttpPredictor(marked_url).health()
    assert h["status"] == "ok" and h["arch"] == "simple-cnn"
    assert h["input_shape"] == [1, 8, 8] and h["num_classes"] == 10 and h["max_batch"] >= 1


def test_http_labels_are_the_models_labels(marked, marked_url: str) -> None:
    x = torch.rand(150, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    got = HttpPredictor(marked_url, batch_size=64)(x)  # three requests
    assert got.dtype == torch.int64 and torch.equal(got, model_predictor(marked[0])(x))
    assert len(HttpPredictor(marked_url)(x[:0])) == 0


def test_verify_through_http_equals_verify_on_the_model(marked, marked_url: str) -> None:
    model, key = marked
    method = Adi.from_key(key)
    direct = method.verify(model, key)
    remote = method.verify_query(HttpPredictor(marked_url, batch_size=32), key)
    assert direct.detected and remote.detected
    assert remote.matched_bits == direct.matched_bits and remote.p_value == direct.p_value
    assert remote.p_value < 1e-6


def test_independent_model_over_http_not_detected(marked, independent_url: str) -> None:
    key = marked[1]
    res = Adi.from_key(key).verify_query(HttpPredictor(independent_url), key)
    assert not res.detected and res.p_value > 1e-3


def _b64(x: torch.Tensor) -> str:
    return base64.b64encode(x.numpy().astype("<f4").tobytes()).decode()


GOOD = {"shape": [2, 1, 8, 8], "dtype": "float32", "data": _b64(torch.rand(2, 1, 8, 8))}
MALFORMED: dict[str, tuple[bytes, str]] = {
    "not json": (b"{shape: nope", "not JSON"),
    "not utf-8": (b"\xff\xfe\x00garbage", "not JSON"),
    "json list": (b"[1, 2, 3]", "JSON object"),
    "no data": (json.dumps({"shape": [2, 1, 8, 8], "dtype": "float32"}).encode(), "lacks data"),
    "rank 2 shape": (json.dumps({**GOOD, "shape": [2, 64]}).encode(), "shape must be"),
    "negative shape": (json.dumps({**GOOD, "shape": [2, -1, 8, 8]}).encode(), "shape must be"),
    "float shape": (json.dumps({**GOOD, "shape": [2.0, 1, 8, 8]}).encode(), "shape must be"),
    "float64": (json.dumps({**GOOD, "dtype": "float64"}).encode(), "dtype"),
    "data not base64": (json.dumps({**GOOD, "data": "@@not base64@@"}).encode(), "base64"),
    "data a number": (json.dumps({**GOOD, "data": 12}).encode(), "base64"),
    "short data": (json.dumps({**GOOD, "data": _b64(torch.rand(1, 1, 8, 8))}).encode(), "needs 512"),
    "long data": (json.dumps({**GOOD, "data": _b64(torch.rand(9, 1, 8, 8))}).encode(), "longer"),
    "nan": (json.dumps({**GOOD, "data": _b64(torch.full((2, 1, 8, 8), float("nan")))}).encode(), "NaN"),
    "inf": (json.dumps({**GOOD, "data": _b64(torch.full((2, 1, 8, 8), float("inf")))}).encode(), "infinite"),
    "wrong input shape": (json.dumps({"shape": [2, 3, 8, 8], "dtype": "float32",
                                      "data": _b64(torch.rand(2, 3, 8, 8))}).encode(), "(N, 1, 8, 8)"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_request_gets_400_and_server_keeps_serving(case: str, marked_url: str) -> None:
    body, match = MALFORMED[case]
    status, reply = _request(marked_url, "POST", "/predict", body)
    assert status == 400, reply
    assert match in reply["error"] and "\n" not in reply["error"] and "Traceback" not in reply["error"]
    _assert_serving(marked_url)


def test_limits_routes_and_protocol_errors(marked, serve) -> None:
    url = serve(marked[0], max_batch=4, max_body_bytes=4000).url
    big = json.dumps(encode_batch(torch.rand(5, 1, 8, 8))).encode()  # under the byte limit, over the batch limit
    assert len(big) < 4000
    status, reply = _request(url, "POST", "/predict", big)
    assert status == 413 and "limit of 4" in reply["error"]
    status, reply = _request(url, "POST", "/predict", b"x" * 5000)
    assert status == 413 and "limit of 4000" in reply["error"]
    status, reply = _request(url, "POST", "/predict", b"", headers={"Content-Length": str(10**12)})
    assert status == 413
    status, reply = _request(url, "POST", "/predict", None, headers={"Content-Length": "lots"})
    assert status == 400 and "Content-Length" in reply["error"]
    status, _ = _request(url, "POST", "/predict", None)
    assert status == 411
    assert _request(url, "GET", "/predict")[0] == 405
    assert _request(url, "POST", "/health", b"{}")[0] == 405
    assert _request(url, "GET", "/nothing")[0] == 404
    status, reply = _request(url, "PUT", "/predict")
    assert status == 501 and "error" in reply
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"\x00\x01 not http at all\r\n\r\n")
        assert b'"error"' in s.recv(1 << 16)
    # the client splits a batch the server refuses into an error, not a crash
    with pytest.raises(QueryError, match="HTTP 413"):
        HttpPredictor(url, batch_size=8)(torch.rand(8, 1, 8, 8))
    assert torch.equal(HttpPredictor(url, batch_size=4)(x := torch.rand(8, 1, 8, 8)), model_predictor(marked[0])(x))
    _assert_serving(url)


def test_make_server_rejects_bad_settings(marked) -> None:
    from netmark.serve import ServeError

    with pytest.raises(ServeError, match="port"):
        make_server(marked[0], port=70000)
    with pytest.raises(ServeError, match="does not take"):
        make_server(marked[0], input_shape=(3, 32, 32))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        with pytest.raises(ServeError, match="cannot listen"):
            make_server(marked[0], port=busy.getsockname()[1])


# ----------------------------------------------------------------------------- the client against broken endpoints


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


REPLIES: dict[str, tuple[bytes | None, str]] = {
    "not-json": (b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello", "not JSON"),
    "no-labels": (b'HTTP/1.0 200 OK\r\n\r\n{"answer": 42}', "labels"),
    "too-few": (b'HTTP/1.0 200 OK\r\n\r\n{"labels": [1]}', "1 labels for 3 inputs"),
    "float-label": (b'HTTP/1.0 200 OK\r\n\r\n{"labels": [1, 2.5, 3]}', "not an integer"),
    "bool-label": (b'HTTP/1.0 200 OK\r\n\r\n{"labels": [1, true, 3]}', "not an integer"),
    "http-500": (b'HTTP/1.0 500 Internal Server Error\r\n\r\n{"error": "boom"}', "HTTP 500: boom"),
    "http-503-html": (b"HTTP/1.0 503 Service Unavailable\r\n\r\n<html>down</html>", "HTTP 503"),
    "garbage": (b"\x00\x01\x02 garbage\r\n\r\n", "broken HTTP reply"),
    "hang-up": (b"", "prediction endpoint"),
    "silent": (None, "did not answer within"),
}


@pytest.fixture(scope="module")
def fake_endpoint() -> Iterator[str]:
    """A TCP server answering each request with the raw bytes of REPLIES[path] (None: never answers)."""
    release = threading.Event()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            line = self.rfile.readline().decode("latin-1").split()
            length = 0
            while (h := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = h.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            self.rfile.read(length)
            reply = REPLIES[line[1].strip("/")][0] if len(line) > 1 else b""
            if reply is None:
                release.wait(10)
            else:
                self.wfile.write(reply)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    release.set()
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("case", list(REPLIES))
def test_http_predictor_broken_replies_raise_query_error(case: str, fake_endpoint: str) -> None:
    predict = HttpPredictor(f"{fake_endpoint}/{case}", timeout=0.5)
    with pytest.raises(QueryError, match=re.escape(REPLIES[case][1])) as e:
        predict(torch.rand(3, 1, 8, 8))
    assert "\n" not in str(e.value)


def test_http_predictor_closed_port_and_bad_settings() -> None:
    with pytest.raises(QueryError, match=r"cannot reach .*Connection refused"):
        HttpPredictor(f"http://127.0.0.1:{_free_port()}", timeout=5)(torch.rand(2, 1, 8, 8))
    for bad in ("ftp://127.0.0.1/", "127.0.0.1:8000", "http://", "http://host:port/"):
        with pytest.raises(ConfigError):
            HttpPredictor(bad)
    with pytest.raises(ConfigError, match="timeout"):
        HttpPredictor("http://127.0.0.1:1", timeout=0)
    with pytest.raises(ConfigError, match="batch_size"):
        HttpPredictor("http://127.0.0.1:1", batch_size=0)
    p = HttpPredictor("http://127.0.0.1:1/api/v2/classify")
    assert p.predict_url.endswith("/api/v2/classify") and p.health_url.endswith("/api/v2/health")
    assert "secret" not in repr(HttpPredictor("http://user:secret@127.0.0.1:1"))


# ----------------------------------------------------------------------------- the CLI


def _assert_bad(r: Any, match: str) -> None:
    assert r.exit_code == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("netmark: error:"), r.stderr
    assert "Traceback" not in r.stderr and match in lines[0], lines[0]


def test_cli_verify_url(marked_url: str, independent_url: str, key_file: Path) -> None:
    r = runner.invoke(app, ["verify", marked_url, "--key", str(key_file), "--json"])
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["detected"] is True and d["method"] == "adi" and d["model"] == marked_url and d["p_value"] < 1e-6
    r = runner.invoke(app, ["verify", independent_url, "--key", str(key_file)])
    assert r.exit_code == 1 and r.stdout.startswith("NOT DETECTED"), (r.stdout, r.stderr)


def test_cli_verify_url_bad_input(marked_url: str, key_file: Path, tmp_path: Path) -> None:
    from netmark.methods.uchida import Uchida, UchidaConfig

    Uchida(UchidaConfig(bits=16)).create_key(make_cnn(), seed=1).save(tmp_path / "uchida.key")
    _assert_bad(runner.invoke(app, ["verify", marked_url, "--key", str(tmp_path / "uchida.key")]), "white-box")
    _assert_bad(runner.invoke(app, ["verify", f"http://127.0.0.1:{_free_port()}", "--key", str(key_file)]),
                "cannot reach")
    _assert_bad(runner.invoke(app, ["verify", "ftp://127.0.0.1/x", "--key", str(key_file)]), "http://")
    _assert_bad(runner.invoke(app, ["serve", str(tmp_path / "absent.safetensors")]), "does not exist")


def test_cli_serve_subprocess(marked, key_file: Path, tmp_path: Path) -> None:
    """`netmark serve` on a plain .pt state_dict (architecture from --key): prints its URL once, answers, and
    exits 0 on Ctrl-C."""
    model, key = marked
    torch.save(model.state_dict(), tmp_path / "stolen.pt")
    # SIGINT back to its default in the child (a parent that ignores it would make Python ignore Ctrl-C too)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from netmark.cli import main; main()", "serve", str(tmp_path / "stolen.pt"),
         "--key", str(key_file), "--port", "0"],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: queue.Queue[str] = queue.Queue()
    errors: list[str] = []
    threading.Thread(target=lambda: [lines.put(s) for s in proc.stdout or []], daemon=True).start()
    threading.Thread(target=lambda: errors.extend(proc.stderr or []), daemon=True).start()  # never a full pipe
    try:
        try:
            first = lines.get(timeout=90)
        except queue.Empty:
            pytest.fail("netmark serve printed nothing within 90 s")
        m = re.search(r"http://127\.0\.0\.1:\d+", first)
        if m is None and proc.poll() is not None:
            time.sleep(0.5)
            if "cannot listen" in "".join(errors):
                pytest.skip("cannot bind a loopback port here")
        assert m, first
        url = m.group(0)
        predict = HttpPredictor(url, timeout=10)
        deadline = time.monotonic() + 30
        while True:
            try:
                health = predict.health()
                break
            except QueryError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        assert health["arch"] == "simple-cnn" and health["num_classes"] == 10
        assert Adi.from_key(key).verify_query(predict, key).detected
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, "".join(errors)
        time.sleep(0.2)
        assert "Traceback" not in "".join(errors)
        time.sleep(0.1)
        rest = []
        while not lines.empty():
            rest.append(lines.get())
        assert not any(url in s for s in rest)  # the URL is printed once
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)



def test_server_close_ends_open_connections_and_joins_their_threads() -> None:
    """A client that opened a connection and sent half a request leaves a request thread blocked reading it;
    server_close must end that connection and join the thread (a request thread left running inside torch at
    interpreter exit aborted `netmark serve` on Ctrl-C: exit -6)."""
    server = make_server(make_cnn(0).eval(), port=0)
    server.start()
    before = set(threading.enumerate())
    client = socket.create_connection(server.server_address[:2], timeout=10)
    client.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # the headers never end
    deadline = time.monotonic() + 10
    while not (workers := set(threading.enumerate()) - before) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert workers, "the half-sent request should hold a request thread"
    t0 = time.monotonic()
    server.shutdown()
    server.server_close()
    assert time.monotonic() - t0 < 5
    assert not any(t.is_alive() for t in workers)
    client.close()
