"""``netmark registry add / verify`` and ``netmark dispute`` (issue 20, items 4 and 6: the offline part)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from netmark.cli import common as opt
from netmark.errors import ConfigError

registry_app = typer.Typer(help="An append-only, hash-chained claim registry (time order without a network): add "
                                "claims, verify the chain, publish its head.", no_args_is_help=True)
RegistryFile = Annotated[Path, typer.Option("--registry", "-r", help="the registry file (JSON lines)")]


@registry_app.command("add")
@opt.handles_errors
def add(claim: Annotated[Path, typer.Argument(help="a signed claim.json (netmark embed --identity)")],
        registry: RegistryFile) -> None:
    """Append a claim (signature checked) and print the new head to publish."""
    from netmark.claims import load_claim
    from netmark.registry import add_claim

    entry = add_claim(registry, load_claim(claim))
    typer.echo(f"registered as entry {entry.index} at {entry.added}; head {entry.hash} (publish it)")


@registry_app.command("verify")
@opt.handles_errors
def verify_chain(registry: RegistryFile,
                 published: Annotated[str | None, typer.Option("--head", help="a head published earlier: it must "
                                                               "still be in the registry")] = None) -> None:
    """Check the chain (an edited, deleted or reordered entry is found) and print the head. Exit 2 if broken."""
    from netmark.registry import head, verify_registry

    if not Path(registry).is_file():
        raise ConfigError(f"registry {registry} does not exist")
    entries = verify_registry(registry, published)
    typer.echo(f"registry intact: {len(entries)} entries; head {head(entries)}")


@opt.handles_errors
def timestamp(claim: Annotated[Path, typer.Argument(help="a signed claim.json")],
              tsa: Annotated[str, typer.Option("--tsa", help="the Time-Stamping Authority's URL (RFC 3161 over HTTP)")],
              out: Annotated[Path | None, typer.Option("--out", "-o", help="the token file (default: the claim's "
                                                        "path with .tsr)")] = None,
              timeout: Annotated[float, typer.Option("--timeout", help="seconds to wait for the TSA")] = 30.0,
              force: opt.Force = False) -> None:
    """Get an RFC 3161 timestamp token for a claim (a third party's signed time; needs netmark[timestamp])."""
    from netmark._util import atomic_write, check_writable
    from netmark.claims import load_claim
    from netmark.timestamps import request_token

    signed = load_claim(claim)
    if not signed.signature_valid():
        raise ConfigError(f"{claim}: the claim's signature does not verify: not timestamped")
    path = check_writable(out or claim.with_suffix(".tsr"), force)
    token = request_token(signed, tsa, timeout=timeout)
    atomic_write(path, lambda p: p.write_bytes(token), force=force)
    typer.echo(f"wrote {path}: the claim timestamped by {tsa}")


@opt.handles_errors
def dispute(model: Annotated[Path, typer.Argument(help="the disputed model file")],
            claims: Annotated[list[Path], typer.Option("--claim", help="a party's claim.json (repeat per party)")],
            keys: Annotated[list[Path], typer.Option("--key", help="that party's key file (same order as --claim)")],
            registry: Annotated[Path | None, typer.Option("--registry", "-r", help="the claim registry that orders "
                                                          "the claims in time")] = None,
            timestamps: Annotated[list[Path] | None, typer.Option("--timestamp", help="a party's RFC 3161 token "
                                                                  "(.tsr), same order as --claim; all or none")] = None,
            tsa_root: Annotated[Path | None, typer.Option("--tsa-root", help="the TSA's root certificate(s), PEM")] = None,
            originals: Annotated[list[Path] | None, typer.Option("--original", help="a party's own original model, same "
                                                                 "order as --claim; all or none: the cross-test")] = None,
            dataset: Annotated[str | None, typer.Option("--dataset", help="for keys made from training images")] = None,
            null_model: Annotated[list[Path] | None, typer.Option("--null-model", help="a model trained without any "
                                                                  "party's key (repeat): the null of keys whose labels "
                                                                  "depend on the images")] = None,
            train_size: opt.TrainSize = None, data_dir: opt.DataDir = None, as_json: opt.AsJson = False) -> None:
    """Whose model is it? Verify each party's claim on MODEL, then order the valid ones by their verified time (an RFC
    3161 token's time, else their place in --registry; the time a claim states about itself is not evidence). Exit 0:
    one party wins; 1: no valid claim, or valid claims without a verified order; 2: bad input.

    With --original per party, also the cross-test: each party's mark in every other party's original. A party whose
    mark is in every other original while no other mark is in its own is the source; when time cannot order the
    valid claims, that decides."""
    from netmark.claims import load_claim
    from netmark.io import load_model
    from netmark.keys import WatermarkKey
    from netmark.methods.ownership import check_claim
    from netmark.registry import position, verify_registry

    if len(claims) != len(keys) or len(claims) < 2:
        raise ConfigError("give two or more parties, one --key per --claim")
    if timestamps and (len(timestamps) != len(claims) or tsa_root is None):
        raise ConfigError("give one --timestamp per --claim, and --tsa-root")
    if originals and len(originals) != len(claims):
        raise ConfigError("give one --original per --claim")
    tokens: list[bytes | None] = [None] * len(claims)
    roots = None
    if timestamps:
        from netmark.timestamps import load_roots, read_token

        tokens, roots = [read_token(t) for t in timestamps], load_roots(tsa_root)  # type: ignore[arg-type]
    parties = [(load_claim(c), WatermarkKey.load(k)) for c, k in zip(claims, keys, strict=True)]
    entries = verify_registry(registry) if registry is not None else []
    data = opt.load_data(dataset, data_dir, train_size)[0] if dataset is not None else None
    rows: list[dict[str, Any]] = []
    for (claim, key), path, token in zip(parties, claims, tokens, strict=True):
        refs = [load_model(p, arch=key.arch) for p in null_model or []]
        check = check_claim(load_model(model, arch=key.arch), key, claim, data=data, token=token, roots=roots,
                            null_models=refs)
        failed = next((f"{n}: {r}" for n, p, r in check.steps if not p), None)
        rows.append({"claim": str(path), "owner": claim.public.fingerprint, "valid": check.ok, "reason": failed,
                     "registered": position(entries, claim),
                     "time": None if check.time is None else check.time.isoformat()})
    valid = [r for r in rows if r["valid"]]
    if timestamps:  # every valid claim has a verified time: the earliest wins
        timed = sorted(valid, key=lambda r: r["time"])
    else:
        timed = sorted((r for r in valid if r["registered"] is not None), key=lambda r: r["registered"])
    if not valid:
        verdict, winner = "no party's claim holds on this model", None
    elif timed:
        winner = timed[0]
        when = (f"was timestamped first ({winner['time']})" if timestamps
                else f"was registered first (entry {winner['registered']})")
        verdict = (f"{winner['claim']} wins: its claim holds and {when}"
                   + ("" if len(valid) == 1 else f"; {len(valid) - 1} other valid claim(s) later or without a time"))
    elif len(valid) == 1:
        winner = valid[0]
        verdict = f"{winner['claim']} wins: the only claim that holds on this model"
    else:
        verdict, winner = ("undecided: several claims hold and none has a verified time (register them, or "
                           "timestamp them)"), None
    cross = _cross_test(rows, [k for _, k in parties], originals) if originals else None
    if cross is not None and cross["source"] is not None:
        source = rows[cross["source"]]
        verdict += f"; cross-test: {source['claim']}'s mark is in every other original and no other mark in its own"
        if winner is None and source["valid"]:
            winner = source
            verdict = f"{source['claim']} wins by the cross-test (no verified time orders the valid claims)"
    if as_json:
        typer.echo(json.dumps({"parties": rows, "verdict": verdict, "winner": winner and winner["claim"],
                               "cross_test": cross}))
    else:
        for r in rows:
            state = "valid" if r["valid"] else f"REJECTED ({r['reason']})"
            at = ("not registered" if r["registered"] is None else f"registry entry {r['registered']}") + (
                "" if r["time"] is None else f", timestamped {r['time']}")
            typer.echo(f"{r['claim']}: owner {r['owner'][:16]}…, {state}, {at}")
        typer.echo(verdict)
    raise typer.Exit(0 if winner is not None else 1)


def _cross_test(rows: list[dict[str, Any]], keys: list[Any], originals: list[Path]) -> dict[str, Any]:
    """``found[i][j]``: party ``i``'s mark detected in party ``j``'s original; ``source``: the one party whose mark is
    in every other original while no other mark is in its own (``None``: no such party)."""
    from netmark.errors import NetmarkError
    from netmark.io import load_model
    from netmark.methods import verify

    def found(key: Any, path: Path) -> bool:
        try:
            return verify(load_model(path, arch=key.arch), key).detected
        except NetmarkError:  # a key that does not fit the other architecture: not found
            return False

    n = len(keys)
    table = [[found(keys[i], originals[j]) if i != j else True for j in range(n)] for i in range(n)]
    sources = [i for i in range(n) if all(table[i][j] for j in range(n)) and not any(table[j][i] for j in range(n)
                                                                                      if j != i)]
    return {"found": table, "source": sources[0] if len(sources) == 1 else None,
            "parties": [r["claim"] for r in rows]}
