"""Query-time wrappers: a stolen network behind a filter that changes no weight (issue 23).

A thief who serves a stolen model can put a filter in front of it — preprocess every input (JPEG, blur, noise,
input quantization; :mod:`netmark.attacks.preprocess`) — or around it: answer a random label to inputs that look
unusual (capsulation; :mod:`netmark.attacks.capsulation`). Both are a :class:`QueryWrapper` module: its forward is
the filtered answer (logits), while the wrapped network's sub-modules are registered on the wrapper under their own
names, so ``wrapper.state_dict()`` holds the stolen weights by their names (white-box verification reads them as
before: the wrapper hides nothing from someone holding the file) plus the filter's fitted tensors under
``query_wrap<depth>.`` (depth 0 for the innermost wrapper; wrappers nest).

On disk a wrapper is a small record in the model file's metadata (:func:`wrapper_records`, read back by
:func:`rewrap`): ``[{"kind", "version", "config"}, ...]``, innermost first, the fitted tensors in the safetensors
state — never pickle. Every kind validates its config and tensors (:class:`~netmark.errors.ConfigError`, one line).

Answers are a function of each input alone (not of the batch it came in): noise and random labels are drawn from a
generator seeded by the config's ``seed`` and a hash of the input's bytes.
"""

from __future__ import annotations

import copy
import hashlib
import io
import math
from typing import Any, ClassVar, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from netmark.errors import ConfigError
from netmark.models.registry import ARCH_ATTR

#: prefix of a wrapper's own tensors in the state dict: ``query_wrap0.reference``
WRAP_PREFIX = "query_wrap"
#: what a flagged input's answer is: this logit on the random label, 0 on the others
FLAG_LOGIT = 10.0
PREPROCESS_KINDS: dict[str, tuple[str, ...]] = {
    "jpeg": ("quality",), "blur": ("sigma", "kernel_size"), "noise": ("std", "seed"), "quantize": ("bits",)}


class QueryWrapper(nn.Module):
    """A network behind a query-time filter (module docstring). Subclasses set ``kind``, :meth:`check_config`,
    :meth:`check_tensors` and :meth:`forward`."""

    kind: ClassVar[str]
    VERSION: ClassVar[int] = 1
    config: dict[str, Any]

    def __init__(self, inner: nn.Module, config: dict[str, Any], tensors: dict[str, Tensor] | None = None) -> None:
        super().__init__()
        object.__setattr__(self, "_inner", inner)  # not a child: its children are ours, under their own names
        self.config = self.check_config(dict(config))
        self.slot = f"{WRAP_PREFIX}{len(wrapper_chain(inner))}"
        for name, child in inner.named_children():
            self.add_module(name, child)
        for name, p in inner._parameters.items():
            if p is not None:
                self.register_parameter(name, p)
        for name, b in inner._buffers.items():
            if b is not None:
                self.register_buffer(name, b, persistent=name not in inner._non_persistent_buffers_set)
        if self.slot in self._modules:
            raise ConfigError(f"the model already has a sub-module called {self.slot!r}")
        holder = nn.Module()
        for name, t in self.check_tensors(dict(tensors or {})).items():
            holder.register_buffer(name, t.detach().clone())
        self.add_module(self.slot, holder)
        arch = getattr(inner, ARCH_ATTR, None)
        if arch is not None:
            setattr(self, ARCH_ATTR, copy.deepcopy(arch))
        self.train(inner.training)

    @property
    def inner(self) -> nn.Module:
        """The wrapped network (itself possibly a wrapper)."""
        return cast(nn.Module, self.__dict__["_inner"])

    def own(self, name: str) -> Tensor:
        """This wrapper's fitted tensor ``name``."""
        return self.get_submodule(self.slot).get_buffer(name)

    def record(self) -> dict[str, Any]:
        """What the model file records of this wrapper (its tensors are in the state dict)."""
        return {"kind": self.kind, "version": self.VERSION, "config": dict(self.config)}

    def check_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """The validated config (ConfigError with one sentence otherwise)."""
        return config

    def check_tensors(self, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        """The validated fitted tensors (default: none)."""
        if tensors:
            raise ConfigError(f"a {self.kind} wrapper has no tensors, got {', '.join(sorted(tensors))}")
        return tensors

    def train(self, mode: bool = True) -> QueryWrapper:
        super().train(mode)
        self.inner.train(mode)
        return self

    def _apply(self, fn: Any, recurse: bool = True) -> QueryWrapper:  # .to(device) etc.: keep the inner's own
        super()._apply(fn, recurse)  # tensors (registered here too) the same objects as ours
        inner = self.inner
        for name in list(inner._parameters):
            if inner._parameters[name] is not None:
                inner._parameters[name] = self._parameters[name]
        for name in list(inner._buffers):
            if inner._buffers[name] is not None:
                inner._buffers[name] = self._buffers[name]
        return self


def input_seeds(x: Tensor, seed: int) -> list[int]:
    """One 63-bit seed per input of the batch ``x``: a hash of the input's float32 bytes keyed by ``seed``."""
    key = int(seed).to_bytes(8, "little", signed=True)
    flat = x.detach().to("cpu", torch.float32).contiguous().reshape(len(x), -1).numpy()
    return [int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8, key=key).digest(), "little") >> 1
            for row in flat]


