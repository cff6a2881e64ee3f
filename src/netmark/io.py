"""Model files: safetensors + metadata; untrusted pickles are never unpickled.

The release format is a ``.safetensors`` file whose header metadata ``netmark`` holds the
architecture (registry name + args, so the network is rebuilt by name) and the netmark
version. A suspect model may also come as a plain ``state_dict`` in ``.pt`` / ``.pth``:
it is read with ``torch.load(weights_only=True)``, which refuses every pickled global, so a
file that would need full unpickling (a code payload) is rejected without running it.
Every problem is a :class:`~netmark.errors.NetmarkError` with one sentence.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any, Literal, overload

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load_bytes
from safetensors.torch import save_file
from torch import nn

from netmark._util import atomic_write, canonical_json, first_line, safetensors_metadata
from netmark._version import __version__
from netmark.errors import ArchitectureError, ModelFileError, NetmarkError, NoArchitectureError

MODEL_FORMAT_VERSION = 1
_META = "netmark"
_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def save_model(model: nn.Module, path: str | os.PathLike[str], *, extra: dict[str, Any] | None = None,
               force: bool = False) -> Path:
    """Save ``model`` as safetensors with its architecture in the metadata (atomic, no overwrite).

    ``extra`` is JSON metadata stored beside the architecture (never put secrets here).
    """
    from netmark.models import arch_of
    from netmark.models.wrapped import wrapper_records

    check_finite(model)
    record = {"arch": arch_of(model), "netmark_version": __version__, "format_version": MODEL_FORMAT_VERSION,
              "extra": extra or {}}
    wrappers = wrapper_records(model)
    if wrappers:  # query-time filters around the network (netmark.models.wrapped): rebuilt by load_model
        record["wrappers"] = wrappers
    meta = {_META: canonical_json(record)}
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda p: save_file(state, str(p), metadata=meta), force=force)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``netmark`` metadata of a safetensors model file (architecture, version, extra)."""
    p = _existing(path)
    return _parse_meta(p.read_bytes(), p)


def load_model(path: str | os.PathLike[str], *, arch: dict[str, Any] | None = None) -> nn.Module:
    """Load a model file, rebuild its architecture and check its weights.

    Args:
        path: a netmark ``.safetensors`` file, or a plain ``state_dict`` in ``.pt``/``.pth``.
        arch: ``{"name", "args"}`` to use when the file carries none (plain state_dicts,
            e.g. taken from a key's ``arch``). A safetensors file's own architecture wins.

    Raises:
        ModelFileError: missing, truncated, unsafe or NaN-carrying file.
        ArchitectureError: the weights do not fit the architecture.
    """
    from netmark.models.registry import build, skeleton

    p = _existing(path)
    raw = p.read_bytes()
    # safetensors: an 8-byte little-endian header length, then the JSON header ("{"); the length's low
    # bytes may be 0x80 (a pickle's PROTO opcode) or "PK" (a zip's magic), so the header decides first
    safetensors_like = len(raw) > 8 and raw[8:9] == b"{"
    pickled = raw[:2] == b"PK" or raw[:1] == b"\x80"  # torch.save's zip, or a bare pickle (PROTO opcode)
    if p.suffix.lower() in _PICKLE_SUFFIXES or (pickled and not safetensors_like):
        if p.suffix.lower() == ".safetensors":  # torch.load would read it as safetensors because of its name
            raise ModelFileError(f"model file {p} is named .safetensors but holds a torch.save/pickle file; "
                                 "rename it to .pt to read it as a plain state_dict (weights only, never code)")
        state = _load_torch_state(p)
        file_arch, wrappers = None, None
    else:
        meta = _parse_meta(raw, p, require=False)
        try:
            state = st_load_bytes(raw)
        except (SafetensorError, ValueError, RuntimeError) as e:
            raise ModelFileError(f"model file {p} is corrupt or truncated ({first_line(e)})") from None
        file_arch = meta.get("arch") if meta else None
        wrappers = meta.get("wrappers") if meta else None
    use_arch = file_arch or arch
    if not isinstance(use_arch, dict) or "name" not in use_arch:
        raise NoArchitectureError(f"model file {p} records no architecture; pass one (e.g. from the key) to load it")
    args = dict(use_arch.get("args", {}))
    wrapper_state: dict[str, torch.Tensor] = {}
    if wrappers is not None:
        from netmark.models.wrapped import split_state

        state, wrapper_state = split_state(state)
    if file_arch is None:
        args = _adapt_num_classes(use_arch["name"], args, state)
    try:  # shapes first, on the meta device: a small file cannot make us allocate a huge model it does not fit
        widths = use_arch.get("widths")  # layers with dummy units (netmark.models.resize)
        check_fits(skeleton(use_arch["name"], args, widths=widths).state_dict(), state, source=str(p))
        model = build(use_arch["name"], args, widths=widths)
    except NetmarkError:
        raise
    except (TypeError, ValueError) as e:
        raise ArchitectureError(f"cannot rebuild architecture {use_arch.get('name')!r}: {e}") from None
    load_state(model, state, source=str(p))
    if wrappers is not None:
        model = _rewrap(model, wrappers, wrapper_state, p)
    model.eval()
    return model


