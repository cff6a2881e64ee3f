"""Weights from any model file, by tensor name: verification for models netmark cannot (or need not) rebuild.

Uchida, Wang and Tartaglione read named weight tensors only (``MethodTraits.reads_weights``), so a suspect's
architecture does not matter to them: :func:`open_weights` reads the tensors a key names from

* a ``.safetensors`` file (netmark's, or anyone's) — lazily, only the tensors asked for;
* a Hugging Face ``save_pretrained`` directory: ``model.safetensors``, sharded ``model.safetensors.index.json``, or
  ``pytorch_model.bin``;
* a ``.pt`` / ``.pth`` / ``.bin`` / ``.ckpt`` state_dict, through ``torch.load(weights_only=True)`` (never full
  unpickling: :mod:`netmark.io`);
* an ONNX file's initializers (the ``onnx`` package: ``pip install 'netmark[onnx]'``).

Names are matched exactly, else after the prefixes frameworks add or strip (:data:`PREFIXES`: ``module.`` from
DataParallel/DDP, ``model.`` / ``base_model.model.`` from Hugging Face and PEFT, ``_orig_mod.`` from
``torch.compile``); a missing tensor is an :class:`~netmark.errors.ArchitectureError` naming the closest names the file
has, a tensor of another shape one naming both shapes. :func:`weight_shell` wraps the tensors as the ``Conv2d`` /
``Linear`` layers the methods' extraction reads (it computes nothing: a forward pass is not what these methods need).
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netmark._util import first_line
from netmark.errors import ArchitectureError, ModelFileError

#: prefixes a framework adds to every tensor name (longest first)
PREFIXES = ("base_model.model.", "_orig_mod.", "module.", "model.")
#: file suffixes read as PyTorch state dicts (weights only)
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
MODEL_SUFFIXES = (".safetensors", ".onnx", *TORCH_SUFFIXES)
HF_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


class WeightFile:
    """The tensors of one model file or directory (module docstring), read on demand by name."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._where: dict[str, Path] = {}  # safetensors: tensor name -> file holding it
        self._loaded: dict[str, torch.Tensor] = {}  # whole-file formats (torch, onnx)
        p = self.path
        if p.is_dir():
            self._open_dir(p)
        elif not p.is_file():
            raise ModelFileError(f"model file {p} does not exist")
        elif p.suffix.lower() == ".onnx":
            self._loaded = _onnx_initializers(p)
        elif p.suffix.lower() in TORCH_SUFFIXES:
            from netmark.io import _load_torch_state

            self._loaded = _load_torch_state(p)
        else:
            self._index_safetensors(p)

    def _open_dir(self, p: Path) -> None:
        index = p / "model.safetensors.index.json"
        if (p / "model.safetensors").is_file():
            self._index_safetensors(p / "model.safetensors")
        elif index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
                shards = {str(v) for v in weight_map.values()}
            except (ValueError, KeyError, TypeError, AttributeError):
                raise ModelFileError(f"{index} is not a safetensors index (no weight_map)") from None
            for shard in sorted(shards):
                if Path(shard).name != shard:
                    raise ModelFileError(f"{index} names a shard outside its directory: {shard!r}")
                self._index_safetensors(p / shard)
        elif (p / "pytorch_model.bin").is_file():
            from netmark.io import _load_torch_state

            self._loaded = _load_torch_state(p / "pytorch_model.bin")
        else:
            raise ModelFileError(f"{p} is a directory without a model file ({', '.join(HF_FILES)})")

    def _index_safetensors(self, p: Path) -> None:
        from safetensors import SafetensorError, safe_open

        if not p.is_file():
            raise ModelFileError(f"model file {p} does not exist")
        try:
            with safe_open(str(p), framework="pt") as f:
                for name in f.keys():  # noqa: SIM118 (safe_open is no mapping)
                    self._where[name] = p
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise ModelFileError(f"model file {p} is corrupt, truncated or not safetensors ({first_line(e)})") from None

    def names(self) -> list[str]:
        """Every tensor name the file holds."""
        return [*self._where, *self._loaded]

    def shape(self, name: str) -> list[int]:
        """The shape of the file's tensor ``name`` (its own name), read from the header without loading it."""
        if name in self._loaded:
            return list(self._loaded[name].shape)
        from safetensors import safe_open

        with safe_open(str(self._where[name]), framework="pt") as f:
            return list(f.get_slice(name).get_shape())

    def resolve(self, name: str) -> str:
        """The file's name for the tensor ``name`` (module docstring); ArchitectureError naming the closest ones."""
        have = self.names()
        if name in self._where or name in self._loaded:
            return name
        bare = _strip(name)
        found = [n for n in have if _strip(n) == bare]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ArchitectureError(f"{self.path} holds several tensors that may be {name!r}: {', '.join(found[:4])}")
        near = difflib.get_close_matches(name, have, n=3, cutoff=0.5) or have[:3]
        raise ArchitectureError(f"{self.path} has no tensor {name!r} (nor under a framework prefix); closest: "
                                f"{', '.join(near) or 'none: the file holds no tensors'}")

    def get(self, name: str, *, floating: bool = True) -> torch.Tensor:
        """The tensor ``name`` (resolved); ModelFileError if it is not finite, or (``floating``, the default) not
        floating point."""
        real = self.resolve(name)
        if real in self._loaded:
            t = self._loaded[real]
        else:
            from safetensors import safe_open

            with safe_open(str(self._where[real]), framework="pt") as f:
                t = f.get_tensor(real)
        if not t.is_floating_point():
            if not floating:
                return t
            raise ModelFileError(f"{self.path}: {real} is stored as {str(t.dtype).removeprefix('torch.')}, expected "
                                 "floating point (refusing to cast it)")
        if not bool(torch.isfinite(t).all()):
            raise ModelFileError(f"{self.path} has NaN/Inf weights in {real}")
        return t

    def all(self) -> dict[str, torch.Tensor]:
        """Every tensor of the file by its own name (a weights-only attack rewrites them all: :func:`state_shell`)."""
        out = dict(self._loaded)
        if self._where:
            from safetensors import safe_open

            for path in dict.fromkeys(self._where.values()):
                with safe_open(str(path), framework="pt") as f:
                    out.update({n: f.get_tensor(n) for n in f.keys()})  # noqa: SIM118 (safe_open is no mapping)
        return out

    def tensors(self, wanted: Mapping[str, Any] | Iterable[str]) -> dict[str, torch.Tensor]:
        """The tensors ``wanted`` (names, or names -> ``{"shape": [...]}`` as a key's ``hosts`` records them, then each
        shape is checked) by the key's names."""
        out: dict[str, torch.Tensor] = {}
        for name in wanted:
            t = self.get(name)
            spec = wanted[name] if isinstance(wanted, Mapping) else None
            shape = spec.get("shape") if isinstance(spec, Mapping) else None
            if shape is not None and list(t.shape) != list(shape):
                raise ArchitectureError(f"{self.path}: {self.resolve(name)} has shape {tuple(t.shape)}, the key's "
                                        f"{name} {tuple(shape)} (another architecture?)")
            out[name] = t
        return out


