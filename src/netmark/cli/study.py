"""``netmark reproduce``, ``report``, ``evaluate`` and ``demo``: the studies (a paper's tables re-run, the
comparison of watermark methods, a report re-rendered from its results) and ``evaluate MODEL``'s accuracy check.

Exit codes as everywhere: 0 success, 2 bad input (one line on stderr, nothing written), 130 interrupted.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from netmark.cli import common as opt
from netmark.cli.common import accuracy, data_split, fail, handles_errors, load_transform, protected_model
from netmark.errors import ConfigError


@handles_errors
def reproduce(paper: Annotated[str, typer.Argument(help="which paper: uchida | wang | tartaglione | chen-wu | fkirin (also tartaglione-variants: paper vs official-code embedding)")],
              quick: Annotated[bool, typer.Option("--quick", help="digits + simple-cnn, under a minute")] = False,
              scale: Annotated[str | None, typer.Option("--scale", help="preset: quick | cpu | paper (chen-wu: gpu too; overrides --quick)")] = None,
              out: Annotated[Path | None, typer.Option("--out", "-o", help="output directory (default reports/PAPER[-quick])")] = None,
              cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="keep trained runs here and reuse them (resume; key files inside: keep it private)")] = None,
              jobs: Annotated[int, typer.Option("--jobs", "-j", help="train runs in this many worker processes (needs --cache-dir)")] = 1,
              device: Annotated[str, typer.Option("--device", help="torch device to train and measure on (cuda; chen-wu only)")] = "cpu",
              runs: Annotated[str | None, typer.Option("--runs", help="comma-separated runs of the plan: train only these (and their parents) into --cache-dir and write OUT/runs.json, no report (a big scale in pieces)")] = None,
              data_dir: opt.DataDir = None, force: opt.Force = False, quiet: opt.Quiet = False) -> None:
    """Re-run a paper's tables and figures at CPU scale -> results.json, README.md (paper vs measured), PNGs."""
    import importlib

    from netmark.bench.report import REPRODUCTIONS

    # "uchida" names the reproduction "uchida2017" (the paper's first author, year optional)
    ids = [k for k in REPRODUCTIONS if paper in (k, k.rstrip("0123456789"))]
    if not ids:
        raise ConfigError(f"unknown reproduction {paper!r}; known: {', '.join(sorted(REPRODUCTIONS))}")
    target = out or Path("reports") / (paper + ("-quick" if quick and scale is None else ""))
    t0 = time.perf_counter()
    module = importlib.import_module(REPRODUCTIONS[ids[0]])
    names = None if runs is None else [r.strip() for r in runs.split(",") if r.strip()]
    if names is not None and cache_dir is None:
        raise ConfigError("--runs trains runs for a later report: give --cache-dir too")
    with opt.interruptible("nothing was cached (no --cache-dir)" if cache_dir is None else
                           f"the finished runs are cached in {cache_dir}; run the same command again to resume"):
        module.run(target, quick=quick, scale=scale, force=force, data_dir=data_dir, cache_dir=cache_dir,
                   jobs=jobs, device=device, runs=names, progress=opt.progress(quiet))
    if names is not None:
        typer.echo(f"wrote {target}/runs.json ({time.perf_counter() - t0:.0f} s); the runs are in {cache_dir}")
        return
    typer.echo(f"wrote {target}/results.json, README.md and plots ({time.perf_counter() - t0:.0f} s)")


@handles_errors
def report(results: Annotated[Path, typer.Argument(help="a reproduction's results.json (or its directory)")],
           out: Annotated[Path | None, typer.Option("--out", "-o", help="output directory (default: beside results.json)")] = None,
           force: opt.Force = False) -> None:
    """Re-render a reproduction's or an evaluation's report (markdown, PNG plots; evaluations also a
    self-contained HTML page) from its results.json alone."""
    from netmark.reports import render

    path = results / "results.json" if results.is_dir() else results
    for p in render(path, out, force=force):
        typer.echo(f"wrote {p}")


