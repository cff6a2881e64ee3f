"""Query-only verification through real model servers (issue 22, item 4): `netmark verify URL --protocol P`.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serve_protocols.py

Trains the models of tests/test_serve_protocols.py: a simple-cnn (8×8 inputs) with Adi's trigger set embedded (digits,
12 epochs, lr 0.05, batch 64, seed 0; key seed 3, 16 triggers per batch) and an independent simple-cnn (seed 1, 4
epochs). Starts MLServer (netmark's runtime: the marked model answers logits, the other labels), KServe's ModelServer
(netmark.serve.kserve_server: the marked model answers labels, the other logits) and `netmark serve --protocol`'s own
server for each standard protocol, all on 127.0.0.1 with a bearer token, then runs `netmark verify URL --protocol P
--key KEY --header 'Authorization: Bearer ...' --json` as a subprocess per (server, protocol, model) and prints the
server's start-up seconds, the decision, the p-value and the verify command's wall seconds (process start included).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import torch

from netmark._util import seeded
from netmark.data import load
from netmark.io import save_model
from netmark.methods.adi import Adi, AdiConfig
from netmark.models import build
from netmark.serve.runtimes import TOKEN_ENV, kserve_command, mlserver_command, running, write_mlserver_repo
from netmark.training import TrainConfig, train

TOKEN = "benchmark-token"
NETMARK = str(Path(sys.executable).with_name("netmark"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cnn(seed: int) -> torch.nn.Module:
    with seeded(seed):
        return build("simple-cnn", in_channels=1, image_size=8, num_classes=10)


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    tr = load("digits", "train")
    marked, key, _ = Adi(AdiConfig(per_batch=16)).embed(
        cnn(0), tr, TrainConfig(epochs=12, lr=0.05, batch_size=64, seed=0, progress=False), seed=3)
    independent = cnn(1)
    train(independent, tr, TrainConfig(epochs=4, lr=0.05, batch_size=64, seed=1, progress=False))
    env = {**os.environ, TOKEN_ENV: TOKEN, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        d = Path(tmp)
        files = {"marked": d / "marked.safetensors", "independent": d / "independent.safetensors"}
        save_model(marked, files["marked"])
        save_model(independent, files["independent"])
        key.save(d / "adi.key")
        print(f"key: adi, {len(key.tensors['inputs'])} triggers; models: simple-cnn on digits")
        targets: list[tuple[str, str, str]] = []  # (server, protocol, url template with {model})
        port = free_port()
        write_mlserver_repo(d / "ml", {"marked": (files["marked"], "logits"),
                                       "independent": (files["independent"], "labels")},
                            http_port=port, grpc_port=free_port(), metrics_port=free_port())
        up = stack.enter_context(running(mlserver_command(d / "ml"), f"http://127.0.0.1:{port}/v2/models/marked/ready",
                                         log=d / "ml.log", env=env, cwd=d))
        print(f"MLServer ready in {up:.1f} s")
        targets.append(("mlserver", "oip", f"http://127.0.0.1:{port}/v2/models/{{model}}/infer"))
        port = free_port()
        cmd = kserve_command({"marked": (files["marked"], "labels"),
                              "independent": (files["independent"], "logits")}, port)
        up = stack.enter_context(running(cmd, f"http://127.0.0.1:{port}/v1/models/marked", log=d / "ks.log", env=env,
                                         cwd=d))
        print(f"KServe ModelServer ready in {up:.1f} s")
        targets += [("kserve", "kserve-v1", f"http://127.0.0.1:{port}/v1/models/{{model}}:predict"),
                    ("kserve", "oip", f"http://127.0.0.1:{port}/v2/models/{{model}}/infer")]
        for protocol, path in (("oip", "/v2/models/suspect/infer"), ("kserve-v1", "/v1/models/suspect:predict")):
            for model in ("marked", "independent"):
                port = free_port()
                cmd = [NETMARK, "serve", str(files[model]), "--port", str(port), "--protocol", protocol,
                       "--name", "suspect"]
                ready = f"http://127.0.0.1:{port}/health"
                up = stack.enter_context(running(cmd, ready, log=d / f"own-{protocol}-{model}.log", env=env, cwd=d))
                targets.append((f"netmark serve ({model})", protocol, f"http://127.0.0.1:{port}{path}#{model}"))
        print(f"{'server':28s} {'protocol':10s} {'model':12s} {'decision':13s} {'p-value':>9s} {'verify s':>8s}")
        for server, protocol, template in targets:
            models = ["marked", "independent"] if "{model}" in template else [template.rsplit("#", 1)[1]]
            for model in models:
                url = template.format(model=model).split("#", 1)[0]
                t0 = time.perf_counter()
                r = subprocess.run([NETMARK, "verify", url, "--protocol", protocol, "--key", str(d / "adi.key"),
                                    "--header", f"Authorization: Bearer {TOKEN}", "--json"],
                                   capture_output=True, text=True, env=env, timeout=120)
                wall = time.perf_counter() - t0
                if r.returncode not in (0, 1):
                    print(f"{server:28s} {protocol:10s} {model:12s} error: {r.stderr.strip()}")
                    continue
                res = json.loads(r.stdout)
                word = "DETECTED" if res["detected"] else "not detected"
                print(f"{server:28s} {protocol:10s} {model:12s} {word:13s} {res['p_value']:9.3g} {wall:8.2f}")


if __name__ == "__main__":
    main()
