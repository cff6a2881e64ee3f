"""The forgery section of ``netmark evaluate`` (issue 20, item 7): do forged ownership claims get through?

Per method, the owner marks a model under a signed claim (:func:`netmark.methods.ownership.claimed_key`; the
evaluation's seed and schedule) and releases it. A thief who holds only the released model and has read netmark's
code then tries every forgery of :mod:`netmark.attacks.forgery`, each judged twice: by plain ``verify`` (no claim:
the threat) and by the claim check (:func:`~netmark.methods.ownership.check_claim`: the verdict, or the step that
rejects it):

* ``fresh``: his own valid claim and claimed key (its material is random);
* ``fitted``: that key with its message / payload / trigger labels read off the stolen model (Fan et al. 2019);
* ``declared null``: that key declaring a null under which anything is significant;
* ``universal``: (trigger sets) ordinary test images with their true labels as triggers;
* ``selected``: (keys crafted on the model: frontier stitching) FGSM steps of his own images chosen so that the
  stolen model answers them right and his own model wrong;
* ``back-dated``: the owner's claim with its time edited; ``replayed``: the owner's commitment re-signed by the thief
  with his fitted key.

``fitted``, ``declared null`` and ``universal`` are also tried on an independently trained model (independent model
0 of the evaluation: "a key that verifies on any model"). The verifier's reference models (the null of labels that
depend on the images) are independent models 1 and 2; the thief's own model (``selected``) is the evaluation's
unmarked baseline; the thief's images are the owner's training images (any would do, his claim commits to them; the
attacker's few images are too few for some keys, e.g. DeepSigns' 64 of one class). Identities and nonces are derived
from the evaluation's seed so that the section is reproducible (in use they come from the OS CSPRNG).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from torch import nn
from torch.utils.data import Dataset

from netmark.attacks.forgery import back_dated, declared_null, fitted_key, re_signed, selected_triggers, universal_key
from netmark.bench.cache import method_part
from netmark.claims import Claim, Opening
from netmark.draws import derived_root
from netmark.errors import ConfigError, NetmarkError
from netmark.evaluation.blocks import Block, Bullets, Cell, Heading, Inline, Para, Table
from netmark.evaluation.cells import BASELINE, Context, Job, failed, independent_run
from netmark.identity import Identity
from netmark.keys import WatermarkKey
from netmark.methods import WatermarkMethod, verify
from netmark.methods.ownership import ClaimCheck, check_claim, claimed_key
from netmark.training import TrainConfig, train

#: bump when a forgery cell is computed differently
VERSION = 2
#: the forgeries, in the report's column order
KINDS = ("fresh", "fitted", "declared null", "universal", "selected", "back-dated", "replayed")
#: the forgeries also tried on an independent model
INDEPENDENT_KINDS = ("fitted", "declared null", "universal")
#: the independent models of the evaluation the section uses: the suspect, then the verifier's two references
NEEDS_INDEPENDENT = 3


@dataclass(frozen=True)
class Parties:
    """The owner's and the thief's identities, and the nonces of the owner's, the thief's and the thief's
    independent-model claims."""

    owner: Identity
    thief: Identity
    openings: tuple[Opening, Opening, Opening]

    @classmethod
    def from_seed(cls, seed: int) -> Parties:
        """Research parties: every secret derived from ``seed`` (reproducible; never for a real claim)."""
        base = seed.to_bytes(32, "big")
        ids = [Identity(Ed25519PrivateKey.from_private_bytes(derived_root(base, i))) for i in (0, 1)]
        ops = tuple(Opening(derived_root(base, i)) for i in (2, 3, 4))
        return cls(ids[0], ids[1], ops)  # type: ignore[arg-type]


def verdict(check: ClaimCheck) -> str:
    """``accepted`` or ``rejected: <the step that failed>``."""
    return "accepted" if check.ok else "rejected: " + next(n for n, p, _ in check.steps if not p)


def reason(check: ClaimCheck) -> str:
    """The reason of the step that failed (of the last step when all held)."""
    return next((r for _, p, r in check.steps if not p), check.steps[-1][2] if check.steps else "")


def plain(model: nn.Module, key: WatermarkKey, alpha: float) -> str:
    """What ``verify`` without a claim answers: ``detected``, ``not detected`` or ``undecided`` (key refused)."""
    try:
        return "detected" if verify(model, key, alpha=alpha).detected else "not detected"
    except NetmarkError:
        return "undecided"


def forgery_row(method: WatermarkMethod, model: nn.Module, key: WatermarkKey, claim: Claim, *,
                owner_data: Dataset | None, thief_data: Dataset, independent: nn.Module, refs: Sequence[nn.Module],
                thief_models: Sequence[nn.Module], images: torch.Tensor, labels: torch.Tensor, parties: Parties,
                alpha: float) -> dict[str, Any]:
    """Every forgery against the owner's ``model`` (marked under ``claim`` with ``key``) and ``independent``
    (module docstring): ``{"owner": verdict, "forgeries": {kind: {"plain", "claim"}}, "independent": {...}}``."""
    def judge(m: nn.Module, k: WatermarkKey, c: Claim, d: Dataset | None) -> str:
        return verdict(check_claim(m, k, c, data=d, alpha=alpha, null_models=refs))

    data = thief_data if method.traits().needs_data else None
    owner = check_claim(model, key, claim, data=owner_data, alpha=alpha, null_models=refs)
    row: dict[str, Any] = {"owner": verdict(owner), "owner_reason": reason(owner), "forgeries": {}, "independent": {}}
    for target, opening, out, kinds in ((model, parties.openings[1], row["forgeries"], KINDS),
                                        (independent, parties.openings[2], row["independent"], INDEPENDENT_KINDS)):
        tk, tc = claimed_key(method, target, parties.thief, data=data, opening=opening)
        forged = {"fresh": tk, "fitted": fitted_key(target, tk), "declared null": declared_null(tk)}
        if "inputs" in tk.tensors:
            forged["universal"] = universal_key(tk, images, labels)
        if not method.REDERIVABLE:
            forged["selected"] = selected_triggers(target, tk, thief_data, list(thief_models))
        for kind in (k for k in kinds if k in forged):
            out[kind] = {"plain": plain(target, forged[kind], alpha), "claim": judge(target, forged[kind], tc, data)}
    row["forgeries"]["back-dated"] = {"plain": None, "claim": judge(model, key, back_dated(claim), owner_data)}
    row["forgeries"]["replayed"] = {"plain": None, "claim": judge(model, fitted_key(model, key),
                                                                 re_signed(claim, parties.thief), owner_data)}
    return row


def accepted(row: dict[str, Any]) -> int:
    """How many forgeries of ``row`` the claim check accepted."""
    return sum(v["claim"] == "accepted" for part in ("forgeries", "independent") for v in row[part].values())


# ---------------------------------------------------------------------- the evaluation's cell


def mark_under_claim(method: WatermarkMethod, model: nn.Module, data: Dataset, train_config: TrainConfig,
                     parties: Parties) -> tuple[nn.Module, WatermarkKey, Claim]:
    """``model`` marked by ``parties.owner`` under a claim, trained on ``data`` with ``train_config`` (a key crafted on
    a trained model: after a plain run of the schedule): ``(model, key, claim)``."""
    if method.traits().needs_trained_model:
        train(model, data, train_config)
    key, claim = claimed_key(method, model, parties.owner, data=data if method.traits().needs_data else None,
                             opening=parties.openings[0])
    model, key, _ = method.embed(model, data, train_config, key=key, warn=False)
    return model, key, claim


def claimed_owner(ctx: Context, method: WatermarkMethod, parties: Parties) -> tuple[nn.Module, WatermarkKey, Claim]:
    """The owner's model marked under a claim with the evaluation's seed and schedule (:func:`mark_under_claim`)."""
    cfg = replace(ctx.cfg.train, seed=ctx.cfg.seed, progress=False)
    return mark_under_claim(method, ctx.fresh_model(ctx.cfg.seed), ctx.data("train"), cfg, parties)


def forgery_cell(ctx: Context, job: Job) -> dict[str, Any]:
    name, cfg = str(job.method), ctx.cfg
    if cfg.n_independent < NEEDS_INDEPENDENT:
        return failed(ConfigError(f"the forgery section needs {NEEDS_INDEPENDENT} independent models (the suspect "
                                  f"and the verifier's two references), the evaluation has {cfg.n_independent}"))
    method = ctx.method(name)
    parts = {"cell": "forgery", "version": VERSION, "method": method_part(method),
             "model": ctx.run_parts(cfg.seed, None),  # the owner's: architecture, schedule, seed, training data
             "runs": [ctx.run_fp(BASELINE)] + [ctx.run_fp(independent_run(i)) for i in range(NEEDS_INDEPENDENT)],
             "test": ctx.digest("test"), "alpha": cfg.alpha}

    def compute() -> dict[str, Any]:
        parties = Parties.from_seed(cfg.seed)
        model, key, claim = claimed_owner(ctx, method, parties)
        indep, *refs = (ctx.trained(independent_run(i))[0] for i in range(NEEDS_INDEPENDENT))
        test = ctx.data("test")
        n = min(100, len(test))
        row = forgery_row(method, model, key, claim, owner_data=ctx.data("train") if method.traits().needs_data
                          else None, thief_data=ctx.data("train"), independent=indep, refs=refs,
                          thief_models=[ctx.trained(BASELINE)[0]], images=test.x[:n], labels=test.y[:n],
                          parties=parties, alpha=cfg.alpha)
        return {"row": row, "accepted": accepted(row)}

    return ctx.cell(parts, compute)


# ---------------------------------------------------------------------- the report's section


def _text(v: dict[str, Any] | None) -> str | Cell:
    if v is None:
        return "—"
    claim = str(v["claim"])
    shown = claim if v.get("plain") is None else f"{v['plain']} → {claim}"
    return Cell(shown, "lost" if claim == "accepted" else "ok")


def forgery_blocks(res: dict[str, Any]) -> list[Block]:
    """The page's forgery section (``res["forgery"]``: method -> the cell's record)."""
    rows: list[tuple[str | Cell, ...]] = []
    total = owners = 0
    for name, rec in res["forgery"].items():
        if rec.get("error"):
            rows.append((name, Cell(f"error: {rec['error']}", "err"), *["—"] * (len(KINDS) + len(INDEPENDENT_KINDS))))
            continue
        row = rec["row"]
        total += accepted(row)
        owners += row["owner"] == "accepted"
        rows.append((name, Cell(row["owner"], "ok" if row["owner"] == "accepted" else "part"),
                     *(_text(row["forgeries"].get(k)) for k in KINDS),
                     *(_text(row["independent"].get(k)) for k in INDEPENDENT_KINDS)))
    refused: tuple[tuple[Inline, ...], ...] = tuple(
        (("b", name), f": {rec['row']['owner']} — {rec['row'].get('owner_reason', '')}")
        for name, rec in res["forgery"].items() if rec.get("row") and rec["row"]["owner"] != "accepted")
    blocks: list[Block] = [
        Heading(2, "Forgery: do forged ownership claims get through?"),
        Para(("The owner marks a model under a signed claim and releases it; a thief holding only the released model "
              "forges keys and claims (", ("code", "netmark.evaluation.forgery"), "). Each cell: what plain ",
              ("code", "netmark verify"), " answers without a claim → the claim check's verdict (",
              ("code", "verify --claim"), "), or the step that rejects it. “indep.”: the forgery made on an "
              "independently trained model. The owner column: whether the owner's own claim verifies (its "
              "reason is the first step that fails: ‘specificity’: what the model learnt is not specific to this "
              "claim's triggers, ‘binding’: the key is crafted on the model, which a claim cannot bind).",)),
        Para((f"Forgeries accepted under a claim: {total}; owners' claims verified: {owners} of "
              f"{sum(not r.get('error') for r in res['forgery'].values())}.",)),
        Table(("method", "owner's claim", *KINDS, *(f"indep. {k}" for k in INDEPENDENT_KINDS)), tuple(rows)),
    ]
    if refused:
        blocks += [Para(("Owners' claims refused, and why:",)), Bullets(refused)]
    return blocks
