"""``netmark identity``: an owner's Ed25519 key pair (:mod:`netmark.identity`; issue 20, item 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from netmark._util import read_bounded
from netmark.cli import common as opt
from netmark.identity import IdentityError, load_identity, load_public, new_identity, save_identity

identity_app = typer.Typer(help="Owner identities: Ed25519 key pairs that sign ownership claims (private part: keep "
                                "it; OUT.pub: publish it).", no_args_is_help=True)
#: a passphrase file holds one line; anything larger is not one
MAX_PASSPHRASE_BYTES = 1024
PassphraseFile = Annotated[Path | None, typer.Option(
    "--passphrase-file", help="the identity is encrypted under the first line of this file (keep the file private)")]


def read_passphrase(path: Path | None) -> bytes | None:
    """The first line of ``path`` (``None``: no passphrase); an empty or oversized one is refused."""
    if path is None:
        return None
    line = read_bounded(path, MAX_PASSPHRASE_BYTES, "passphrase file", IdentityError).splitlines()[:1]
    if not line or not line[0]:
        raise IdentityError(f"passphrase file {path} is empty")
    return line[0]


@identity_app.command("new")
@opt.handles_errors
def new(out: Annotated[Path, typer.Option("--out", "-o", help="the private identity file (written 0600); the public "
                                          "key is written beside it with the suffix .pub")] = Path("owner.id"),
        passphrase_file: PassphraseFile = None, force: opt.Force = False) -> None:
    """Make a new identity from the OS CSPRNG: OUT (private) and OUT.pub (public)."""
    ident = new_identity()
    priv, pub = save_identity(ident, out, passphrase=read_passphrase(passphrase_file), force=force)
    typer.echo(f"wrote {priv} (private: keep it) and {pub} (public: publish it); identity "
               f"{ident.public.fingerprint}")


@identity_app.command("show")
@opt.handles_errors
def show(path: Annotated[Path, typer.Argument(help="an identity's .pub file, or its private file")],
         passphrase_file: PassphraseFile = None) -> None:
    """Print the identity's fingerprint (sha256 of its public key) and its public key (PEM)."""
    pub = (load_public(path) if path.suffix == ".pub"
           else load_identity(path, read_passphrase(passphrase_file)).public)
    typer.echo(f"identity {pub.fingerprint}")
    typer.echo(pub.pem().decode().rstrip())