def _rewrap(model: nn.Module, wrappers: Any, tensors: dict[str, torch.Tensor], p: Path) -> nn.Module:
    """The network inside the query-time wrappers the file records (:mod:`netmark.models.wrapped`)."""
    from netmark.errors import ConfigError
    from netmark.models.wrapped import rewrap

    try:
        return rewrap(model, wrappers, tensors)
    except ConfigError as e:
        raise ModelFileError(f"model file {p} has a bad query-time wrapper record: {first_line(e)}") from None


def _adapt_num_classes(name: str, args: dict[str, Any], state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """A plain state_dict of a transfer-learned copy has another output size than the key's
    architecture: when the only mismatches are the first dimension of some tensors and all
    agree on one size, rebuild with that ``num_classes`` (the host layers are unaffected)."""
    from netmark.models.registry import skeleton

    if "num_classes" not in args:
        return args
    try:
        own = skeleton(name, **args).state_dict()
    except (NetmarkError, TypeError, ValueError):
        return args
    mismatched = [k for k in own if k in state and state[k].shape != own[k].shape]
    sizes = {int(state[k].shape[0]) for k in mismatched if state[k].ndim}
    if len(sizes) == 1 and all(state[k].ndim and state[k].shape[1:] == own[k].shape[1:] for k in mismatched):
        return {**args, "num_classes": sizes.pop()}
    return args


def load_state(model: nn.Module, state: dict[str, torch.Tensor], *, source: str = "state_dict") -> None:
    """Load ``state`` strictly into ``model``, turning mismatches into one-line errors."""
    own = model.state_dict()
    check_fits(own, state, source=source)
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
    check_finite(model, source=source)


def check_fits(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], *, source: str = "state_dict") -> None:
    """Raise unless ``state`` has exactly ``own``'s tensor names and shapes, each floating-point where ``own``'s is
    (``own`` may live on the meta device)."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    bad_shape = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or bad_shape:
        parts = []
        if bad_shape:
            k = bad_shape[0]
            parts.append(f"{k} has shape {tuple(state[k].shape)}, expected {tuple(own[k].shape)}")
        if missing:
            parts.append(f"{len(missing)} missing tensors (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
        raise ArchitectureError(f"{source} does not fit this architecture: " + "; ".join(parts))
    # a float tensor stored as int32 / bool would be cast silently (int32 -> "not detected", bool -> "detected")
    kind = [k for k in own if state[k].is_floating_point() != own[k].is_floating_point()]
    if kind:
        k = kind[0]
        want = "floating-point" if own[k].is_floating_point() else str(own[k].dtype).removeprefix("torch.")
        raise ModelFileError(f"{source}: {k} is stored as {str(state[k].dtype).removeprefix('torch.')}, expected "
                             f"{want} (refusing to cast it)")


def check_finite(model: nn.Module, *, source: str = "model") -> None:
    """Raise ModelFileError if any parameter or buffer holds NaN or Inf."""
    for name, t in model.state_dict().items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ModelFileError(f"{source} has NaN/Inf weights in {name}")


def _existing(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"model file {p} " + ("is a directory" if p.is_dir() else "does not exist"))
    return p


@overload
def _parse_meta(raw: bytes, p: Path, *, require: Literal[True] = ...) -> dict[str, Any]: ...
@overload
def _parse_meta(raw: bytes, p: Path, *, require: bool) -> dict[str, Any] | None: ...
def _parse_meta(raw: bytes, p: Path, *, require: bool = True) -> dict[str, Any] | None:
    try:
        meta = safetensors_metadata(raw)
    except ValueError as e:
        what = "is truncated or not a safetensors file" if str(e) == "truncated" else "has a corrupt safetensors header"
        raise ModelFileError(f"model file {p} {what}") from None
    if meta is None or _META not in meta:
        if require:
            raise ModelFileError(f"model file {p} carries no netmark metadata")
        return None
    try:
        d = json.loads(str(meta[_META]))
    except json.JSONDecodeError:
        raise ModelFileError(f"model file {p} has malformed netmark metadata") from None
    if not isinstance(d, dict) or not isinstance(d.get("arch"), dict):
        raise ModelFileError(f"model file {p} has malformed netmark metadata")
    return d


def _load_torch_state(p: Path) -> dict[str, torch.Tensor]:
    """``torch.load(weights_only=True)``: tensors and plain containers only, no code."""
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelFileError(f"refusing to load {p}: it needs full unpickling (it may carry code); only plain "
                             "state_dicts are read") from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, TypeError, SafetensorError) as e:
        raise ModelFileError(f"model file {p} is corrupt or truncated ({first_line(e)})") from None
    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                        for k, v in obj.items()):
        raise ModelFileError(f"{p} is not a state_dict (a mapping of names to tensors)")
    return obj