@handles_errors
def evaluate(model: Annotated[Path | None, typer.Argument(help="model file (.safetensors): its test accuracy, raw and through --transform; leave it out to compare watermark methods instead (--methods ...)")] = None,
             dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="fashion-mnist | mnist | cifar10 | cifar100 | digits (MODEL: digits; comparison: the preset's)")] = None,
             transform: opt.TransformKey = None, split: opt.Split = "test", limit: opt.Limit = None,
             data_dir: opt.DataDir = None, as_json: opt.AsJson = False,
             methods: Annotated[str | None, typer.Option("--methods", help="comparison: comma-separated methods (default: every registered one)")] = None,
             preset: Annotated[str, typer.Option("--preset", help="comparison: full | quick (Fashion-MNIST MLP) | tiny (digits, seconds) | hf (a Hugging Face BERT on patch tokens; --model hf-gpt2)")] = "quick",
             arch: Annotated[str | None, typer.Option("--model", help="comparison: architecture (default: the preset's)")] = None,
             out: Annotated[Path, typer.Option("--out", "-o", help="comparison: output directory")] = Path("reports/evaluation"),
             cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="comparison: trained runs and finished cells (default OUT/cache; a rerun resumes; holds keys: keep it private)")] = None,
             executor: Annotated[str, typer.Option("--executor", help="comparison: local (process pool) | serial | ray (Ray tasks: the cluster at $RAY_ADDRESS, else a local Ray instance of --jobs CPUs; pip install 'netmark\\[ray]')")] = "local",
             jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="comparison: worker processes (ray: CPUs of the local instance)")] = 2,
             max_drop: Annotated[float | None, typer.Option("--max-accuracy-drop", help="comparison: an attack removes a watermark only if the attacked model's task accuracy stays within this many percentage points of the marked model's (else: the attack destroyed the model) [default: 5, Lukas et al. S&P 2022]")] = None,
             forgery: Annotated[bool, typer.Option("--forgery/--no-forgery", help="comparison: the forgery section (per method an owner's model marked under a claim, and every forged key and claim against it; needs 3 independent models)")] = True,
             force: opt.Force = False, quiet: opt.Quiet = False) -> None:
    """Test accuracy of MODEL: unauthorized (raw inputs) and, with --transform, authorized (through it). Without
    MODEL: compare watermark methods side by side (fidelity, capacity, overhead, false positives, every attack swept
    over its strength) -> OUT/results.json, README.md, index.html, PNGs."""
    if model is None:
        if transform is not None:
            raise ConfigError("--transform needs a MODEL (the comparison of methods takes none)")
        _compare(methods, preset, arch, dataset, out, cache_dir, executor, jobs, force, quiet, max_drop, forgery)
        return
    if methods is not None or arch is not None:
        raise ConfigError("give either a MODEL (its accuracy) or --methods/--model (a comparison of methods), not both")
    for given, name in ((max_drop is not None, "--max-accuracy-drop"), (not forgery, "--no-forgery")):
        if given:
            raise ConfigError(f"{name} applies to the comparison of methods (no MODEL)")
    dataset = dataset or "digits"
    g = load_transform(transform) if transform is not None else None
    net, rng = protected_model(model)
    data = data_split(dataset, split, data_dir, limit, rng)
    out_d: dict[str, Any] = {"model": str(model), "dataset": dataset, "split": split, "images": len(data),
                             "unauthorized": accuracy(net, data)}
    if g is not None:
        out_d["authorized"] = accuracy(net, data, g)
    if as_json:
        typer.echo(json.dumps(out_d))
        return
    msg = f"{dataset} {split} ({len(data)} images): unauthorized (raw) accuracy {out_d['unauthorized']:.4f}"
    if g is not None:
        msg += f", authorized (through {transform}) {out_d['authorized']:.4f}"
    typer.echo(msg)


def _compare(methods: str | None, preset: str, arch: str | None, dataset: str | None, out: Path,
             cache_dir: Path | None, executor: str, jobs: int, force: bool, quiet: bool,
             max_drop: float | None = None, forgery: bool = True) -> None:
    """``netmark evaluate`` without a model: :func:`netmark.evaluation.evaluate`, then its report."""
    from netmark.evaluation import evaluate as run_evaluation
    from netmark.evaluation import preset as make_preset
    from netmark.evaluation.report import render_evaluation
    from netmark.evaluation.runner import cache_dir_of

    names = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
    overrides = {k: v for k, v in (("model", arch), ("dataset", dataset), ("max_accuracy_drop", max_drop))
                 if v is not None}
    config = make_preset(preset, methods=names, forgery=forgery, **overrides)
    with opt.interruptible(f"the finished cells are cached in {cache_dir_of(out, cache_dir)}; run the same command "
                           "again to resume"):
        run_evaluation(config, out, cache_dir=cache_dir, executor=executor, jobs=jobs, force=force,
                       progress=opt.progress(quiet))
    page = render_evaluation(out / "results.json", force=True)  # beside the results it was made from
    typer.echo(f"wrote {out / 'results.json'}, {page} and the README and figures beside it")


@handles_errors
def demo(epochs: Annotated[int, typer.Option("--epochs", min=1)] = 30, quiet: opt.Quiet = False) -> None:
    """Train plain vs watermarked on digits, attack, verify everything; prints a table (< 2 min)."""
    from netmark.experiments.demo import BITS, LAYER, MODEL, run_demo

    t0 = time.perf_counter()
    rows = run_demo(epochs=epochs, progress=opt.progress(quiet))
    typer.echo(f"\nUchida watermark, {BITS} bits in {MODEL}.{LAYER}, digits (1437 train / 360 test), "
               f"{epochs} epochs; detected = p-value <= 1e-6")
    head = f"{'model':30s} {'test acc':>8s} {'matched':>9s} {'BER':>6s} {'p-value':>9s} {'detected':>9s}"
    typer.echo(head + "\n" + "-" * len(head))
    for r in rows:
        res = r.result
        typer.echo(f"{r.name:30s} {r.accuracy:8.3f} {res.matched_bits:>4d}/{res.total_bits:<4d} "
                   f"{res.bit_error_rate:6.3f} {res.p_value:9.2g} {'yes' if res.detected else 'no':>9s}")
    typer.echo(f"({time.perf_counter() - t0:.0f} s)")
    wrong_fp = [r.name for r in rows if not r.owner_expects and r.result.detected]
    if wrong_fp:
        raise fail(f"false positive on {', '.join(wrong_fp)}", 1)
