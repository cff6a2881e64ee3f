"""What netmark's runtimes for standard model servers share (:mod:`netmark.serve.mlserver_runtime` for MLServer,
:mod:`netmark.serve.kserve_server` for KServe): loading a netmark model file, answering a batch with scores or labels,
an optional bearer token; and starting either server as a subprocess (:func:`running`, :func:`write_mlserver_repo`,
:func:`mlserver_command`, :func:`kserve_command`: the tests and ``benchmarks/serve_protocols.py`` use them).

Token: when the server process has the environment variable :data:`TOKEN_ENV` set, every inference request must carry
``Authorization: Bearer <that value>`` (else HTTP 401), as a gateway in front of a deployed model would demand; the
value is compared in constant time and never logged.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from netmark.errors import ConfigError
from netmark.serve.wire import ServeError

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


def write_mlserver_repo(folder: Path, models: Mapping[str, tuple[Path, str]], *, http_port: int, grpc_port: int,
                        metrics_port: int, host: str = "127.0.0.1") -> Path:
    """An MLServer model repository in ``folder`` (``settings.json`` and one ``NAME/model-settings.json`` per model)
    serving each ``NAME: (file, outputs)`` through :class:`netmark.serve.mlserver_runtime.NetmarkRuntime` in the
    server process itself (no worker pool); start it with ``mlserver start FOLDER``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(json.dumps({
        "debug": False, "parallel_workers": 0, "host": host, "http_port": http_port, "grpc_port": grpc_port,
        "metrics_port": metrics_port, "metrics_endpoint": None, "load_models_at_startup": True}))
    for name, (path, outputs) in models.items():
        (folder / name).mkdir(exist_ok=True)
        (folder / name / "model-settings.json").write_text(json.dumps({
            "name": name, "implementation": "netmark.serve.mlserver_runtime.NetmarkRuntime",
            "parameters": {"uri": str(Path(path).resolve()), "extra": {"outputs": check_outputs(outputs)}}}))
    return folder


def mlserver_command(folder: Path) -> list[str]:
    """The command line that starts MLServer on the repository ``folder`` with this Python."""
    return [sys.executable, "-m", "mlserver.cli.main", "start", str(folder)]


def kserve_command(models: Mapping[str, tuple[Path, str]], http_port: int) -> list[str]:
    """The command line that starts :mod:`netmark.serve.kserve_server` on ``http_port`` with ``NAME: (file,
    outputs)``."""
    cmd = [sys.executable, "-m", "netmark.serve.kserve_server", "--http-port", str(http_port)]
    for name, (path, outputs) in models.items():
        cmd += ["--model", f"{name}={path},{check_outputs(outputs)}"]
    return cmd


@contextlib.contextmanager
def running(cmd: Sequence[str], ready_url: str, *, log: Path, env: Mapping[str, str] | None = None,
            cwd: Path | None = None, timeout: float = 60.0) -> Iterator[float]:
    """Run the server ``cmd`` (output to ``log``) until ``GET ready_url`` answers 200, yield the seconds that took,
    and stop it afterwards (SIGTERM, then SIGKILL after 20 s). ServeError (with the log's tail) when it exits or
    is not ready within ``timeout`` seconds."""
    t0 = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=dict(env) if env is not None else None, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        while True:
            with contextlib.suppress(urllib.error.URLError, OSError), urllib.request.urlopen(ready_url, timeout=2) as r:
                if r.status == 200:
                    break
            if proc.poll() is not None or time.monotonic() - t0 > timeout:
                tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])[-600:]
                raise ServeError(f"{Path(cmd[0]).name} {' '.join(cmd[1:3])} did not get ready (exit {proc.poll()}): "
                                 f"{tail}")
            time.sleep(0.2)
        yield time.monotonic() - t0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