def _number(config: dict[str, Any], name: str, lo: float, hi: float, *, integer: bool = False) -> float | int:
    v: Any = config.get(name)
    ok_type = isinstance(v, int) if integer else isinstance(v, int | float)
    if isinstance(v, bool) or not ok_type or not lo <= float(v) <= hi or not math.isfinite(float(v)):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{name} must be {kind} in [{lo:g}, {hi:g}], got {v!r}")
    return int(v) if integer else float(v)


def check_preprocess(config: dict[str, Any]) -> dict[str, Any]:
    """A :class:`Preprocess` config, validated (ConfigError with one sentence otherwise)."""
    op = config.get("op")
    if op not in PREPROCESS_KINDS:
        raise ConfigError(f"preprocessing kind must be one of {', '.join(PREPROCESS_KINDS)}, got {op!r}")
    extra = set(config) - {"op", *PREPROCESS_KINDS[op]}
    if extra:
        raise ConfigError(f"{op} preprocessing takes no {', '.join(sorted(extra))}")
    out: dict[str, Any] = {"op": op}
    if op == "jpeg":
        out["quality"] = _number(config, "quality", 1, 95, integer=True)
    elif op == "blur":
        out["sigma"] = _number(config, "sigma", 1e-3, 100.0)
        k = _number(config, "kernel_size", 1, 99, integer=True)
        if k % 2 == 0:
            raise ConfigError(f"kernel_size must be odd, got {k}")
        out["kernel_size"] = k
    elif op == "noise":
        out["std"] = _number(config, "std", 0.0, 10.0)
        out["seed"] = _number(config, "seed", -(2**63), 2**63 - 1, integer=True)
    else:
        out["bits"] = _number(config, "bits", 1, 16, integer=True)
    return out


class Preprocess(QueryWrapper):
    """Every input is transformed before the network sees it: ``jpeg`` (``quality`` 1-95), ``blur`` (Gaussian,
    ``sigma`` > 0, odd ``kernel_size``), ``noise`` (Gaussian, ``std``, ``seed``; clipped to [0, 1]) or ``quantize``
    (``bits`` 1-16 levels per pixel in [0, 1])."""

    kind = "preprocess"

    def check_config(self, config: dict[str, Any]) -> dict[str, Any]:
        return check_preprocess(config)

    def transform(self, x: Tensor) -> Tensor:
        """The preprocessed batch."""
        c, op = self.config, self.config["op"]
        if op == "jpeg":
            return jpeg(x, c["quality"])
        if op == "blur":
            return gaussian_blur(x, c["sigma"], c["kernel_size"])
        if op == "noise":
            noise = torch.stack([torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(s))
                                 for s in input_seeds(x, c["seed"])]) if len(x) else torch.zeros_like(x)
            return (x + c["std"] * noise.to(x.device, x.dtype)).clamp(0, 1)
        levels = 2 ** c["bits"] - 1
        return torch.round(x.clamp(0, 1) * levels) / levels

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(self.transform(x))