def _strip(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix):], True
    return name


def _onnx_initializers(p: Path) -> dict[str, torch.Tensor]:
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise ModelFileError(f"reading {p} needs the onnx package: pip install 'netmark[onnx]'") from None
    try:
        proto = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError and others for a corrupt file
        raise ModelFileError(f"model file {p} is corrupt or not ONNX ({first_line(e)})") from None
    return {init.name: torch.from_numpy(numpy_helper.to_array(init).copy()) for init in proto.graph.initializer}


def weight_shell(tensors: Mapping[str, torch.Tensor], *, keep_all: bool = False) -> nn.Module:
    """An ``nn.Module`` whose sub-modules are ``Linear`` (2-D weight) and ``Conv1d/2d/3d`` (3-5-D) layers holding
    ``tensors``
    (``<layer>.weight`` and, where given, ``<layer>.bias``), in the order given: what the weight-reading methods'
    extraction looks up. It has no forward pass. ``keep_all``: every other tensor too, as a parameter (floating
    point) or buffer under its own name, so that ``state_dict()`` gives back exactly ``tensors`` (:func:`state_shell`).
    """
    shell = nn.Module()
    for name, w in tensors.items():
        layer, _, attr = name.rpartition(".")
        if attr != "weight" or not layer:
            continue
        if w.ndim == 2:
            mod: nn.Module = nn.Linear(w.shape[1], w.shape[0], bias=f"{layer}.bias" in tensors, device="meta")
        elif w.ndim in (3, 4, 5):  # Conv1d, Conv2d, Conv3d: (out, in, *kernel)
            conv = {3: nn.Conv1d, 4: nn.Conv2d, 5: nn.Conv3d}[w.ndim]
            mod = conv(w.shape[1], w.shape[0], tuple(int(k) for k in w.shape[2:]),  # type: ignore[arg-type]
                       bias=f"{layer}.bias" in tensors, device="meta")
        else:
            raise ArchitectureError(f"{name} has {w.ndim} dimensions: not a Linear or convolution weight")
        mod.weight = nn.Parameter(w.detach().float(), requires_grad=False)
        if f"{layer}.bias" in tensors:
            mod.bias = nn.Parameter(tensors[f"{layer}.bias"].detach().float(), requires_grad=False)
        parent = shell
        parts = layer.split(".")
        for part in parts[:-1]:
            if not hasattr(parent, part):
                parent.add_module(part, nn.Module())
            parent = getattr(parent, part)
        parent.add_module(parts[-1], mod)
    if keep_all:
        for name, t in tensors.items():
            layer, _, attr = name.rpartition(".")
            if name in shell.state_dict():
                continue
            parent = shell
            for part in layer.split(".") if layer else []:
                if not hasattr(parent, part):
                    parent.add_module(part, nn.Module())
                parent = getattr(parent, part)
            if t.is_floating_point():
                parent.register_parameter(attr, nn.Parameter(t.detach().clone(), requires_grad=False))
            else:
                parent.register_buffer(attr, t.detach().clone())
    return shell.eval()


