"""Does `netmark embed` with its defaults hand out a detected watermark, for every registered method?

Runs ``netmark embed --method M --model lenet5 --dataset fashion-mnist`` (default epochs, all 60,000 images)
for every method of the registry, each in its own process into a temporary directory, and prints a markdown
table: method, exit code (0 written, 3 refused: not detected or at chance, see ``netmark.methods.check``),
test accuracy, what the owner's verification reached, its p-value, wall seconds. The numbers come from the
run's report.json (exit 0) or from its one-line refusal (exit 3).

    python benchmarks/embed_defaults.py                                   # the real thing (hours on a CPU)
    python benchmarks/embed_defaults.py --train-size 6000 --epochs 3      # a small version (minutes)
    python benchmarks/embed_defaults.py --methods adi,uchida --out table.md

Extra ``netmark embed`` options go after ``--``, e.g. ``-- --data-dir /data/fashion-mnist``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

#: the refusal line of `netmark embed` (exit 3): "... : <match text>, p = <p> > alpha ...; test accuracy <acc> ..."
REFUSAL = re.compile(r"^netmark: error: [^:]+: (?P<match>.*?), p = (?P<p>\S+) [<>]=? alpha .*?; "
                     r"(?:test|train) accuracy (?P<acc>[0-9.]+)")
CLI = "from netmark.cli import main; main()"


@dataclass
class Row:
    method: str
    exit_code: int
    accuracy: float | None
    reached: str
    p_value: float | None
    seconds: float


def run_one(method: str, args: argparse.Namespace, extra: list[str]) -> Row:
    """One `netmark embed` of ``method`` in a child process; its exit code and what it reached."""
    with tempfile.TemporaryDirectory(prefix=f"embed-{method}-") as tmp:
        out = Path(tmp) / "owner"
        cmd = [sys.executable, "-c", CLI, "embed", "--method", method, "--model", args.model, "--dataset",
               args.dataset, "--seed", str(args.seed), "--out", str(out), "-q"]
        if args.epochs is not None:
            cmd += ["--epochs", str(args.epochs)]
        if args.train_size is not None:
            cmd += ["--train-size", str(args.train_size)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd + extra, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - t0
        if proc.returncode == 0:
            rep = json.loads((out / "report.json").read_text())
            stdout = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
            reached = stdout.split(", p-value")[0].split(", ", 1)[-1] if ", p-value" in stdout else ""
            return Row(method, 0, rep["test_accuracy"], reached, rep["p_value"], seconds)
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
        m = REFUSAL.match(last)
        if m:
            return Row(method, proc.returncode, float(m["acc"]), m["match"], float(m["p"]), seconds)
        return Row(method, proc.returncode, None, last[:160], None, seconds)


def table(rows: list[Row]) -> str:
    lines = ["| method | exit | test accuracy | owner verification | p-value | seconds |",
             "|---|---:|---:|---|---:|---:|"]
    for r in rows:
        acc = "" if r.accuracy is None else f"{r.accuracy:.4f}"
        p = "" if r.p_value is None else f"{r.p_value:.3g}"
        lines.append(f"| {r.method} | {r.exit_code} | {acc} | {r.reached} | {p} | {r.seconds:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", help="comma-separated methods (default: every registered one)")
    ap.add_argument("--train-size", type=int, help="a seeded subset of N training images (default: all)")
    ap.add_argument("--epochs", type=int, help="training epochs (default: the CLI's, 10)")
    ap.add_argument("--model", default="lenet5")
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="also write the table (markdown) to this file")
    args = ap.parse_args(argv)
    from netmark.methods import METHODS

    methods = sorted(METHODS) if not args.methods else [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        ap.error(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(sorted(METHODS))}")
    scale = (f"`netmark embed --method M --model {args.model} --dataset {args.dataset} --seed {args.seed}"
             + (f" --epochs {args.epochs}" if args.epochs is not None else "")
             + (f" --train-size {args.train_size}" if args.train_size is not None else "")
             + (" " + " ".join(extra) if extra else "") + "`")
    rows = []
    for m in methods:
        rows.append(run_one(m, args, extra))
        print(f"{m}: exit {rows[-1].exit_code} ({rows[-1].seconds:.0f} s)", file=sys.stderr, flush=True)
    text = f"{scale}\n\n{table(rows)}\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