def jpeg(x: Tensor, quality: int) -> Tensor:
    """Each image (1 or 3 channels, values in [0, 1]) JPEG-encoded at ``quality`` with Pillow and decoded."""
    from PIL import Image

    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ConfigError(f"JPEG needs images of 1 or 3 channels (N, C, H, W), got shape {tuple(x.shape)}")
    pixels = (x.detach().clamp(0, 1) * 255).round().to("cpu", torch.uint8)
    out = []
    for img in pixels:
        arr = img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).contiguous().numpy()
        buf = io.BytesIO()
        Image.fromarray(arr, mode="L" if img.shape[0] == 1 else "RGB").save(buf, format="JPEG", quality=int(quality))
        decoded = torch.from_numpy(np.asarray(Image.open(io.BytesIO(buf.getvalue()))).copy())
        out.append(decoded[None] if decoded.ndim == 2 else decoded.permute(2, 0, 1))
    if not out:
        return x
    return (torch.stack(out).to(torch.float32) / 255).to(x.device, x.dtype)


def gaussian_blur(x: Tensor, sigma: float, kernel_size: int) -> Tensor:
    """A per-channel Gaussian blur (reflect padding where the image is large enough, else replicate)."""
    r = kernel_size // 2
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k1 = torch.exp(-(t**2) / (2 * sigma**2))
    k1 = (k1 / k1.sum()).to(x.dtype).to(x.device)
    c = x.shape[1]
    mode = "reflect" if min(x.shape[-2:]) > r else "replicate"
    y = F.pad(x, (r, r, r, r), mode=mode)
    y = F.conv2d(y, k1.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(y, k1.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


class Capsule(QueryWrapper):
    """Capsulation: an out-of-distribution filter around the network. An input's score is its mean distance to its
    ``k`` nearest ``reference`` points (the attacker's data: the inputs themselves, or the input of the network's
    layer ``feature_layer``, i.e. a hidden feature); over ``threshold`` the answer is a random label (seeded by
    ``seed`` and the input), else the network's."""

    kind = "capsule"

    def check_config(self, config: dict[str, Any]) -> dict[str, Any]:
        extra = set(config) - {"space", "feature_layer", "k", "threshold", "seed"}
        if extra:
            raise ConfigError(f"a capsule takes no {', '.join(sorted(extra))}")
        space = config.get("space")
        if space not in ("input", "feature"):
            raise ConfigError(f"space must be 'input' or 'feature', got {space!r}")
        layer = config.get("feature_layer")
        if space == "feature":
            if not isinstance(layer, str) or not layer:
                raise ConfigError("a capsule on hidden features needs the name of its feature_layer")
            try:
                self.inner.get_submodule(layer)
            except AttributeError:
                raise ConfigError(f"the model has no layer {layer!r} to read features from") from None
        elif layer is not None:
            raise ConfigError("feature_layer is for space='feature'")
        return {"space": space, "feature_layer": layer, "k": _number(config, "k", 1, 1000, integer=True),
                "threshold": _number(config, "threshold", 0.0, 1e30),
                "seed": _number(config, "seed", -(2**63), 2**63 - 1, integer=True)}

    def check_tensors(self, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        ref = tensors.get("reference")
        if set(tensors) != {"reference"} or ref is None:
            raise ConfigError(f"a capsule holds exactly one tensor, 'reference', got {sorted(tensors)}")
        if ref.ndim != 2 or len(ref) < self.config["k"] or not ref.is_floating_point() or not torch.isfinite(ref).all():
            raise ConfigError(f"a capsule's reference must be a finite float matrix with at least k="
                              f"{self.config['k']} rows, got shape {tuple(ref.shape)}")
        return {"reference": ref.to(torch.float32)}

    def logits_and_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The network's logits and the features the filter scores (flattened)."""
        if self.config["space"] == "input":
            return self.inner(x), x.flatten(1)
        grabbed: list[Tensor] = []
        handle = self.inner.get_submodule(self.config["feature_layer"]).register_forward_pre_hook(
            lambda _m, args: grabbed.append(args[0]))
        try:
            logits = self.inner(x)
        finally:
            handle.remove()
        return logits, grabbed[-1].flatten(1)

    def scores(self, features: Tensor) -> Tensor:
        """Mean distance of each row to its ``k`` nearest reference points."""
        ref = self.own("reference").to(features.device, torch.float32)
        if ref.shape[1] != features.shape[1]:
            raise ConfigError(f"a capsule's reference has {ref.shape[1]} features, the input gives {features.shape[1]}")
        d = torch.cdist(features.float(), ref, compute_mode="donot_use_mm_for_euclid_dist")
        return d.topk(self.config["k"], dim=1, largest=False).values.mean(1)

    def flagged(self, x: Tensor) -> Tensor:
        """Which inputs of ``x`` the filter finds unusual."""
        with torch.no_grad():
            return self.scores(self.logits_and_features(x)[1]) > self.config["threshold"]

    def forward(self, x: Tensor) -> Tensor:
        logits, feats = self.logits_and_features(x)
        flag = self.scores(feats) > self.config["threshold"]
        if not bool(flag.any()):
            return logits
        classes = logits.shape[1]
        labels = torch.tensor([s % classes for s in input_seeds(x, self.config["seed"])], device=logits.device)
        random_answer = F.one_hot(labels, classes).to(logits.dtype) * FLAG_LOGIT
        return torch.where(flag[:, None], random_answer, logits)


WRAPPERS: dict[str, type[QueryWrapper]] = {cls.kind: cls for cls in (Preprocess, Capsule)}


def wrapper_chain(model: nn.Module) -> list[QueryWrapper]:
    """The wrappers around ``model``'s network, innermost first (empty for a plain network)."""
    chain: list[QueryWrapper] = []
    while isinstance(model, QueryWrapper):
        chain.append(model)
        model = model.inner
    return chain[::-1]


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside every wrapper (``model`` itself when it is not wrapped)."""
    while isinstance(model, QueryWrapper):
        model = model.inner
    return model


def wrapper_records(model: nn.Module) -> list[dict[str, Any]]:
    """What a model file records of ``model``'s wrappers, innermost first."""
    return [w.record() for w in wrapper_chain(model)]


def split_state(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """A wrapped model's state dict split into the network's tensors and the wrappers' own."""
    own = {k: v for k, v in state.items() if k.startswith(WRAP_PREFIX)}
    return {k: v for k, v in state.items() if k not in own}, own


def rewrap(model: nn.Module, records: Any, tensors: dict[str, Tensor]) -> nn.Module:
    """``model`` inside the wrappers ``records`` describes (:func:`wrapper_records`), with their ``tensors``
    (``query_wrap<depth>.<name>``). Raises ConfigError (one sentence) on a malformed record or tensor."""
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ConfigError("its query-time wrappers are not a list of records")
    used: set[str] = set()
    for depth, rec in enumerate(records):
        cls = WRAPPERS.get(str(rec.get("kind")))
        if cls is None:
            raise ConfigError(f"unknown query-time wrapper kind {rec.get('kind')!r}; known: {', '.join(WRAPPERS)}")
        version, config = rec.get("version"), rec.get("config")
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= cls.VERSION:
            raise ConfigError(f"the {cls.kind} wrapper's version {version!r} is not one this netmark reads "
                              f"(1..{cls.VERSION})")
        if not isinstance(config, dict):
            raise ConfigError(f"the {cls.kind} wrapper's config is not a mapping")
        prefix = f"{WRAP_PREFIX}{depth}."
        own = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
        used.update(prefix + k for k in own)
        model = cls(model, config, own)
    stray = sorted(set(tensors) - used)
    if stray:
        raise ConfigError(f"tensor {stray[0]} belongs to no recorded query-time wrapper")
    return model


__all__ = ["PREPROCESS_KINDS", "WRAPPERS", "WRAP_PREFIX", "Capsule", "Preprocess", "QueryWrapper", "check_preprocess",
           "gaussian_blur", "input_seeds", "jpeg",
           "rewrap", "split_state", "unwrap", "wrapper_chain", "wrapper_records"]
