"""Query-only verification through standard serving protocols (netmark.serve.protocols), against real servers
started here on 127.0.0.1: MLServer with netmark's runtime (Open Inference Protocol v2) and KServe's ModelServer
(v1 and v2). No mocks: each server is a subprocess on a free port, stopped at the end of the module."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from netmark.cli import app
from netmark.errors import ConfigError
from netmark.io import save_model
from netmark.methods.triggerset import QueryError, model_predictor
from netmark.serve.protocols import (
    KServeV1Predictor,
    OipPredictor,
    QueryBudget,
    labels_from_answers,
    make_predictor,
    parse_headers,
    planned_queries,
)
from netmark.serve.runtimes import TOKEN_ENV, kserve_command, mlserver_command, running, write_mlserver_repo
from tests.test_serve import _request, independent, key_file, marked, serve  # noqa: F401 (module-scoped fixtures)

runner = CliRunner()
TOKEN = "s3cret-token-4711"
AUTH = f"Authorization: Bearer {TOKEN}"
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _needs(*modules: str) -> None:
    """Skip when a server package is not installed (found without importing it: mlserver's and kserve's protobuf
    modules cannot both be imported in one process)."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (pip install 'netmark[serve]')")


def _env() -> dict[str, str]:
    """A server's environment: the bearer token, one torch thread, this checkout's sources first."""
    return {**os.environ, TOKEN_ENV: TOKEN, "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([SRC, *filter(None, [os.environ.get("PYTHONPATH")])])}


@pytest.fixture(scope="module")
def model_files(marked, independent, tmp_path_factory) -> dict[str, Path]:  # noqa: F811
    d = tmp_path_factory.mktemp("served")
    files = {"marked": d / "marked.safetensors", "independent": d / "independent.safetensors"}
    save_model(marked[0], files["marked"])
    save_model(independent, files["independent"])
    return files


@contextlib.contextmanager
def _started(kind: str, files: dict[str, Path], d: Path) -> Iterator[str]:
    """MLServer (netmark's runtime: the marked model answers logits, the other labels) or KServe's ModelServer (the
    marked model answers labels, the other logits) on a free port, with the bearer token; its URL."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    if kind == "mlserver":
        write_mlserver_repo(d / "repo", {"marked": (files["marked"], "logits"),
                                         "independent": (files["independent"], "labels")},
                            http_port=port, grpc_port=_free_port(), metrics_port=_free_port())
        cmd, ready = mlserver_command(d / "repo"), f"{url}/v2/models/marked/ready"
    else:
        cmd = kserve_command({"marked": (files["marked"], "labels"), "independent": (files["independent"], "logits")},
                             port)
        ready = f"{url}/v1/models/marked"
    with running(cmd, ready, log=d / "server.log", env=_env(), cwd=d):
        yield url


@pytest.fixture(scope="module")
def mlserver_url(model_files: dict[str, Path], tmp_path_factory) -> Iterator[str]:
    _needs("mlserver", "tritonclient")
    with _started("mlserver", model_files, tmp_path_factory.mktemp("mlserver")) as url:
        yield url


@pytest.fixture(scope="module")
def kserve_url(model_files: dict[str, Path], tmp_path_factory) -> Iterator[str]:
    _needs("kserve", "tritonclient")
    with _started("kserve", model_files, tmp_path_factory.mktemp("kserve")) as url:
        yield url


def _verify(url: str, key: Path, *args: str) -> Any:
    return runner.invoke(app, ["verify", url, "--key", str(key), *args])


def _assert_bad(r: Any, match: str) -> None:
    """Exit 2 with one line on stderr that names ``match``; the token is never shown."""
    assert r.exit_code == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("netmark: error:"), r.stderr
    assert match in lines[0], lines[0]
    assert TOKEN not in r.stdout + r.stderr and "Traceback" not in r.stderr


# ----------------------------------------------------------------------------- real servers, through the CLI


def test_mlserver_oip_detects_the_marked_model_only(mlserver_url: str, key_file: Path,  # noqa: F811
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the token is in no log record either
    r = _verify(f"{mlserver_url}/v2/models/marked/infer", key_file, "--protocol", "oip", "--header", AUTH, "--json")
    assert r.exit_code == 0, (r.stdout, r.stderr)
    d = json.loads(r.stdout)
    assert d["detected"] is True and d["method"] == "adi" and d["p_value"] < 1e-6
    assert TOKEN not in r.stdout + r.stderr
    r = _verify(f"{mlserver_url}/v2/models/independent/infer", key_file, "--protocol", "oip", "-H", AUTH)
    assert r.exit_code == 1 and r.stdout.startswith("NOT DETECTED"), (r.stdout, r.stderr)
    assert TOKEN not in caplog.text


@pytest.mark.parametrize(("protocol", "path"), [("kserve-v1", "/v1/models/{}:predict"), ("oip", "/v2/models/{}/infer")])
def test_kserve_detects_the_marked_model_only(kserve_url: str, key_file: Path, protocol: str, path: str) -> None:  # noqa: F811
    r = _verify(kserve_url + path.format("marked"), key_file, "--protocol", protocol, "-H", AUTH, "--json",
                "--batch-size", "7")
    assert r.exit_code == 0, (r.stdout, r.stderr)
    assert json.loads(r.stdout)["detected"] is True
    r = _verify(kserve_url + path.format("independent"), key_file, "--protocol", protocol, "-H", AUTH)
    assert r.exit_code == 1 and r.stdout.startswith("NOT DETECTED"), (r.stdout, r.stderr)


def test_served_answers_match_the_model(mlserver_url: str, kserve_url: str, marked) -> None:  # noqa: F811
    """Labels and logits answers both decode to the model's own labels, in order, across batches."""
    x = torch.rand(11, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    want = model_predictor(marked[0])(x)
    headers = parse_headers([AUTH])
    for url, protocol in ((f"{mlserver_url}/v2/models/marked/infer", "oip"),
                          (f"{kserve_url}/v2/models/marked/infer", "oip"),
                          (f"{kserve_url}/v1/models/marked:predict", "kserve-v1")):
        got = make_predictor(url, protocol, batch_size=4, headers=headers)(x)
        assert torch.equal(torch.as_tensor(got), want), (url, got, want)


def test_wrong_header_protocol_or_endpoint_is_one_line_exit_2(mlserver_url: str, kserve_url: str,
                                                              key_file: Path) -> None:  # noqa: F811
    oip = f"{mlserver_url}/v2/models/marked/infer"
    _assert_bad(_verify(oip, key_file, "--protocol", "oip", "-H", "Authorization: Bearer wrong"), "HTTP 401")
    _assert_bad(_verify(oip, key_file, "--protocol", "oip"), "HTTP 401")
    _assert_bad(_verify(f"{kserve_url}/v1/models/marked:predict", key_file, "--protocol", "kserve-v1",
                        "-H", "Authorization: Bearer wrong"), "HTTP 401")
    # the wrong protocol for the server or the URL
    _assert_bad(_verify(f"{mlserver_url}/v1/models/marked:predict", key_file, "--protocol", "kserve-v1", "-H", AUTH),
                "HTTP 404")
    _assert_bad(_verify(oip, key_file, "-H", AUTH), "HTTP 4")  # netmark's wire format to an OIP endpoint
    _assert_bad(_verify(oip, key_file, "--protocol", "kserve-v1", "-H", AUTH), "names no model")
    _assert_bad(_verify(f"{mlserver_url}/predict", key_file, "--protocol", "oip", "-H", AUTH), "names no model")
    _assert_bad(_verify(f"{mlserver_url}/v2/models/nobody/infer", key_file, "--protocol", "oip", "-H", AUTH),
                "HTTP 404")
    _assert_bad(_verify(oip, key_file, "--protocol", "grpc", "-H", AUTH), "--protocol must be one of")
    # unreachable
    closed = f"http://127.0.0.1:{_free_port()}"
    _assert_bad(_verify(f"{closed}/v2/models/m/infer", key_file, "--protocol", "oip", "-H", AUTH), "cannot reach")
    _assert_bad(_verify(f"{closed}/v1/models/m:predict", key_file, "--protocol", "kserve-v1", "-H", AUTH),
                "cannot reach")
    # malformed headers name neither the header's text nor its value
    _assert_bad(_verify(oip, key_file, "--protocol", "oip", "-H", f"Bearer {TOKEN}"), "--header number 1")
    _assert_bad(_verify(oip, key_file, "--protocol", "oip", "-H", AUTH, "-H", "X-Empty:"), "'X-Empty'")


def test_query_budget_is_checked_before_sending(kserve_url: str, marked, key_file: Path) -> None:  # noqa: F811
    n = len(marked[1].tensors["inputs"])
    closed = f"http://127.0.0.1:{_free_port()}/v2/models/m/infer"  # "cannot reach" if anything were sent
    r = _verify(closed, key_file, "--protocol", "oip", "--max-queries", str(n - 1))
    _assert_bad(r, f"sends up to {n} inputs")
    assert "nothing was sent" in r.stderr
    r = _verify(f"{kserve_url}/v1/models/marked:predict", key_file, "--protocol", "kserve-v1", "-H", AUTH,
                "--max-queries", str(n), "--batch-size", "5")
    assert r.exit_code == 0 and r.stdout.startswith("DETECTED"), (r.stdout, r.stderr)
    _assert_bad(_verify(__file__, key_file, "--protocol", "oip"), "are for a prediction URL")


# ----------------------------------------------------------------------------- netmark serve --protocol


@pytest.mark.parametrize(("protocol", "path"), [("oip", "/v2/models/suspect/infer"),
                                                ("kserve-v1", "/v1/models/suspect:predict")])
def test_netmark_server_speaks_the_standard_protocols(protocol: str, path: str, marked, independent, serve,  # noqa: F811
                                                      key_file: Path) -> None:  # noqa: F811
    """netmark's own server with --protocol: verified through tritonclient (oip) and the v1 client; bad requests
    answer 400 with one line and the server goes on."""
    url = serve(marked[0], protocol=protocol, name="suspect").url
    r = _verify(url + path, key_file, "--protocol", protocol, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["detected"] is True, (r.stdout, r.stderr)
    other = serve(independent, protocol=protocol, name="suspect").url
    r = _verify(other + path, key_file, "--protocol", protocol)
    assert r.exit_code == 1 and r.stdout.startswith("NOT DETECTED"), (r.stdout, r.stderr)
    ready = "/v2/health/ready" if protocol == "oip" else "/v1/models/suspect"
    assert _request(url, "GET", ready)[0] == 200
    assert _request(url, "POST", "/predict", b"{}")[0] == 404  # only the chosen protocol
    assert _request(url, "GET", "/health")[1]["arch"] == "simple-cnn"
    x = torch.rand(2, 1, 8, 8)
    good = ({"inputs": [{"name": "input-0", "shape": [2, 1, 8, 8], "datatype": "FP32", "data": x.flatten().tolist()}]}
            if protocol == "oip" else {"instances": x.tolist()})
    status, reply = _request(url, "POST", path, json.dumps(good).encode())
    assert status == 200, reply
    got = reply["outputs"][0]["data"] if protocol == "oip" else reply["predictions"]
    assert got == model_predictor(marked[0])(x).tolist()
    bad = [{"inputs": []}, {"inputs": [{"name": "i", "shape": [2, 1, 8, 8], "datatype": "BYTES", "data": []}]},
           {"inputs": [{"name": "i", "shape": [2, 1, 8, 8], "datatype": "FP32", "data": [1.0] * 5}]},
           {"inputs": [{"name": "i", "shape": [2, 64], "datatype": "FP32", "data": [1.0] * 128}]},
           {"inputs": [{"name": "i", "shape": [2, 1, 8, 8], "datatype": "FP32",
                        "parameters": {"binary_data_size": 512}}]}] if protocol == "oip" else [
           {"instances": "x"}, {"instances": [[[1.0, 2.0]], [[1.0]]]}, {"instances": [[1.0] * 64]},
           {"predictions": []}, {"instances": [[[[float("nan")] * 8] * 8]]}]
    for body in bad:
        status, reply = _request(url, "POST", path, json.dumps(body).encode())
        assert status == 400 and "\n" not in reply["error"], (body, status, reply)
    status, reply = _request(url, "POST", path, json.dumps(good).encode())
    assert status == 200


@pytest.mark.parametrize("protocol", ["oip", "kserve-v1"])
def test_integer_inputs_travel_as_integers(protocol: str, marked, serve) -> None:  # noqa: F811
    """Integer inputs (token ids, here integer-valued images) go as INT64 / JSON integers, not floats: the server
    reads them back exactly."""
    url = serve(marked[0], protocol=protocol, name="m").url
    x = torch.randint(0, 17, (9, 1, 8, 8), generator=torch.Generator().manual_seed(1))
    path = "/v2/models/m/infer" if protocol == "oip" else "/v1/models/m:predict"
    got = make_predictor(url + path, protocol, batch_size=4)(x)
    assert torch.equal(torch.as_tensor(got), model_predictor(marked[0])(x.float()))
    if protocol == "kserve-v1":
        assert isinstance(KServeV1Predictor(url + path)._body(x[:1])["instances"][0][0][0][0], int)


def test_cli_serve_rejects_an_unknown_protocol(model_files: dict[str, Path]) -> None:
    _assert_bad(runner.invoke(app, ["serve", str(model_files["marked"]), "--protocol", "grpc", "--port", "0"]),
                "protocol must be")
    _assert_bad(runner.invoke(app, ["serve", str(model_files["marked"]), "--protocol", "oip", "--name", "a/b"]),
                "model name")


# ----------------------------------------------------------------------------- units


def test_parse_headers() -> None:
    assert parse_headers(["Authorization: Bearer a:b", " X-Api-Key :k "]) == {"Authorization": "Bearer a:b",
                                                                             "X-Api-Key": "k"}
    assert parse_headers(None) == {}
    for bad in ("Bearer SECRETX", ": SECRETX", "Bad Name: SECRETX", "X-A:", "X-A:  ", "X-A: SECRETX\nX-B: 1"):
        with pytest.raises(ConfigError) as e:
            parse_headers(["X-Ok: fine", bad])
        assert "SECRETX" not in str(e.value) and "\n" not in str(e.value)


def test_labels_from_answers() -> None:
    assert labels_from_answers([3, 1, 2], 3, "e").tolist() == [3, 1, 2]
    assert labels_from_answers([[3.0], [1.0]], 2, "e").tolist() == [3, 1]
    assert labels_from_answers(np.array([[0.1, 0.9], [2.0, -1.0]], np.float32), 2, "e").tolist() == [1, 0]
    assert labels_from_answers([], 0, "e").tolist() == []
    assert labels_from_answers(np.array([0.0, 5.0, 1.0] * 2).reshape(2, 3, 1, 1), 2, "e").tolist() == [1, 1]
    for bad, match in (([1, 2], "2 answers for 3"), ([[1, 2], [3]], "for 3 inputs"), ([0.5, 1, 2], "non-integer"),
                       ([[float("nan"), 1.0]] * 3, "NaN"), (["a", "b", "c"], "for 3 inputs"),
                       ([True, False, True], "booleans"), ({"x": 1}, "for 3 inputs"),
                       (np.zeros((3, 2, 2)), "shape \\[2, 2\\] per input")):
        with pytest.raises(QueryError, match=match):
            labels_from_answers(bad, 3, "e")


def test_predictor_urls_and_budget() -> None:
    p = OipPredictor("http://127.0.0.1:1/api/v2/models/my%20net/versions/3/infer")
    assert (p.model_name, p.model_version) == ("my net", "3")
    assert OipPredictor("https://h:2/v2/models/m").model_version == ""
    for bad in ("http://h:1/v2/models/", "http://h:1/v2/models/m/extra/infer", "http://u:pw@h:1/v2/models/m/infer",
                "ftp://h/v2/models/m/infer"):
        with pytest.raises(ConfigError):
            OipPredictor(bad)
    k = KServeV1Predictor("http://127.0.0.1:1/x/v1/models/m")
    assert k.predict_url == "http://127.0.0.1:1/x/v1/models/m:predict"
    assert KServeV1Predictor("http://h:1/v1/models/m:predict").predict_url == "http://h:1/v1/models/m:predict"
    calls: list[int] = []
    budget = QueryBudget(lambda x: calls.append(len(x)) or torch.zeros(len(x)), 10)
    budget(torch.zeros(6, 1))
    with pytest.raises(QueryError, match="budget of 10"):
        budget(torch.zeros(5, 1))
    assert calls == [6] and budget.used == 6
    assert planned_queries(50, claim=False, labels_random=False, redraws=9) == 50
    assert planned_queries(50, claim=True, labels_random=True, redraws=9) == 50
    assert planned_queries(50, claim=True, labels_random=False, redraws=9) == 550
