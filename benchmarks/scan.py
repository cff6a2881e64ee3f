"""`netmark scan` throughput (issue 22, item 5): LeNet5-size model files verified per second, in one process.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scan.py --files 200 --repeats 3

Writes ``--files`` LeNet5 files (28×28 inputs: netmark safetensors of 431k parameters, 1.7 MB each) into a temporary
folder: half are copies of one Uchida-marked model (2,000 Fashion-MNIST images, 3 epochs; conv2 host, 64 bits) with
Gaussian noise of sd 1e-3 added to every weight, half freshly initialised independent models (seeds 1000..). Then runs
``netmark scan FOLDER --key KEY --jsonl`` as a subprocess ``--repeats`` times and prints, per run, the wall time with
the process start-up, the scan's own rate (its stderr summary) and the detections among the marked copies and the
independents.
Also ``netmark verify`` once per file would cost a process start each: its wall time on one file is printed for
comparison.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from netmark._util import seeded
from netmark.data import load
from netmark.io import save_model
from netmark.methods import get_method
from netmark.methods.uchida import UchidaConfig
from netmark.models import build
from netmark.training import TrainConfig

NETMARK = str(Path(sys.executable).with_name("netmark"))


def lenet(seed: int) -> torch.nn.Module:
    with seeded(seed):
        return build("lenet5", in_channels=1, image_size=28, num_classes=10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = load("fashion-mnist", "train", train_size=2000)
    method = get_method("uchida")(UchidaConfig(layer="conv2", bits=64))
    model, key, run = method.embed(lenet(0), data, TrainConfig(epochs=3, lr=0.01, progress=False), seed=1, warn=False)
    print(f"owner: {run.check.verification.p_value:.3g} (p-value), {sum(p.numel() for p in model.parameters()):,} "
          "parameters")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "zoo"
        folder.mkdir()
        key.save(Path(tmp) / "owner.key")
        gen = torch.Generator().manual_seed(0)
        half = args.files // 2
        for i in range(args.files):
            if i < half:
                copy = lenet(0)
                copy.load_state_dict({k: v + 1e-3 * torch.randn(v.shape, generator=gen)
                                      for k, v in model.state_dict().items()})
            else:
                copy = lenet(1000 + i)
            save_model(copy, folder / f"{'copy' if i < half else 'other'}-{i:04d}.safetensors")
        size = sum(f.stat().st_size for f in folder.iterdir()) / args.files / 1e6
        print(f"{args.files} files of {size:.2f} MB")
        for r in range(args.repeats):
            t0 = time.perf_counter()
            out = subprocess.run([NETMARK, "scan", str(folder), "--key", str(Path(tmp) / "owner.key"), "--jsonl"],
                                 capture_output=True, text=True, check=False)
            wall = time.perf_counter() - t0
            rows = [json.loads(line) for line in out.stdout.splitlines()]
            rate = re.search(r"(\d+) files/s", out.stderr)
            hit_copy = sum(bool(x["detected"]) for x in rows if "copy-" in x["path"])
            hit_other = sum(bool(x["detected"]) for x in rows if "other-" in x["path"])
            print(f"run {r + 1}: {len(rows)} files in {wall:.2f} s with start-up ({len(rows) / wall:.0f} files/s), "
                  f"scan itself {rate.group(1) if rate else '?'} files/s; detected: {hit_copy} of {half} copies, "
                  f"{hit_other} of {args.files - half} independents (exit {out.returncode})")
        t0 = time.perf_counter()
        subprocess.run([NETMARK, "verify", str(folder / "copy-0000.safetensors"), "--key",
                        str(Path(tmp) / "owner.key")], capture_output=True, check=False)
        print(f"netmark verify on one file: {time.perf_counter() - t0:.2f} s (a process per file)")


if __name__ == "__main__":
    main()
