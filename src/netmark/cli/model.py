"""``netmark train``, ``embed``, ``verify``, ``serve`` and ``models``: a model's life from training and embedding
to verification (also of a model behind a prediction URL) and serving.

Exit codes (:mod:`netmark.cli`): 0 success, 1 ``verify``: not detected, 2 bad input, 3 ``embed``: the trained model
fails its own key's check (nothing written).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from netmark.cli import common as opt
from netmark.errors import ConfigError


@opt.handles_errors
def train(model: opt.Model = "lenet5", dataset: opt.Dataset_ = "digits", epochs: opt.Epochs = 10,
          out: opt.OutDir = Path("runs/plain"),
          train_size: opt.TrainSize = None, seed: opt.Seed = 0, lr: opt.Lr = 0.01, batch_size: opt.Batch = 64,
          optimizer: opt.Optim = "sgd", momentum: opt.Momentum = 0.9, nesterov: opt.Nesterov = False,
          weight_decay: opt.Wd = 0.0, milestones: opt.Milestones = "", gamma: opt.Gamma = 0.1,
          model_arg: opt.ModelArgs = None, data_dir: opt.DataDir = None, force: opt.Force = False,
          quiet: opt.Quiet = False, device: opt.Device = "cpu") -> None:
    """Train a model without a watermark -> OUT/model.safetensors, OUT/report.json."""
    from netmark.io import save_model
    from netmark.training import train as run_train

    model_path, report_path = opt.outputs(out, ["model.safetensors", "report.json"], force)
    cfg = opt.train_config(epochs, lr, batch_size, optimizer, momentum, nesterov, weight_decay, milestones, gamma,
                           seed, quiet, device)
    tr, te = opt.load_data(dataset, data_dir, train_size)
    net = opt.fresh_model(model, tr, seed, model_arg)
    opt.echo(f"training {model} on {dataset} ({len(tr)} images, {epochs} epochs, seed {seed})", quiet)
    run = run_train(net, tr, cfg, eval_data=te)
    save_model(net, model_path, extra={"dataset": dataset}, force=force)
    acc = run.final.get("test_accuracy")
    opt.write_json(report_path, {"command": "train", "model": model, "dataset": dataset, "train_size": len(tr),
                                 "train": cfg.to_dict(), "test_accuracy": acc, "train_seconds": run.seconds,
                                 "history": run.history}, force)
    typer.echo(f"test accuracy {acc:.4f}; wrote {model_path}")


@opt.handles_errors
def embed(method: Annotated[str, typer.Option("--method", help="watermarking scheme")] = "uchida",
          model: opt.Model = "lenet5", dataset: opt.Dataset_ = "digits", epochs: opt.Epochs = 10,
          out: opt.OutDir = Path("runs/owner"),
          bits: Annotated[int | None, typer.Option("--bits", min=1, help="message length (default: the method's, uchida 256)")] = None,
          layer: Annotated[str | None, typer.Option("--layer", help="host layer (default: first layer with M >= bits)")] = None,
          key_type: Annotated[str | None, typer.Option("--key-type", help="uchida X: random | direct | diff")] = None,
          strength: Annotated[float | None, typer.Option("--strength", help="regularizer weight lambda (default: the method's paper value)")] = None,
          variant: Annotated[str | None, typer.Option("--variant", help="method variant, e.g. wang: auto | manu")] = None,
          method_arg: Annotated[list[str] | None, typer.Option("--method-arg", help="extra method option k=v")] = None,
          from_model: Annotated[Path | None, typer.Option("--from", help="start from this trained model (fine-tune-to-embed)")] = None,
          distill: Annotated[bool, typer.Option("--distill", help="with --from: no labels, the --from model's soft predictions are the targets (distill-to-embed)")] = False,
          payload: Annotated[Path | None, typer.Option("--payload", help="tartaglione: an image (PNG...) whose RGB pixels are the payload (default: random values)")] = None,
          identity: Annotated[Path | None, typer.Option("--identity", help="sign an ownership claim with this identity (netmark identity new): the key is drawn from the claim's commitment and OUT/claim.json is written beside it")] = None,
          passphrase_file: Annotated[Path | None, typer.Option("--passphrase-file", help="the --identity's passphrase (first line of this file)")] = None,
          null_model: Annotated[list[Path] | None, typer.Option("--null-model", help="a model trained without the key (netmark train; repeat, 20 or more advised): white-box keys store their readings after alignment, which calibrates the p-value of an obfuscated copy; trigger sets with image-dependent labels calibrate their null on these instead of training reference models")] = None,
          allow_undetected: Annotated[bool, typer.Option("--allow-undetected", help="write the files even when the owner's key does not verify on the model or its accuracy is at chance (exit 0 and a warning, not exit 3)")] = False,
          train_size: opt.TrainSize = None, seed: opt.Seed = 0, key_seed: opt.KeySeed = None, lr: opt.Lr = 0.01,
          batch_size: opt.Batch = 64, optimizer: opt.Optim = "sgd", momentum: opt.Momentum = 0.9,
          nesterov: opt.Nesterov = False, weight_decay: opt.Wd = 0.0, milestones: opt.Milestones = "",
          gamma: opt.Gamma = 0.1, model_arg: opt.ModelArgs = None, data_dir: opt.DataDir = None,
          force: opt.Force = False, quiet: opt.Quiet = False, device: opt.Device = "cpu") -> None:
    """Train while embedding a watermark -> OUT/model.safetensors (release), OUT/owner.key (secret), OUT/report.json.

    Exit 3, nothing written: the owner's key does not verify on the trained model, or its test accuracy is at chance
    (netmark.methods.check); one line says what was reached and what to change. --allow-undetected writes anyway.
    """
    import copy

    from netmark.io import save_model

    t0 = time.perf_counter()
    names = ["model.safetensors", "owner.key", "report.json"] + (["claim.json"] if identity is not None else [])
    model_path, key_path, report_path, *claim_path = opt.outputs(out, names, force)
    owner = None
    if identity is not None:
        from netmark.cli.identity import read_passphrase
        from netmark.identity import load_identity

        if key_seed is not None:
            raise ConfigError("--identity draws the key from the claim's commitment: drop --key-seed")
        owner = load_identity(identity, read_passphrase(passphrase_file))
    if distill and from_model is None:
        raise ConfigError("--distill needs --from MODEL (the teacher)")
    wm = opt.make_method(method, {"layer": layer, "bits": bits, "key_type": key_type, "strength": strength,
                                  "variant": variant}, method_arg)
    cfg = opt.train_config(epochs, lr, batch_size, optimizer, momentum, nesterov, weight_decay, milestones, gamma,
                           seed, quiet, device)
    tr, te = opt.load_data(dataset, data_dir, train_size)
    if from_model is not None:
        net = opt.load_model_file(from_model)
        situation = "distill-to-embed" if distill else "fine-tune-to-embed"
    else:
        net = opt.fresh_model(model, tr, seed, model_arg)
        situation = "train-to-embed"
    teacher = copy.deepcopy(net) if distill else None
    opt.echo(f"{situation}: {method} into {type(net).__name__} on {dataset} ({len(tr)} images, {epochs} epochs)", quiet)
    key, claim, values = None, None, None
    if payload is not None:
        from netmark.methods.tartaglione import image_payload

        if not wm.traits().takes_payload:
            raise ConfigError(f"--payload is for real-valued schemes (tartaglione), not {method!r}")
        values, shape = image_payload(str(payload))
        values = values.reshape(shape)
        key = wm.create_key(net, seed=key_seed, payload=values) if owner is None else None
    if owner is not None:
        from netmark.methods.ownership import claimed_key

        key, claim = claimed_key(wm, net, owner, data=tr if wm.traits().needs_data else None, payload=values)
    refs = [opt.load_model_file(p) for p in null_model or []] or None
    net, key, run = wm.embed(net, tr, cfg, seed=key_seed, eval_data=te, teacher=teacher, key=key, warn=False,
                             null_models=refs)
    res, problem = run.check.verification, run.check.problem()
    if problem is not None and not allow_undetected:
        raise opt.fail(f"{problem} Nothing written (--allow-undetected writes it anyway).", 3)
    key.save(key_path, force=force)
    if claim is not None:
        from netmark.claims import save_claim

        save_claim(claim, claim_path[0], force=force)
    save_model(net, model_path, extra={"dataset": dataset}, force=force)
    acc = run.final.get("test_accuracy")
    opt.write_json(report_path, {
        "command": "embed", "situation": situation, "method": method, "method_config": key.config,
        "model": key.arch, "dataset": dataset, "train_size": len(tr), "train": cfg.to_dict(),
        "test_accuracy": acc, "bit_error_rate": res and res.bit_error_rate, "score": res and res.score,
        "p_value": res and res.p_value,
        "key_fingerprint": key.fingerprint, "check": run.check.to_dict(), "train_seconds": run.seconds,
        "total_seconds": time.perf_counter() - t0, "history": run.history}, force)
    if problem is not None:
        opt.echo(f"netmark: warning: {problem} Written anyway (--allow-undetected).")
    reached = "key not verifiable" if res is None else f"{wm.describe(res, with_ber=True)}, p-value {res.p_value:.3g}"
    typer.echo(f"test accuracy {acc:.4f}, {reached}; wrote {model_path} and the secret {key_path} (keep it private)"
               + (f"; the signed claim {claim_path[0]} (publish it)" if claim is not None else ""))


def read_suspect(path: Path, key: Any, *, weights_ok: bool, factory: str | None = None) -> Any:
    """The suspect model in ``path``: built by ``factory`` (package.module:function) with the file's tensors, a
    Hugging Face folder through transformers when the method needs the model itself, else rebuilt from its recorded
    architecture (netmark.io.load_model); or ``None`` when only its weights will be read: ``weights_ok`` (the key's
    method reads named weights) and the file is a directory (Hugging Face), an ONNX file, or a state dict that records
    no architecture while the key has none either (a user's own module). A file whose recorded architecture does not
    fit is refused as before."""
    from netmark.errors import ModelFileError, NoArchitectureError
    from netmark.io import load_model

    if factory is not None:
        from netmark.weights import from_factory

        return from_factory(factory, path)
    if weights_ok and (path.is_dir() or path.suffix.lower() == ".onnx"):
        return None
    if path.is_dir() and (path / "config.json").is_file():
        from netmark.weights import load_pretrained

        return load_pretrained(path)
    try:
        return load_model(path, arch=key.arch)
    except NoArchitectureError as e:
        if weights_ok:
            return None
        raise ModelFileError(f"{e}; the key's method ({key.method}) needs the model itself, not only its "
                             "weights: save it with netmark.save_model") from None


#: what ``verify`` says of a key drawn from a research seed (``--key-seed``): nothing here can tell the owner's
#: guessable key from a forger's
UNCLAIMED_NOTE = ("note: no --claim given, so this is an unverified claim: a key forged to fit the model would pass "
                  "this test too (netmark embed --identity writes a signed claim.json; verify it with --claim)")
SEEDED_WARNING = ("note: this key was drawn from a seed (--key-seed), so anyone who guesses the seed can rebuild it: "
                  "the result proves nothing against an adversary who can guess seeds")


@opt.handles_errors
def verify(model: Annotated[str, typer.Argument(help="suspect model (.safetensors, or plain state_dict .pt/.pth), or the http(s):// URL of a prediction server (black-box keys only, see `netmark serve`)")],
           key: Annotated[Path, typer.Option("--key", "-k", help="the owner's secret key file")],
           as_json: opt.AsJson = False,
           alpha: Annotated[float, typer.Option("--alpha", help="significance level (false-positive bound)")] = 1e-6,
           timeout: Annotated[float, typer.Option("--timeout", help="URL: seconds to wait for each answer")] = 30.0,
           claim: Annotated[Path | None, typer.Option("--claim", help="the owner's signed claim.json (netmark embed --identity): also check its signature, that the key opens its commitment and that the key's material re-derives from it")] = None,
           dataset: Annotated[str | None, typer.Option("--dataset", help="with --claim, for keys made from training images: those images (as embed loaded them)")] = None,
           timestamp: Annotated[Path | None, typer.Option("--timestamp", help="with --claim: its RFC 3161 token (netmark timestamp), checked against --tsa-root")] = None,
           tsa_root: Annotated[Path | None, typer.Option("--tsa-root", help="the TSA's root certificate(s), PEM")] = None,
           null_model: Annotated[list[Path] | None, typer.Option("--null-model", help="with --claim, for keys whose labels depend on the images (zhang-*, frontier-stitching, deepsigns black box): a model you trained without the key (netmark train; repeat, at least 2): the null is measured on these, not taken from the key")] = None,
           redraws: Annotated[int, typer.Option("--redraws", min=1, help="with --claim, for single-target trigger sets (zhang-*): keys drawn from other roots that the specificity step compares the claimed triggers with (p-value floor 1/(N+1); through a URL each costs a query round)")] = 999,
           model_factory: Annotated[str | None, typer.Option("--model-factory", help="package.module:function returning your nn.Module (importable: on PYTHONPATH); MODEL's tensors are loaded into it by name. For methods that run the model (DeepSigns, trigger sets, alignment) on an architecture netmark does not know")] = None,
           train_size: opt.TrainSize = None, data_dir: opt.DataDir = None,
           protocol: Annotated[str, typer.Option("--protocol", help="URL: what the server speaks: netmark (netmark serve's POST /predict), oip (Open Inference Protocol v2: KServe v2, Triton, MLServer, BentoML; URL .../v2/models/NAME/infer) or kserve-v1 (URL .../v1/models/NAME:predict); answers may be labels or scores (arg-max)")] = "netmark",
           header: Annotated[list[str] | None, typer.Option("--header", "-H", help="URL: an HTTP header 'Name: value' sent with every request (repeatable; e.g. 'Authorization: Bearer TOKEN'); never logged or printed")] = None,
           max_queries: Annotated[int | None, typer.Option("--max-queries", min=1, help="URL: most inputs to send; a verification that would need more is refused before anything is sent")] = None,
           batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="URL: inputs per request")] = 64,
           ) -> None:
    """Is the key's watermark in MODEL? Exit 0 = detected (with --claim: and every claim check holds), 1 = not
    detected or claim rejected (the reason is printed), 2 = bad input.

    Without --claim the answer is an unverified claim: a key forged to fit the model would pass it too.

    MODEL may be an http(s):// URL of a prediction server (black-box keys only): the key's triggers are sent to it (--protocol: netmark.serve's wire format, the Open Inference Protocol v2 or KServe v1; see netmark.serve.protocols) and only its answers are used, as with a stolen model behind an API.
    """
    from netmark.keys import WatermarkKey
    from netmark.methods import method_from_key
    from netmark.verify import VerificationResult

    if not 0 < alpha < 1:
        raise ConfigError(f"--alpha must be in (0, 1), got {alpha}")
    k = WatermarkKey.load(key)
    wm, shown = method_from_key(k), model
    signed = None
    if claim is not None:
        from netmark.claims import load_claim

        signed = load_claim(claim)
    if null_model and claim is None:
        raise ConfigError("--null-model is for --claim (without a claim the key's own null is used)")
    token, roots = None, None
    if timestamp is not None:
        from netmark.timestamps import load_roots, read_token

        if claim is None or tsa_root is None:
            raise ConfigError("--timestamp needs --claim and --tsa-root")
        token, roots = read_token(timestamp), load_roots(tsa_root)
    from netmark.io import load_model

    if "://" in model:
        from netmark.methods.triggerset import Predictor
        from netmark.serve import is_url, redact_url
        from netmark.serve.protocols import make_predictor, parse_headers, planned_queries

        if not is_url(model):
            raise ConfigError(f"only http:// and https:// URLs can be queried, got {redact_url(model)!r}")
        shown, headers = redact_url(model), parse_headers(header)
        if not wm.query_verifiable():
            raise ConfigError(f"the key's method {k.method!r} is white-box (it reads the model's weights), so it "
                              "cannot be verified through a prediction URL: pass the model file")
        triggers = k.tensors.get("inputs")
        need = planned_queries(len(triggers) if triggers is not None else 0, claim=signed is not None,
                               labels_random=k.message_random, redraws=redraws)
        if max_queries is not None and need > max_queries:
            raise ConfigError(f"verifying this key sends up to {need} inputs to {shown}, over --max-queries "
                              f"{max_queries}; nothing was sent")
        predictor = make_predictor(model, protocol, timeout=timeout, batch_size=batch_size, headers=headers,
                                   max_queries=max_queries)
        predict: Predictor | None = predictor

        def decide(key_: WatermarkKey) -> VerificationResult:
            return wm.verify_query(predictor, key_, alpha=alpha)

        net = None
        if signed is not None:  # the claim's material is re-derived on a fresh model of the key's architecture
            from netmark.models import build

            if k.arch is None:
                raise ConfigError("the key records no architecture: a claim through a URL cannot re-derive its material")
            net = build(k.arch["name"], k.arch.get("args") or {})
    else:
        from netmark.methods import verify as run_verify

        if protocol != "netmark" or header or max_queries is not None:
            raise ConfigError("--protocol, --header and --max-queries are for a prediction URL, not a model file")

        net, predict = read_suspect(Path(model), k, weights_ok=wm.traits().reads_weights and signed is None,
                                    factory=model_factory), None
        if net is not None and wm.white_box:  # a query-time filter hides nothing from whoever holds the file
            from netmark.models.wrapped import unwrap

            net = unwrap(net)

        def decide(key_: WatermarkKey) -> VerificationResult:
            if net is None:  # weights only: the file's architecture is not rebuilt (netmark.weights)
                return wm.verify_weights(Path(model), key_, alpha=alpha)
            return run_verify(net, key_, alpha=alpha)

    checked = None
    if signed is not None and net is not None:
        from netmark.methods.ownership import check_claim

        data = opt.load_data(dataset, data_dir, train_size)[0] if dataset is not None else None
        refs = [load_model(p, arch=k.arch) for p in null_model or []]
        checked = check_claim(net, k, signed, data=data, alpha=alpha, token=token, roots=roots, predict=predict,
                              null_models=refs, redraws=redraws)
    # the watermark is decided once: the claim check's own decision when it got that far
    res = checked.result if checked is not None and checked.result is not None else decide(k)
    ok = res.detected and (checked is None or checked.ok)
    if as_json:
        typer.echo(json.dumps({**res.to_dict(), "key_fingerprint": k.fingerprint, "model": shown,
                               "model_factory": model_factory,
                               "key_seeded": k.seeded, "claim": None if checked is None else checked.to_dict()},
                              default=str))
    else:
        word = "DETECTED" if res.detected else "NOT DETECTED"
        typer.echo(f"{word}: {wm.describe(res, with_ber=True)}, p-value {res.p_value:.3g} vs alpha {alpha:g} "
                   f"[{res.method}, key {k.fingerprint[:12]}]")
        if res.details.get("read"):
            typer.echo(f"  read: {res.details['read']}: the key's host tensors, by name")
        al = res.details.get("alignment")
        if isinstance(al, dict) and al.get("used") == "aligned":
            raw = al.get("raw") or {}
            raw_text = f"p-value {raw['p_value']:.3g}" if "p_value" in raw else "unreadable: its layers changed shape"
            typer.echo(f"  aligned: the suspect's units were mapped back onto the key's reference before extraction "
                       f"(quality {al['quality']:.3f}; read as it is: {raw_text})")
        if checked is not None:
            for name, passed, reason in checked.steps:
                typer.echo(f"  {'ok ' if passed else 'NO '} {name}: {reason}")
            failed = next((f"{n}: {r}" for n, p, r in checked.steps if not p), None)
            typer.echo("CLAIM VERIFIED" if checked.ok else f"CLAIM REJECTED ({failed})")
        else:
            typer.echo(UNCLAIMED_NOTE)
        if k.seeded:
            typer.echo(SEEDED_WARNING)
    raise typer.Exit(0 if ok else 1)


@opt.handles_errors
def serve(model: Annotated[Path, typer.Argument(help="model file (.safetensors, or plain state_dict .pt/.pth with --key)")],
          host: Annotated[str, typer.Option("--host", help="address to bind (default: this machine only)")] = "127.0.0.1",
          port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="TCP port (0: any free port)")] = 8000,
          key: Annotated[Path | None, typer.Option("--key", "-k", help="take the architecture from this key (plain .pt state_dict)")] = None,
          protocol: Annotated[str, typer.Option("--protocol", help="netmark (POST /predict), oip (Open Inference Protocol v2: POST /v2/models/NAME/infer) or kserve-v1 (POST /v1/models/NAME:predict); labels only")] = "netmark",
          name: Annotated[str, typer.Option("--name", help="the model's name in oip / kserve-v1 paths")] = "model",
          ) -> None:
    """Serve MODEL's predictions over HTTP (POST /predict, GET /health) until Ctrl-C.

    The wire format is documented in netmark.serve (netmark.serve.standard for --protocol oip|kserve-v1); `netmark verify URL --key KEY [--protocol P]` queries such a server. There is no authentication: keep the default loopback --host unless the network is trusted.
    """
    from netmark._util import sigterm_interrupts
    from netmark.serve import is_loopback, make_server

    net = opt.load_model_file(model, key)
    server = make_server(net, host=host, port=port, protocol=protocol, name=name)
    if not is_loopback(host):
        opt.echo(f"warning: serving on {host}, reachable from the network without authentication")
    typer.echo(f"serving {model} at {server.url} (POST {server.predict_path}, GET /health); Ctrl-C stops")
    try:
        with sigterm_interrupts():  # SIGTERM stops cleanly too
            server.serve_forever()
    except KeyboardInterrupt:
        opt.echo("stopped")
    finally:
        server.server_close()


@opt.handles_errors
def models() -> None:
    """List the registered architectures."""
    from netmark.models import MODELS

    for name in sorted(MODELS):
        spec = MODELS[name]
        typer.echo(f"{name:12s} {spec.summary}  [host layer: {spec.host_layer}]")
