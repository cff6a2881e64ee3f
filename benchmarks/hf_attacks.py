"""Hugging Face models after deployment round trips: the detection table of issue 22's acceptance.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/hf_attacks.py --seed 0

A tiny BERT (2 layers, hidden 32; host ``bert.encoder.layer.1.output.dense``, nn.Linear) and a tiny GPT-2 (2 layers,
n_embd 32; host ``transformer.h.0.mlp.c_fc``, a Conv1D stored (in, out)), built from configs (random init, no
download), are marked with Uchida (32 bits, λ = 1), Wang AUTO (32 bits) and Adi (50 random token sequences with random
labels, 16 per batch; 10 epochs) by ``netmark.embed`` on 256 random token sequences of length 12 (label: parity of the
first token; 6 epochs, Adam lr 5e-3, batch 32), saved with ``save_pretrained`` and attacked: LoRA fine-tuning merged
into the base (peft, r 8, α 16, every hidden Linear/Conv1D; 1 and 3 epochs of Adam lr 1e-3 on 256 other sequences: the
thief's data), torch.ao dynamic int8, an fp16 round trip; and exported to ONNX (fp32; the TorchScript exporter) and
verified from the file's initializers (a host the exporter renamed is searched among the tensors of its shape,
Bonferroni-corrected: ``netmark.methods.weights_verify``). Each cell: the p-value (white box: read from the attacked
model's weights, the way ``netmark verify FOLDER`` reads them; Adi: from the model's answers to the triggers) and the
model's accuracy on 256 held-out sequences.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

import netmark
from netmark.attacks import ATTACKS
from netmark.errors import NetmarkError
from netmark.methods import get_method
from netmark.methods.adi import AdiConfig
from netmark.methods.uchida import UchidaConfig
from netmark.methods.wang import WangConfig
from netmark.training import TrainConfig, evaluate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tiny models and token data of the tests
from tests.test_hf import HOSTS, LENGTH, Tokens, tiny


def attacks(seed: int) -> list[tuple[str, str, dict[str, Any]]]:
    lora = {"train": TrainConfig(epochs=1, lr=1e-3, optimizer="adam", batch_size=32, progress=False)}
    return [("LoRA merge, 1 epoch", "lora", lora),
            ("LoRA merge, 3 epochs", "lora", {"train": TrainConfig(epochs=3, lr=1e-3, optimizer="adam", batch_size=32,
                                                                   progress=False)}),
            ("int8 dynamic", "int8-dynamic", {}), ("fp16 round trip", "roundtrip", {"dtype": "fp16"})]


def onnx_cell(model: torch.nn.Module, method: Any, key: Any) -> str:
    """The marked model exported to ONNX (TorchScript exporter, fp32) and verified from the file's initializers."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            torch.onnx.export(model.eval(), (torch.zeros(1, LENGTH, dtype=torch.int64),), str(path), dynamo=False,
                              opset_version=17)
        except (RuntimeError, TypeError, ValueError) as e:
            return "export fails: " + str(e).splitlines()[0][:60]
        res = method.verify_weights(path, key)
        how = f" ({res.details['readings']} readings)" if "readings" in res.details else ""
        return f"{res.p_value:.2g}{how}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    train_set, thief, held_out = Tokens(256, args.seed), Tokens(256, args.seed + 100), Tokens(256, args.seed + 200)
    rows = []
    for kind in ("bert", "gpt2"):
        for name in ("uchida", "wang", "adi"):
            config = (UchidaConfig(layer=HOSTS[kind], bits=32, strength=1.0) if name == "uchida"
                      else WangConfig(layer=HOSTS[kind], bits=32, null_samples=256) if name == "wang"
                      else AdiConfig(size=50, per_batch=16))
            loader = DataLoader(train_set, batch_size=32, shuffle=True,
                                generator=torch.Generator().manual_seed(args.seed))
            model, key, _ = netmark.embed(tiny(kind, args.seed), loader, config,
                                          TrainConfig(epochs=10 if name == "adi" else 6, lr=5e-3, optimizer="adam",
                                                      seed=args.seed, progress=False), seed=args.seed + 1)
            method = get_method(name)(config)
            cells = [f"{method.verify(model, key).p_value:.2g} / {evaluate(model, held_out)['accuracy']:.2f}"]
            for _, attack, changes in attacks(args.seed):
                cls = ATTACKS[attack]
                cfg = cls.config_cls(seed=args.seed + 7, **changes)
                try:
                    out = cls(cfg)(model, thief if cls.needs_data else None)
                    cells.append(f"{method.verify(out, key).p_value:.2g} / {evaluate(out, held_out)['accuracy']:.2f}")
                except NetmarkError as e:
                    cells.append("refused: " + str(e).split(" (e.g.")[0].removeprefix("the ONNX export "))
            cells.append(onnx_cell(model, method, key) if name != "adi" else "n/a (black box: query the model)")
            rows.append((f"{kind} {name}", cells))
    labels = [label for label, _, _ in attacks(args.seed)] + ["ONNX file (fp32)"]
    print("| model, method | marked | " + " | ".join(labels) + " |")
    print("|---|---|" + "---|" * len(labels))
    for label, cells in rows:
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("\ncells: p-value (weights) / accuracy on 256 held-out sequences; alpha 1e-6")


if __name__ == "__main__":
    main()
