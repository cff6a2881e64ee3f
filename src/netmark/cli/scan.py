"""``netmark scan PATH... --key KEY``: look for one watermark in many model files, in one process.

A folder of checkpoints (a model hub mirror, a team's artefact store) is screened for the owner's key without a
process per file: the key is read once, and for methods that read named weights (Uchida, Wang, Tartaglione) each
file is opened lazily for the key's host tensors only (:mod:`netmark.weights`), whatever its architecture; other
methods rebuild each model (:func:`netmark.io.load_model`). Each file gives one line — path, detected, p-value, or the
file's error (a bad file never stops the scan) — as text or, with ``--jsonl``, one JSON object per line; a summary
goes to stderr. Exit 0 if any file carries the watermark, 1 if none does, 2 for a bad key or option.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from netmark.cli import common as opt


def model_files(paths: list[Path]) -> Iterator[Path]:
    """Every model under ``paths`` (files given directly, model files under folders, a Hugging Face
    ``save_pretrained`` folder as one model), in sorted order; a path that does not exist is yielded as it is (its
    line reports it)."""
    from netmark.weights import HF_FILES, MODEL_SUFFIXES

    for p in paths:
        if not p.is_dir():
            yield p
            continue
        if any((p / f).is_file() for f in HF_FILES):
            yield p
            continue
        for sub in sorted(p.iterdir()):
            if sub.is_dir():
                yield from model_files([sub])
            elif sub.suffix.lower() in MODEL_SUFFIXES:
                yield sub


@opt.handles_errors
def scan(paths: Annotated[list[Path], typer.Argument(help="model files or folders (searched recursively: .safetensors, .pt/.pth/.bin/.ckpt, .onnx, Hugging Face folders)")],
         key: Annotated[Path, typer.Option("--key", "-k", help="the owner's secret key file")],
         jsonl: Annotated[bool, typer.Option("--jsonl", help="one JSON object per file: path, detected, p_value, score, error")] = False,
         alpha: Annotated[float, typer.Option("--alpha", help="significance level of each file's test")] = 1e-6,
         model_factory: Annotated[str | None, typer.Option("--model-factory", help="package.module:function returning your nn.Module, for methods that run the model: each file's tensors are loaded into it by name")] = None,
         ) -> None:
    """Verify KEY on every model file under PATHS in one process; one line per file. Exit 0 if any is detected.

    Each file is a separate test at --alpha: over N files expect up to N x alpha false detections (Bonferroni: divide
    --alpha by N to bound the whole scan's).
    """
    from netmark.errors import ConfigError, NetmarkError
    from netmark.keys import WatermarkKey
    from netmark.methods import method_from_key

    if not 0 < alpha < 1:
        raise ConfigError(f"--alpha must be in (0, 1), got {alpha}")
    k = WatermarkKey.load(key)
    wm = method_from_key(k)
    weights_only = wm.traits().reads_weights and model_factory is None
    start, seen, found, bad = time.perf_counter(), 0, 0, 0
    for path in model_files(paths):
        seen += 1
        row: dict[str, Any] = {"path": str(path), "detected": None, "p_value": None, "score": None, "error": None}
        try:
            if weights_only:
                res = wm.verify_weights(path, k, alpha=alpha)
            else:
                from netmark.io import load_model
                from netmark.methods import verify as run_verify
                from netmark.weights import from_factory

                net = from_factory(model_factory, path) if model_factory else load_model(path, arch=k.arch)
                res = run_verify(net, k, alpha=alpha)
            row.update(detected=res.detected, p_value=res.p_value, score=res.score)
            found += int(res.detected)
        except (NetmarkError, OSError, ValueError, RuntimeError) as e:
            row["error"] = str(e).splitlines()[0] if str(e) else type(e).__name__
            bad += 1
        if jsonl:
            typer.echo(json.dumps(row))
        elif row["error"] is not None:
            typer.echo(f"{path}\terror\t{row['error']}")
        else:
            typer.echo(f"{path}\t{'DETECTED' if row['detected'] else 'not detected'}\tp={row['p_value']:.3g}")
    seconds = time.perf_counter() - start
    rate = f", {seen / seconds:.0f} files/s" if seconds > 0 and seen else ""
    typer.echo(f"scanned {seen} model(s): {found} detected, {bad} unreadable ({seconds:.2f} s{rate}; key "
               f"{k.fingerprint[:12]}, {k.method}, {'weights only' if weights_only else 'models rebuilt'})", err=True)
    raise typer.Exit(0 if found else 1)
