"""``netmark demo``: the whole story on scikit-learn's bundled digits, in well under 2 minutes.

Train a plain model and a watermarked one (Uchida, same seed), attack the watermarked one
(65% magnitude pruning of the host layer, same-domain fine-tuning, an attacker overwrite),
and verify every model — plus independently trained ones — against the owner's key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from netmark.attacks import FinetuneConfig, OverwriteConfig, PruneConfig, finetune, overwrite, prune
from netmark.bench.roles import fresh_model
from netmark.data import load
from netmark.methods import verify
from netmark.methods.uchida import Uchida, UchidaConfig
from netmark.training import TrainConfig, evaluate, train
from netmark.verify import VerificationResult

MODEL = "simple-cnn"
BITS = 128
LAYER = "conv2"


@dataclass
class DemoRow:
    name: str
    accuracy: float
    result: VerificationResult
    owner_expects: bool  # True: should be detected; False: an independent model


def run_demo(*, epochs: int = 30, independents: int = 3, progress: Callable[[str], None] | None = None,
             ) -> list[DemoRow]:
    """Run the demo and return one row per verified model."""
    say = progress or (lambda _msg: None)
    tr, te = load("digits", "train"), load("digits", "test")
    cfg = TrainConfig(epochs=epochs, lr=0.05, batch_size=64, seed=0, progress=False)
    rows: list[DemoRow] = []

    def add(name: str, model: nn.Module, expects: bool) -> None:
        rows.append(DemoRow(name, evaluate(model, te)["accuracy"], verify(model, key), expects))

    say(f"training a watermarked {MODEL} ({BITS}-bit Uchida key in {LAYER}) on digits ...")
    wm, key, _ = Uchida(UchidaConfig(layer=LAYER, bits=BITS)).embed(fresh_model(MODEL, tr, 0), tr, cfg, seed=2026)
    say("training the same model without a watermark (same seed) ...")
    plain = fresh_model(MODEL, tr, 0)
    train(plain, tr, cfg)
    add("watermarked (owner)", wm, True)
    add("pruned 65% of host layer", prune(wm, PruneConfig(rate=0.65, order="ascending", layer=LAYER)), True)
    say("attacks: fine-tuning and overwriting ...")
    add(f"fine-tuned {epochs} epochs", finetune(wm, tr, FinetuneConfig(train=TrainConfig(
        epochs=epochs, lr=0.05, seed=1, progress=False))), True)
    add("overwritten (attacker key)", overwrite(wm, tr, OverwriteConfig(
        method_config={"layer": LAYER, "bits": BITS}, seed=666,
        train=TrainConfig(epochs=epochs, lr=0.05, seed=2, progress=False))), True)
    add("plain (no watermark)", plain, False)
    for s in range(1, independents + 1):
        say(f"training independent model {s}/{independents} ...")
        m = fresh_model(MODEL, tr, 100 + s)
        train(m, tr, TrainConfig(epochs=epochs, lr=0.05, seed=100 + s, progress=False))
        add(f"independent seed {100 + s}", m, False)
    return rows
