"""ONNX export round trip: what a thief's deployment does to the weights (issue 22, item 6; no paper).

The model is exported with ``torch.onnx.export`` (the TorchScript exporter, opset ``opset``, eval mode, constant
folding as by default) in ``dtype`` — half precision by default, as models are usually exported for serving (fp32
export is lossless: the same weights come back, measured in ``tests/test_export_attacks.py``) — and every tensor is
read back from the ONNX file's initializers: what a verifier gets from an ONNX deployment (``netmark verify
MODEL.onnx`` reads the same initializers). Tensors are found by name; a weight the exporter renamed (a Linear
turned into a ``MatMul`` constant ``onnx::MatMul_…``, stored transposed: transformers' layers) is the initializer of
its shape or transposed shape whose values are nearest to it, and must agree with it to the export's precision (each
initializer is used once); a tensor with no initializer of its shape is not part of the exported function (unused
token embeddings of a model fed ``inputs_embeds``) and keeps its value. An export that changes a weight's values
(a BatchNorm fused into the convolution before it) is refused with the names, since the model could not be rebuilt
from the file as it is. (``netmark verify MODEL.onnx`` cannot pair renamed tensors with the model's: it searches
the tensors of the host's shape, Bonferroni-corrected — :mod:`netmark.methods.weights_verify`.)

Threat model: the thief has the stolen model only (no data, no training).

Args:
    input_shape: ``[C, H, W]`` of one input (default: the registry architecture's ``in_channels``/``image_size``).
    opset: the ONNX opset [17].
    dtype: ``fp16`` (default) or ``fp32``: the precision of the exported weights.
    input_dtype: ``float32`` (default: images) or ``int64`` (token ids, e.g. ``input_shape=[12]`` for a Hugging Face
        model's ``input_ids``).
    seed: unused (the export is deterministic), kept for the attack protocol.

Example::

    served = OnnxExport(OnnxExportConfig())(model)
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from netmark.attacks.base import Attack, AttackConfig, register_attack
from netmark.errors import ArchitectureError, ConfigError
from netmark.models import ARCH_ATTR


@dataclass
class OnnxExportConfig(AttackConfig):
    """Settings of :class:`OnnxExport` (module docstring)."""

    input_shape: list[int] | None = None
    opset: int = 17
    dtype: str = "fp16"
    input_dtype: str = "float32"

    def __post_init__(self) -> None:
        if isinstance(self.input_shape, tuple):
            self.input_shape = list(self.input_shape)
        if self.input_shape is not None and (not isinstance(self.input_shape, list) or not self.input_shape or not all(
                isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 4096 for d in self.input_shape)):
            raise ConfigError(f"input_shape must be a list of positive sizes (C, H, W), got {self.input_shape!r}")
        if isinstance(self.opset, bool) or not isinstance(self.opset, int) or not 9 <= self.opset <= 21:
            raise ConfigError(f"opset must be an ONNX opset between 9 and 21, got {self.opset!r}")
        if self.dtype not in ("fp16", "fp32"):
            raise ConfigError(f"dtype must be fp16 or fp32, got {self.dtype!r}")
        if self.input_dtype not in ("float32", "int64"):
            raise ConfigError(f"input_dtype must be float32 or int64, got {self.input_dtype!r}")


def _example_input(model: nn.Module, shape: list[int] | None) -> torch.Tensor:
    if shape is None:
        arch = getattr(model, ARCH_ATTR, None)
        args = arch.get("args", {}) if isinstance(arch, dict) else {}
        if "in_channels" not in args or "image_size" not in args:
            raise ConfigError("onnx-export needs input_shape=[C, H, W] for a model without a registry architecture")
        shape = [int(args["in_channels"]), int(args["image_size"]), int(args["image_size"])]
    return torch.zeros(1, *shape)


@register_attack
class OnnxExport(Attack[OnnxExportConfig]):
    """ONNX export, then the weights read back from the file (module docstring)."""

    name = "onnx-export"
    VERSION = 2

    def apply(self, model: nn.Module, data: Dataset | None) -> nn.Module:
        try:
            import onnx
            from onnx import numpy_helper
        except ImportError:
            raise ConfigError("onnx-export needs the onnx package: pip install 'netmark[onnx]'") from None
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notes
            path = Path(tmp) / "model.onnx"
            half = self.config.dtype == "fp16"
            exported = copy.deepcopy(model).eval().to(torch.float16 if half else torch.float32)
            x = _example_input(model, self.config.input_shape)
            x = x.long() if self.config.input_dtype == "int64" else x.to(torch.float16 if half else torch.float32)
            try:
                torch.onnx.export(exported, (x,), str(path), opset_version=self.config.opset, dynamo=False)
            except (RuntimeError, TypeError, ValueError) as e:
                raise ArchitectureError(f"the model could not be exported to ONNX: {str(e).splitlines()[0][:200]}"
                                        ) from None
            inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
        state = model.state_dict()
        read = _read_back(state, {k: torch.from_numpy(v.copy()) for k, v in inits.items()}, half)
        model.load_state_dict({**state, **read})
        return model


def _read_back(state: dict[str, torch.Tensor], inits: dict[str, torch.Tensor], half: bool) -> dict[str, torch.Tensor]:
    """The model's floating-point tensors as the ONNX file holds them (module docstring): by name, else the unused
    initializer of the same (or transposed) shape nearest in value, within the export's precision."""
    floats = {k: v for k, v in state.items() if v.is_floating_point()}
    out = {k: inits[k].to(v.dtype) for k, v in floats.items() if k in inits}
    free = {n: t for n, t in inits.items() if n not in floats and t.is_floating_point()}
    bad = []
    for k, v in floats.items():
        if k in out:
            continue
        best: tuple[float, str, torch.Tensor] | None = None
        for n, t in free.items():
            for cand in (t, t.T) if t.dim() == 2 else (t,):
                if cand.shape == v.shape:
                    d = float((cand.float() - v.float()).abs().max()) if v.numel() else 0.0
                    if best is None or d < best[0]:
                        best = (d, n, cand)
        shapes = any(t.shape == v.shape or (t.dim() == 2 and t.T.shape == v.shape) for t in free.values())
        if best is None and not shapes:
            continue  # not in the exported function: keeps its value
        tol = (1e-3 if half else 1e-6) * float(v.abs().max()) + 1e-6 if v.numel() else 0.0
        if best is None or best[0] > tol:
            bad.append(k)
            continue
        out[k] = best[2].contiguous().to(v.dtype)
        del free[best[1]]
    if bad:
        raise ArchitectureError(f"the ONNX export changed {len(bad)} tensor(s) (e.g. {', '.join(bad[:3])}): the model "
                                "cannot be rebuilt from the file as it is")
    return out
