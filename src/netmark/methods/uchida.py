"""Uchida et al. 2017, "Embedding Watermarks into Deep Neural Networks" (white-box, multi-bit).

Paper: ``uchida2017-embedding-regularizer.txt``. Threat model (§2.3): the thief holds the
weights and may fine-tune or prune them; the owner later gets white-box access to a
suspect copy and holds the secret key (X, b).

Embedding (§3.1–3.3): the host layer's weights W (S×S×D×L, PyTorch ``(L, D, S, S)``) are
averaged over the L filters and flattened into ``w ∈ R^M`` (M = S·S·D; a Linear layer
``(out, in)`` gives M = in). A secret matrix X (T×M) and message b ∈ {0,1}^T define the
embedding regularizer (Eq. 4) ``E_R(w) = Σ_j BCE(σ((Xw)_j), b_j)`` added to the task loss
``E = E_0 + λ·E_R`` (Eq. 1). Extraction (Eq. 2–3): ``b̂_j = 1 if (Xw)_j >= 0 else 0``.
X is ``random`` (N(0,1) entries; the paper's choice after Table 4), ``direct`` (one 1 per
row) or ``diff`` (one 1 and one −1 per row).

Paper defaults (:func:`paper_config`, :data:`PAPER_TRAIN`): λ = 0.01, T = 256 bits, X random,
WRN-16-4 host "second conv of the conv 2 group" (``conv2.0.conv2``, M = 576), CIFAR-10, SGD
Nesterov lr 0.1 momentum 0.9 wd 5e-4 batch 64, 200 epochs, lr ×0.2 at 60/120/160.

Args (:class:`UchidaConfig`):
    layer: host layer's module name; ``None`` picks the first conv layer with M ≥ bits
        (then the first Linear), as the paper embeds into a conv layer.
    bits: message length T (paper 256). Capacity: keep T < M (§4.2 "Capacity").
    key_type: ``random`` | ``direct`` | ``diff`` (paper: random).
    strength: λ (paper 0.01).
    reduction: ``sum`` over bits as in Eq. 4 (paper) or ``mean``.
    average: average over the L output filters (§3.1, paper: True). ``False`` embeds into all
        weights of the layer, flattened (M = L·S·S·D; a Linear layer gives M = out·in), as
        Wang et al. 2020 do when they compare with Uchida on the 64×10 = 640 weights of an MLP layer.

Example::

    from netmark.methods.uchida import Uchida, UchidaConfig
    model, key, run = Uchida(UchidaConfig(layer="conv2", bits=256)).embed(model, train_set, TrainConfig(epochs=10))
    Uchida.from_key(key).verify(model, key).detected   # True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from netmark._util import check_bool, check_choice, check_finite, check_int, check_layer_name
from netmark.draws import Draw, KeyRoot, draw
from netmark.errors import ArchitectureError, ConfigError
from netmark.keys import WatermarkKey
from netmark.methods.alignment import with_reference
from netmark.methods.alignment_null import calibrate_null, verify_aligned
from netmark.methods.base import Extraction, MethodConfig, WatermarkMethod, drowning_note, register_method
from netmark.methods.traits import MethodTraits
from netmark.training import TrainConfig, TrainHook
from netmark.verify import DEFAULT_ALPHA, VerificationResult

KeyType = Literal["random", "direct", "diff"]
KEY_TYPES: tuple[KeyType, ...] = ("random", "direct", "diff")

#: Uchida §4.1 training schedule (WRN on CIFAR-10).
PAPER_TRAIN = TrainConfig(epochs=200, batch_size=64, optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True,
                          weight_decay=5e-4, milestones=(60, 120, 160), gamma=0.2)


@dataclass
class UchidaConfig(MethodConfig):
    """Uchida embedding-regularizer options (paper defaults; see module docstring)."""

    layer: str | None = None
    bits: int = 256
    key_type: KeyType = "random"
    strength: float = 0.01
    reduction: Literal["sum", "mean"] = "sum"
    average: bool = True

    def __post_init__(self) -> None:
        check_int("bits", self.bits)
        check_choice("key_type", self.key_type, KEY_TYPES)
        check_finite("strength (lambda)", self.strength, positive=False)
        check_choice("reduction", self.reduction, ("sum", "mean"))
        check_layer_name(self.layer, "conv2")
        check_bool("average", self.average)


def paper_config() -> UchidaConfig:
    """The §4.1 setting: 256 bits, random X, λ = 0.01, host ``conv2.0.conv2`` of WRN-16-4."""
    return UchidaConfig(layer="conv2.0.conv2", bits=256, key_type="random", strength=0.01)


def host_module(model: nn.Module, name: str) -> nn.Module:
    """The host-capable layer called ``name``: Linear, Conv1d/2d/3d, Embedding or a Hugging Face ``Conv1D``
    (ArchitectureError otherwise: :func:`netmark.models.host_layer`); read its weight with :func:`host_weight_of`."""
    from netmark.models import host_layer

    return host_layer(model, name)


def host_weight_of(mod: nn.Module) -> Tensor:
    """``mod``'s weight, output units first (:func:`netmark.models.unit_major`: a ``Conv1D``'s is transposed)."""
    from netmark.models import unit_major

    return unit_major(mod)


def host_vector(weight: Tensor, average: bool = True) -> Tensor:
    """§3.1: mean over the output filters, flattened (``(L, D, S, S)`` → ``D·S·S``);
    ``average=False``: every weight, flattened (``L·D·S·S``)."""
    return weight.mean(dim=0).reshape(-1) if average else weight.reshape(-1)


def embedding_loss(w: Tensor, X: Tensor, bits: Tensor, reduction: str = "sum") -> Tensor:
    """Eq. 4: binary cross-entropy between σ(Xw) and the message bits."""
    return F.binary_cross_entropy_with_logits(X @ w, bits.to(w.dtype), reduction=reduction)


def make_matrix(key_type: str, T: int, M: int, g: Draw) -> Tensor:
    """The secret embedding parameter X (§3.3) of shape (T, M)."""
    if key_type == "random":
        return g.randn(T, M)
    if M < 2 and key_type == "diff":
        raise ConfigError("a 'diff' key needs a host layer with at least 2 parameters")
    X = torch.zeros(T, M)
    rows = torch.arange(T)
    if T <= M:  # distinct positions per bit where capacity allows
        pos = g.randperm(M)[:T]
    else:
        pos = g.randint(0, M, (T,))
    X[rows, pos] = 1.0
    if key_type == "diff":
        shift = g.randint(1, M, (T,))
        X[rows, (pos + shift) % M] = -1.0
    return X


def auto_layer(model: nn.Module, bits: int, average: bool = True) -> str:
    """The default host. A registry model (the papers' setting): the first conv layer with M ≥ bits, else the first
    Linear (or Hugging Face ``Conv1D``: the transformers of :mod:`netmark.models.hf`). Any other model (a user's, a
    Hugging Face one): the hidden layer with the largest M ≥ bits among its Linear, Conv and ``Conv1D`` layers, never
    the output head (the last of them) nor an embedding table."""
    from netmark.methods.base import arch_or_none
    from netmark.models import host_layers

    def m_of(mod: nn.Module) -> int:
        return host_vector(host_weight_of(mod), average).numel()

    layers = {n: m for n, m in host_layers(model).items() if not isinstance(m, nn.Embedding)}
    if arch_or_none(model) is not None:
        for conv in (True, False):
            for name, mod in layers.items():
                if isinstance(mod, nn.Conv2d) == conv and m_of(mod) >= bits:
                    return name
    else:
        hidden = {n: m_of(m) for n, m in list(layers.items())[:-1]}
        fits = [n for n, size in hidden.items() if size >= bits]
        if fits:
            return max(fits, key=lambda n: hidden[n])
    caps = ", ".join(f"{n} (M={m_of(m)})" for n, m in list(layers.items())[:12])
    raise ConfigError(f"no layer can hold {bits} bits (needs M >= bits); layers: {caps}")


class UchidaHook(TrainHook):
    """Adds ``λ·E_R`` to the loss; logs E_R and the bit error rate after each epoch.

    From your own loop: ``loss = task_loss + hook.regularizer(model)``.
    """

    def __init__(self, key: WatermarkKey, config: UchidaConfig) -> None:
        self.key = key
        self.config = config
        self.X = key.tensors["X"]
        self.bits = key.bits

    def regularizer(self, model: nn.Module) -> Tensor:
        w = host_vector(host_weight_of(host_module(model, self.key.layer or "")), self.config.average)
        X = self.X.to(w.device)
        if X.shape[1] != w.numel():
            raise ArchitectureError(f"layer {self.key.layer!r} has M={w.numel()}, key expects {X.shape[1]}")
        return self.config.strength * embedding_loss(w, X, self.bits.to(w.device), self.config.reduction)

    def on_train_start(self, model: nn.Module) -> None:
        self.regularizer(model)  # fail fast on a wrong layer

    def extra_loss(self, model: nn.Module, x: Tensor, y: Tensor, logits: Tensor) -> dict[str, Tensor]:
        return {"embed_loss": self.regularizer(model)}

    def on_epoch_end(self, model: nn.Module, epoch: int, metrics: dict[str, float]) -> None:
        ex = Uchida(self.config).extract(model, self.key)
        metrics["embed_loss_raw"] = float(ex.details["embed_loss"])
        metrics["bit_error_rate"] = float((ex.bits != self.bits).float().mean())


@register_method
class Uchida(WatermarkMethod):
    """Uchida et al. 2017 embedding regularizer (see module docstring)."""

    name = "uchida"
    config_cls = UchidaConfig
    paper = "Uchida et al., Embedding Watermarks into Deep Neural Networks, ICMR 2017"
    TRAITS = MethodTraits(payload="bits", reads_weights=True)
    VERSION = 2  # 2: the key holds an alignment reference (issue 21)
    config: UchidaConfig

    @classmethod
    def example_config(cls) -> UchidaConfig:
        return UchidaConfig(layer="conv2", bits=64)

    def embed_advice(self, *, at_chance: bool) -> str:
        if at_chance:
            return super().embed_advice(at_chance=True) + drowning_note(self.config.strength)
        return (f"Train longer (--epochs), raise --strength (now {self.config.strength:g}) or embed fewer --bits "
                f"(now {self.config.bits}).")

    def _create_key(self, model: nn.Module, *, root: KeyRoot, data: Dataset | None, payload: Tensor | None,
                    message: str | None) -> WatermarkKey:
        cfg = self.config
        layer = cfg.layer or auto_layer(model, cfg.bits, cfg.average)
        M = host_vector(host_weight_of(host_module(model, layer)), cfg.average).numel()
        X = make_matrix(cfg.key_type, cfg.bits, M, draw(root))
        return self.key_for(model, root=root, layer=layer, message=message, bits=cfg.bits, tensors={"X": X})

    def hook(self, key: WatermarkKey) -> UchidaHook:
        return UchidaHook(key, self.config)

    def finalize(self, key: WatermarkKey, model: nn.Module, *, null_models: Sequence[Any] | None = None,
                 **kwargs: Any) -> WatermarkKey:
        """The key with the marked layers up to the host as its alignment reference (:mod:`~.alignment`), and the
        aligned null measured on ``null_models`` when given (:func:`~.alignment.calibrate_null`)."""
        return calibrate_null(self.verify, with_reference(key, model, upto=key.layer), null_models)

    def verify(self, model: nn.Module, key: WatermarkKey, *, alpha: float = DEFAULT_ALPHA) -> VerificationResult:
        """Binomial test of the bits extracted from ``model`` aligned to the key's reference (:mod:`~.alignment`)."""
        return verify_aligned(lambda m: super(Uchida, self).verify(m, key, alpha=alpha), model, key)

    @torch.no_grad()
    def extract(self, model: nn.Module, key: WatermarkKey) -> Extraction:
        if key.layer is None or "X" not in key.tensors:
            raise ArchitectureError("uchida key has no host layer or no X matrix")
        w = host_vector(host_weight_of(host_module(model, key.layer)), self.config.average).float().cpu()
        X = key.tensors["X"].float()
        if X.shape[1] != w.numel():
            raise ArchitectureError(
                f"layer {key.layer!r} has {w.numel()} {'averaged ' if self.config.average else ''}weights but the key "
                f"expects {X.shape[1]}"
                " (a model of another architecture?)")
        proj = X @ w
        bits = (proj >= 0).to(torch.int64)
        loss = embedding_loss(w, X, key.bits, self.config.reduction)
        details: dict[str, Any] = {"layer": key.layer, "key_type": self.config.key_type,
                                   "embed_loss": float(loss), "M": int(w.numel())}
        return Extraction(bits=bits, scores=torch.sigmoid(proj), details=details)


def embed_without_training(model: nn.Module, key: WatermarkKey, *, lam: float, steps: int = 2000,
                           lr: float = 1e-3) -> dict[str, float]:
    """§4.2 "Embedding without training" baseline (Eq. 6), in place on ``model``.

    Minimises ``λ·E_R(w) + ‖W − W0‖²`` over the host layer's weights only, with no task
    loss (Adam, ``steps`` steps). Table 7 of the paper sweeps λ ∈ {0, 1, 10, 100}: λ = 0
    leaves the weights alone, large λ embeds the bits but hurts the task — which is why
    netmark embeds during training. (The λ sits on E_R, as Table 7's λ = 0 row, which
    changes nothing, implies.) Returns the final ``‖W − W0‖²`` and ``E_R``.
    """
    if not math.isfinite(lam) or lam < 0:
        raise ConfigError(f"lam must be a finite number >= 0, got {lam!r}")
    cfg = UchidaConfig.from_dict(key.config)
    mod = host_module(model, key.layer or "")
    weight = cast(nn.Parameter, mod.weight)
    W0 = weight.detach().clone()
    X, bits = key.tensors["X"].to(W0.device), key.bits.to(W0.device)
    opt = torch.optim.Adam([weight], lr=lr)
    for _ in range(steps if lam > 0 else 0):
        opt.zero_grad(set_to_none=True)
        v = host_vector(host_weight_of(mod), cfg.average)
        loss = lam * embedding_loss(v, X, bits, cfg.reduction) + (weight - W0).pow(2).sum()
        loss.backward()
        opt.step()
    with torch.no_grad():
        dist = float((weight - W0).pow(2).sum())
        er = float(embedding_loss(host_vector(host_weight_of(mod), cfg.average), X, bits, cfg.reduction))
    return {"weight_distance": dist, "embed_loss": er}
