"""Hugging Face transformers as registry architectures (``hf-bert``, ``hf-gpt2``: :mod:`netmark.models.hf`) and the
``hf`` evaluation preset (issue 22, item 6): the models build, save and reload like any registry model, their hosts
are the transformers' own hidden layers (``nn.Linear``; GPT-2's ``Conv1D``), the deployment attacks run on them (the
ONNX export reads back the weights the exporter renamed), and ``netmark evaluate``'s ``hf`` sweeps run end to end on
a tiny scale."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from netmark._util import seeded
from netmark.attacks import ATTACKS
from netmark.errors import ArchitectureError
from netmark.evaluation import evaluate, preset
from netmark.evaluation.presets import hf_sweeps
from netmark.io import load_model, save_model
from netmark.models import MODELS, build, host_layer

transformers = pytest.importorskip("transformers")


def tiny(name: str, seed: int = 0) -> torch.nn.Module:
    with seeded(seed):
        return build(name, in_channels=1, image_size=8, num_classes=10, patch=2).eval()


@pytest.mark.parametrize("name", ["hf-bert", "hf-gpt2"])
def test_a_transformer_reads_an_image_as_patch_tokens_and_reloads_from_its_file(name: str, tmp_path: Path) -> None:
    model = tiny(name)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert model.tokens(x).shape == (3, 16, 4) and model(x).shape == (3, 10)
    host = host_layer(model, MODELS[name].host_layer)
    assert type(host).__name__ == ("Linear" if name == "hf-bert" else "Conv1D")
    save_model(model, tmp_path / "m.safetensors")
    again = load_model(tmp_path / "m.safetensors").eval()
    assert torch.equal(again(x), model(x))
    assert not torch.equal(tiny(name, seed=1)(x), model(x))  # the seed draws the initial weights
    with pytest.raises(ArchitectureError, match="multiple of patch"):
        build(name, in_channels=1, image_size=8, num_classes=10, patch=3)


@pytest.mark.parametrize("name", ["hf-bert", "hf-gpt2"])
def test_the_onnx_export_of_a_transformer_reads_back_the_weights_it_renamed(name: str) -> None:
    pytest.importorskip("onnx")
    model = tiny(name)
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exact = ATTACKS["onnx-export"](ATTACKS["onnx-export"].config_cls(dtype="fp32"))(model)
        half = ATTACKS["onnx-export"](ATTACKS["onnx-export"].config_cls(dtype="fp16"))(model)
    host = MODELS[name].host_layer + ".weight"
    assert torch.equal(exact.state_dict()[host], model.state_dict()[host])  # renamed MatMul constants, read back
    assert torch.equal(half.state_dict()[host], model.state_dict()[host].half().float())
    with torch.no_grad():
        assert float((half(x) - model(x)).abs().max()) < 1e-2


def test_the_hf_preset_runs_every_deployment_attack_on_a_tiny_transformer(tmp_path: Path) -> None:
    """The preset's sweeps, cut to one strength each, on digits (patch 2): every cell is measured, none errs."""
    pytest.importorskip("onnx")
    pytest.importorskip("peft")
    config = preset("hf")
    assert config.model == "hf-bert" and {s.attack for s in config.sweeps} >= {"lora", "onnx-export", "int8-dynamic",
                                                                                "roundtrip"}
    assert "layer" not in config.methods["uchida"] and not config.access
    sweeps = tuple(replace(s, strengths=s.strengths[-1:]) for s in hf_sweeps()
                   if s.attack in ("lora", "onnx-export", "int8-dynamic", "roundtrip"))
    small = preset("tiny", methods={"uchida": {"bits": 32, "strength": 0.5}},
                   model="hf-gpt2", model_args={"patch": 2}, sweeps=sweeps, capacity={}, access=(), forgery=False,
                   n_independent=1, train=replace(preset("tiny").train, epochs=4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = evaluate(small, tmp_path / "out", executor="serial", progress=None)
    cells = results["cells"]
    assert len(cells) == len(sweeps) and all(c["error"] is None for c in cells), [c["error"] for c in cells]
    uchida = [c for c in cells if c["method"] == "uchida"]
    assert all(c["detected"] for c in uchida), [(c["label"], c["p_value"]) for c in uchida]


def test_uchida_s_default_host_in_gpt2_is_a_conv1d_layer() -> None:
    """A registry transformer's Conv1D layers host like Linear ones (the first with M >= bits)."""
    from netmark.methods.uchida import auto_layer

    model = tiny("hf-gpt2")
    layer = auto_layer(model, 64)
    assert layer.startswith("hf.h.") and type(host_layer(model, layer)).__name__ == "Conv1D"