def state_shell(tensors: Mapping[str, torch.Tensor]) -> nn.Module:
    """Every tensor of a state dict in a module (:func:`weight_shell` with ``keep_all``): a tensor-by-tensor attack
    (prune, quantize, fixed point, round trip) runs on a file whose architecture cannot be rebuilt, and the result
    is saved under the same names (:func:`save_state`)."""
    shell = weight_shell({n: t.float() if t.is_floating_point() else t for n, t in tensors.items()}, keep_all=True)
    if list(shell.state_dict()) != list(tensors):
        got = sorted(set(shell.state_dict()) ^ set(tensors))
        raise ArchitectureError(f"cannot hold these tensors by their names (e.g. {', '.join(got[:3])})")
    return shell


def save_state(state: Mapping[str, torch.Tensor], path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """A plain state dict: ``.safetensors`` (safetensors, no metadata) or else ``torch.save``; atomic, no overwrite
    without ``force``."""
    from safetensors.torch import save_file

    from netmark._util import atomic_write

    clean = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    if Path(path).suffix.lower() == ".safetensors":
        return atomic_write(path, lambda p: save_file(clean, str(p)), force=force)
    return atomic_write(path, lambda p: torch.save(clean, p), force=force)


def from_factory(spec: str, path: str | os.PathLike[str]) -> nn.Module:
    """The model ``package.module:function()`` returns, with the tensors of ``path`` loaded into it by name (strict:
    every tensor of the model from the file, shapes checked; framework prefixes matched as in :class:`WeightFile`).
    For a user's own architecture that a method needs to run (a forward pass: DeepSigns, trigger sets, alignment,
    attacks that train). The code imported is the user's own, named on the command line."""
    import importlib

    module_name, _, function = spec.partition(":")
    if not module_name or not function.isidentifier():
        raise ModelFileError(f"--model-factory must be package.module:function, got {spec!r}")
    try:
        fn = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as e:
        raise ModelFileError(f"--model-factory {spec}: {first_line(e)}") from None
    try:
        model = fn()
    except Exception as e:  # the user's own code: any failure is one line
        raise ModelFileError(f"--model-factory {spec} failed: {type(e).__name__}: {first_line(e)}") from None
    if not isinstance(model, nn.Module):
        raise ModelFileError(f"--model-factory {spec} returned a {type(model).__name__}, not an nn.Module")
    from netmark.io import load_state

    file = WeightFile(path)
    own = model.state_dict()
    load_state(model, {name: file.get(name, floating=own[name].is_floating_point()) for name in own},
               source=str(path))  # names, shapes and kinds checked, strict, finite
    return model.eval()


def load_pretrained(path: str | os.PathLike[str]) -> nn.Module:
    """A Hugging Face ``save_pretrained`` folder as its model class (``config.json``'s ``architectures``), from the
    folder only (no hub access): ``pip install 'netmark[hf]'``."""
    p = Path(path)
    if not (p / "config.json").is_file():
        raise ModelFileError(f"{p} has no config.json: not a Hugging Face model folder")
    try:
        import transformers
    except ImportError:
        raise ModelFileError(f"loading {p} needs transformers: pip install 'netmark[hf]'") from None
    try:
        config = transformers.AutoConfig.from_pretrained(str(p), local_files_only=True)
        names = list(getattr(config, "architectures", None) or [])
        cls = getattr(transformers, names[0], None) if names else None
        if cls is None:
            raise ModelFileError(f"{p}/config.json names no transformers model class ({names or 'none'})")
        model = cls.from_pretrained(str(p), local_files_only=True)
    except (OSError, ValueError) as e:
        raise ModelFileError(f"cannot load {p} with transformers ({first_line(e)})") from None
    return model.eval()
