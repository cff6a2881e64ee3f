"""``netmark`` command line: train, embed, attack, verify, serve, reproduce, report, demo.

This package assembles the typer :data:`app` from its command modules, one per command group (none of them imports
this one): :mod:`~netmark.cli.model` (train, embed, verify, serve, models), :mod:`~netmark.cli.study` (reproduce,
report, evaluate, demo), :mod:`~netmark.cli.access` (protect, piracy ...), :mod:`~netmark.cli.identity` (identity
new / show) and :mod:`~netmark.cli.attack` (one ``attack NAME`` per registered attack); what they share is in :mod:`~netmark.cli.common`.

Exit codes: 0 success (``verify``: watermark detected), 1 ``verify``: not detected,
2 bad input (one line on stderr, nothing written; with ``--json`` also ``{"error": ..., "exit_code": 2}`` on
stdout). A bad option value caught by the option parser ends the same way (:mod:`netmark.cli.common`).
3 ``embed``: the owner's key does not verify on the trained model or its accuracy is at chance
(:mod:`netmark.methods.check`); one line on stderr, nothing written (``--allow-undetected``: written, exit 0).
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from netmark.cli import access, model, ownership, scan, study
from netmark.cli.attack import attack_app
from netmark.cli.common import OneLineErrors, enable_verbose, version_text
from netmark.cli.identity import identity_app

__all__ = ["app", "main"]

app = typer.Typer(
    help="netmark: embed ownership watermarks into PyTorch models, attack them, and verify them "
    "with a p-value. Exit codes: 0 ok / detected, 1 not detected (verify), 2 bad input, "
    "3 embed: the trained model fails its own verification or is at chance (nothing written).",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, cls=OneLineErrors,
)
for _command in (model.train, model.embed, model.verify, scan.scan, model.serve, study.reproduce, study.report,
                 model.models, study.demo, access.protect, study.evaluate, ownership.dispute, ownership.timestamp):
    app.command()(_command)
app.add_typer(attack_app, name="attack")
app.add_typer(access.piracy_app, name="piracy")
app.add_typer(identity_app, name="identity")
app.add_typer(ownership.registry_app, name="registry")


def _show_version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit(0)


@app.callback()
def _global_options(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_show_version,
                                          help="print netmark's version (and torch's, Python's) and exit")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log progress on stderr, one line per training "
                                          "epoch, also when stderr is not a terminal (e.g. `netmark -v embed ...`)")] = False,
) -> None:
    if verbose:
        enable_verbose(ctx)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("netmark: interrupted", err=True)
        sys.exit(130)
