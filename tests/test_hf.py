"""Hugging Face models (issue 22, items 1-3): a tiny BERT (Linear host) and a tiny GPT-2 (``Conv1D`` host, weight
stored (in, out)) built from a config (random init, no download), marked with ``netmark.embed`` from a ``DataLoader`` of
dict batches (``input_ids``, ``attention_mask``, ``labels``; the model returns a ``ModelOutput``), saved with
``save_pretrained`` and verified by ``netmark verify DIR`` from their weights alone."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, Dataset
from typer.testing import CliRunner

import netmark
from netmark.cli import app
from netmark.methods import get_method
from netmark.methods.uchida import UchidaConfig
from netmark.methods.wang import WangConfig
from netmark.training import TrainConfig

transformers = pytest.importorskip("transformers")

VOCAB, LENGTH = 100, 12


class Tokens(Dataset):
    """Random token sequences; the label is the parity of the first token (learnable)."""

    def __init__(self, n: int = 256, seed: int = 0) -> None:
        self.ids = torch.randint(1, VOCAB, (n, LENGTH), generator=torch.Generator().manual_seed(seed))  # 0: padding
        self.labels = self.ids[:, 0] % 2

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(LENGTH, dtype=torch.int64),
                "labels": self.labels[i]}


def tiny(kind: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    if kind == "bert":
        return transformers.BertForSequenceClassification(transformers.BertConfig(
            vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=32, num_labels=2))
    return transformers.GPT2ForSequenceClassification(transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=32, num_labels=2, pad_token_id=0,
        bos_token_id=1, eos_token_id=1))


HOSTS = {"bert": "bert.encoder.layer.1.output.dense", "gpt2": "transformer.h.0.mlp.c_fc"}
TRAIN = TrainConfig(epochs=6, lr=5e-3, optimizer="adam", seed=0, progress=False)


def loader() -> DataLoader:
    return DataLoader(Tokens(), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))


def run(*args: object) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
@pytest.mark.parametrize("method", ["uchida", "wang"])
def test_a_hugging_face_model_is_marked_and_verified_from_its_folder(kind: str, method: str, tmp_path: Path) -> None:
    config = (UchidaConfig(layer=HOSTS[kind], bits=32, strength=1.0) if method == "uchida"
              else WangConfig(layer=HOSTS[kind], bits=32, null_samples=256))
    model, key, run_ = netmark.embed(tiny(kind, 0), loader(), config, TRAIN, seed=1)
    assert run_.check.verification is not None and run_.check.verification.detected
    host = key.hosts or {}
    assert list(host) == [f"{HOSTS[kind]}.weight"] and host[f"{HOSTS[kind]}.weight"].get("transposed", False) == (
        kind == "gpt2")
    model.save_pretrained(tmp_path / "mine")
    key.save(tmp_path / "owner.key")
    r = run("verify", tmp_path / "mine", "--key", tmp_path / "owner.key")
    assert r.exit_code == 0 and "DETECTED" in r.stdout and "weights only" in r.stdout, r.output
    tiny(kind, 5).save_pretrained(tmp_path / "other")
    r = run("verify", tmp_path / "other", "--key", tmp_path / "owner.key")
    assert r.exit_code == 1 and "NOT DETECTED" in r.stdout, r.output
    assert get_method(method)(config).verify_weights(tmp_path / "mine", key).p_value == pytest.approx(
        run_.check.verification.p_value)


def test_the_default_host_of_a_model_without_registry_architecture_is_a_hidden_layer() -> None:
    """Never the classification head (GPT-2's ``score`` is its only nn.Linear); a Conv1D layer qualifies."""
    for kind in ("bert", "gpt2"):
        key = get_method("uchida")(UchidaConfig(bits=32)).create_key(tiny(kind, 0), seed=1)
        assert key.layer not in ("classifier", "score") and key.layer is not None
    assert get_method("uchida")(UchidaConfig(bits=32)).create_key(tiny("gpt2", 0), seed=1).layer.startswith(
        "transformer.h.")


def test_a_folder_loads_as_its_model_class_without_the_hub(tmp_path: Path) -> None:
    """For methods that run the model: config.json's architecture, from the folder only."""
    from netmark.errors import ModelFileError
    from netmark.weights import load_pretrained

    model = tiny("gpt2", 0).eval()
    model.save_pretrained(tmp_path / "m")
    again = load_pretrained(tmp_path / "m")
    x = Tokens(4)[0]["input_ids"][None]
    with torch.no_grad():
        assert torch.allclose(again(x).logits, model(x).logits)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match=r"no config\.json"):
        load_pretrained(tmp_path / "empty")


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_adi_token_triggers_mark_a_model_verified_from_its_folder(kind: str, tmp_path: Path) -> None:
    """Black box on a token model: random sequences of the vocabulary (never the padding id, which ends a sequence for
    GPT-2) with committed random labels, mixed into the dict batches; the save_pretrained folder loads through
    transformers (the method runs the model) and is detected, an independent model is not (exact Binomial(n, 1/2)
    null)."""
    from netmark.methods.adi import AdiConfig

    config = AdiConfig(size=50, per_batch=16)
    model, key, run_ = netmark.embed(tiny(kind, 0), loader(), config, replace(TRAIN, epochs=10), seed=1)
    assert run_.check.verification is not None and run_.check.verification.detected
    triggers = key.tensors["inputs"]
    assert triggers.dtype == torch.int64 and triggers.shape == (50, LENGTH) and not bool((triggers == 0).any())
    model.save_pretrained(tmp_path / "mine")
    key.save(tmp_path / "owner.key")
    r = run("verify", tmp_path / "mine", "--key", tmp_path / "owner.key")
    assert r.exit_code == 0 and "DETECTED" in r.stdout, r.output
    tiny(kind, 5).save_pretrained(tmp_path / "other")
    r = run("verify", tmp_path / "other", "--key", tmp_path / "owner.key")
    assert r.exit_code == 1 and "NOT DETECTED" in r.stdout, r.output


def test_an_onnx_export_that_renames_the_host_is_searched_with_a_bonferroni_correction(tmp_path: Path) -> None:
    """The TorchScript exporter stores BERT's Linear weights as anonymous, transposed MatMul constants: the key's
    host is read as each tensor of its shape, the best p-value times the readings tried; detected in the owner's
    export, not in an independent model's."""
    import warnings

    pytest.importorskip("onnx")
    config = UchidaConfig(layer=HOSTS["bert"], bits=32, strength=1.0)
    model, key, _ = netmark.embed(tiny("bert", 0), loader(), config, TRAIN, seed=1)
    key.save(tmp_path / "owner.key")
    x = torch.zeros(1, LENGTH, dtype=torch.int64)
    for name, net in (("mine", model), ("other", tiny("bert", 5))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net.eval(), (x,), str(tmp_path / f"{name}.onnx"), dynamo=False, opset_version=17)
    res = get_method("uchida")(config).verify_weights(tmp_path / "mine.onnx", key)
    assert res.detected and res.details["readings"] >= 2 and res.details["renamed_as"].startswith("onnx::")
    r = run("verify", tmp_path / "mine.onnx", "--key", tmp_path / "owner.key")
    assert r.exit_code == 0 and "Bonferroni" in r.stdout, r.output
    r = run("verify", tmp_path / "other.onnx", "--key", tmp_path / "owner.key")
    assert r.exit_code == 1 and "NOT DETECTED" in r.stdout, r.output
