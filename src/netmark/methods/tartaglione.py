"""Tartaglione et al. 2021, "Delving in the loss landscape to embed robust watermarks into neural networks".

Paper: ``tartaglione2021-loss-landscape.txt`` (§III). Threat model (§IV): the thief holds the
weights and fine-tunes them on the task's data or compresses them (fixed point, LSBs masked);
the owner gets white-box access to a suspect and holds the key (seed K and payload X).

Embedding. A payload ``X ∈ [0, 1]^N`` (the RGB pixels of an image, or random values) is written
into N weights chosen by a PRNG seeded with the private key K (Eq. 3): for each element, a layer is
drawn uniformly among the model's Conv2d/Linear layers (output layer included), then one of its
parameters (weight and bias entries, flattened), without reuse. Each element is stored as
``w = 2σ(x − 0.5) + μ`` (Eq. 4), inside the ``N(μ, σ)`` initialisation (Eq. 2: ``reinit`` draws
every Conv2d/Linear parameter from it first, as the paper does), and extracted by the inverse
``x = (w − μ)/(2σ) + 0.5`` (Eq. 7).

Locking (Eqs. 5-6). The watermarked weights are written back after every optimizer step, so they
never change, whatever the optimizer does to them: weight decay, momentum and Adam's running
moments included (the official code lets weight decay shrink them).

Replicas (Eqs. 8-10). ``R`` copies of the model get Gaussian noise ``N(0, s)`` on the watermarked
weights only; the mean gradient ``g`` of the task loss over the replicas is *ascended* on the free
weights: ``w ← w − [1 − 1_Wx](η ∂L/∂w − γ g)``. netmark applies ``−ηL`` through the optimizer and
``+γ g`` directly after its step, so Eq. 10 holds for plain SGD (the paper) and the ascent keeps
its size γ under any other optimizer. γ is multiplied by ``gamma_decay`` every ``gamma_step`` epochs
(paper, MNIST: 0.5 every 25). The watermark then sits in a narrow valley: fine-tuning's gradients
push the (free) weights back whenever they would move it.

``replica_batch``: ``full`` — every replica sees the whole minibatch: R extra forward/backward
passes (the paper; the reference; +441% per step for R = 4 on LeNet5-caffe, batch 100, one CPU
thread). ``split`` (default) — replica k sees the k-th of R disjoint slices of the first
``replica_fraction`` of the minibatch: one extra pass over that fraction whatever R, +84% per step
at the default 0.5 (+138% at 1.0: small slices run less efficiently on a CPU). The noise is drawn
for the watermarked entries only. The Tartaglione reproduction measures both paths side by side,
cost and robustness (Pearson after fine-tuning).

Verification. Pearson's ρ between the extracted and the key's payload. Null hypothesis: the suspect
does not carry the payload. The positions are drawn by the key independently of X, so for such a
model the extracted values are paired with X in random order: ρ follows the permutation
distribution (mean 0, variance 1/(N−1)), approximated by Student's t with N−2 degrees of freedom
(``t = ρ √((N−2)/(1−ρ²))``); the p-value is its upper tail. ``detected = p <= alpha`` (default 1e-6:
ρ ≳ 0.12 for N = 1800). Details give ρ, the mean absolute error and the fraction of values within
an 8-bit payload recovered exactly (``exact_8bit``: the same value after rounding to 1/255).

Paper defaults (:func:`paper_config`, :data:`PAPER_TRAIN`): μ = 0, σ = 0.01, s = 0.01, γ = 1e-4
(× 0.5 every 25 epochs), R ∈ {0, 1, 4, 16}, N = 20×30×3 = 1800, LeNet5-caffe on MNIST, vanilla SGD
lr 0.1, weight decay 1e-4, batch 100, 100 epochs. BatchNorm-free models only for the replicas'
batched pass (a replica's forward would update running statistics).

Args (:class:`TartaglioneConfig`): ``size`` (N; ignored when a payload is given), ``mu``, ``sigma``,
``replicas`` (R), ``noise`` (s), ``gamma``, ``gamma_step``, ``gamma_decay``, ``replica_batch``,
``replica_fraction``, ``reinit``, ``max_layer_fraction`` (at most this fraction of a layer's parameters is watermarked;
1.0 = Eq. 3 as written, which can lock most of a small first layer), ``variant``: ``paper`` (default, the above) or
``official-code`` — NOT the paper: the authors' public code's payload amplitude ±10 (``(2x − 1)/0.1``) and layers
drawn in proportion to their size (:mod:`netmark.methods.tartaglione_variants`).

Example::

    method = Tartaglione(TartaglioneConfig(replicas=4))
    model, key, run = method.embed(model, train_set, TrainConfig(epochs=10, optimizer="sgd", lr=0.1), seed=7)
    method.verify(model, key).details["pearson"]   # 1.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call
from torch.utils.data import Dataset

from netmark._util import check_bool, check_choice, check_finite, check_int, check_unit
from netmark.draws import KeyRoot, draw
from netmark.errors import ArchitectureError, ConfigError, KeyFileError
from netmark.keys import WatermarkKey
from netmark.methods.alignment import with_reference
from netmark.methods.alignment_null import calibrate_null, verify_aligned
from netmark.methods.base import Extraction, MethodConfig, WatermarkMethod, register_method
from netmark.methods.tartaglione_variants import VARIANTS, Variant, decode, encode, proportional_layers
from netmark.methods.traits import MethodTraits
from netmark.training import TrainConfig, TrainHook
from netmark.verify import DEFAULT_ALPHA, VerificationResult, pearson_result

REPLICA_BATCHES = ("full", "split")
#: Tartaglione et al. §IV-A: LeNet5-caffe on MNIST.
PAPER_TRAIN = TrainConfig(epochs=100, batch_size=100, optimizer="sgd", lr=0.1, momentum=0.0, weight_decay=1e-4)


@dataclass
class TartaglioneConfig(MethodConfig):
    """Tartaglione et al. options (paper defaults, §IV-A; see module docstring), except ``reinit``.

    ``reinit`` defaults to ``False`` (the architecture's own initialisation), not the paper's N(μ, σ)
    re-initialisation of every layer (§III, Eq. 2; :func:`paper_config` and ``reinit=True`` keep it): with
    σ = 0.01 a LeNet5 on Fashion-MNIST stayed at chance (10.0% test accuracy) after 3 epochs with the CLI's
    SGD (lr 0.01, momentum 0.9) and with the paper's (``--lr 0.1 --momentum 0 --batch-size 100``), where the
    default initialisation reached 71% (``netmark embed --method tartaglione --model lenet5 --dataset
    fashion-mnist --train-size 6000 --epochs 3 --seed 0``, with ``--method-arg reinit=true`` for the paper's).
    """

    size: int = 1800
    mu: float = 0.0
    sigma: float = 0.01
    replicas: int = 4
    noise: float = 0.01
    gamma: float = 1e-4
    gamma_step: int = 25
    gamma_decay: float = 0.5
    replica_batch: Literal["full", "split"] = "split"
    replica_fraction: float = 0.5
    reinit: bool = False
    max_layer_fraction: float = 1.0
    variant: Variant = "paper"

    def __post_init__(self) -> None:
        check_int("size", self.size)
        check_int("gamma_step", self.gamma_step)
        check_int("replicas (R)", self.replicas, 0)
        if isinstance(self.mu, bool) or not isinstance(self.mu, int | float) or not math.isfinite(self.mu):
            raise ConfigError(f"mu must be a finite number, got {self.mu!r}")
        for name in ("sigma", "noise", "gamma", "gamma_decay"):
            check_finite(name, getattr(self, name), positive=name == "sigma")
        check_choice("replica_batch", self.replica_batch, REPLICA_BATCHES)
        check_bool("reinit", self.reinit)
        check_unit("replica_fraction", self.replica_fraction)
        check_unit("max_layer_fraction", self.max_layer_fraction)
        check_choice("variant", self.variant, VARIANTS)


def paper_config(replicas: int = 4, *, replica_batch: Literal["full", "split"] = "full") -> TartaglioneConfig:
    """§IV-A: μ = 0, σ = 0.01, s = 0.01, γ = 1e-4 halved every 25 epochs, N = 1800, full-batch replicas."""
    return TartaglioneConfig(size=1800, mu=0.0, sigma=0.01, replicas=replicas, noise=0.01, gamma=1e-4, gamma_step=25,
                             gamma_decay=0.5, replica_batch=replica_batch, replica_fraction=1.0, reinit=True,
                             max_layer_fraction=1.0)


# ----------------------------------------------------------------------------- positions and payload


def layers_of(model: nn.Module) -> list[tuple[str, list[tuple[str, nn.Parameter]]]]:
    """The watermarkable layers (Conv2d/Linear modules, model order) with their parameters."""
    out = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d | nn.Linear):
            ps = [(f"{name}.{pn}" if name else pn, p) for pn, p in mod.named_parameters(recurse=False)]
            if ps:
                out.append((name, ps))
    if not out:
        raise ArchitectureError(f"{type(model).__name__} has no Conv2d or Linear layer to watermark")
    return out


def layer_sizes(model: nn.Module) -> list[list[Any]]:
    """``[[layer name, number of parameters], ...]``: what a key's positions depend on."""
    return [[name, sum(p.numel() for _, p in ps)] for name, ps in layers_of(model)]


def draw_positions(sizes: list[int], n: int, root: KeyRoot, max_fraction: float = 1.0, *,
                   proportional: bool = False) -> tuple[Tensor, Tensor]:
    """Eq. 3: for each of ``n`` elements draw a layer uniformly (``proportional``: in proportion to its unused
    quota, the official code), then an unused parameter in it; all from ``root`` (its stream 0).

    A layer whose quota (``max_fraction`` of its parameters) is full is redrawn. Returns
    ``(layer index, flat index within the layer)`` as int64 tensors of length ``n``.
    """
    caps = [max(0, min(s, int(s * max_fraction))) for s in sizes]
    if n > sum(caps):
        raise ConfigError(f"a payload of {n} values does not fit: the model's layers hold at most {sum(caps)} "
                          f"watermarked parameters (max_layer_fraction={max_fraction})")
    g = draw(root)
    counts = [0] * len(sizes)
    layer = proportional_layers(caps, n, g) if proportional else torch.empty(n, dtype=torch.int64)
    for i in range(0 if proportional else n):
        while True:
            lj = int(g.randint(0, len(sizes), (1,)))
            if counts[lj] < caps[lj]:
                break
        layer[i] = lj
        counts[lj] += 1
    index = torch.empty(n, dtype=torch.int64)
    for lj, s in enumerate(sizes):  # parameters in each layer: a uniform draw without replacement
        sel = (layer == lj).nonzero().reshape(-1)
        if len(sel):
            index[sel] = g.randperm(s)[: len(sel)]
    return layer, index


def random_payload(n: int, root: KeyRoot) -> Tensor:
    """``n`` values uniform in [0, 1] (the default payload), from stream 1 of ``root``."""
    return draw(root, 1).rand(n, dtype=torch.float64).float()


def image_payload(path: str) -> tuple[Tensor, list[int]]:
    """An image file's RGB pixels scaled to [0, 1], flattened channel-first, and its ``[C, H, W]``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            hwc = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32).copy())
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise ConfigError(f"cannot read the payload image {path}: {e}") from None
    h, w = hwc.shape[:2]
    chw = hwc.permute(2, 0, 1) / 255.0
    return chw.reshape(-1).contiguous(), [3, h, w]


def demo_logo(height: int = 20, width: int = 30) -> Tensor:
    """A deterministic RGB test image (``3 × height × width`` in [0, 1]): the paper's 20×30 logo size."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    ring = ((xx - 0.5) ** 2 * 2.25 + (yy - 0.5) ** 2 < 0.16).float() * ((xx - 0.5) ** 2 * 2.25 + (yy - 0.5) ** 2 > 0.06)
    r = 0.15 + 0.8 * ring
    g = 0.2 + 0.6 * xx * (1 - ring)
    b = 0.9 - 0.7 * yy
    return (torch.stack([r, g, b]) * 255).round() / 255


class _Locked:
    """The watermarked entries of a model: per parameter, flat indices and their values."""

    def __init__(self, model: nn.Module, key: WatermarkKey) -> None:
        cfg = key.config
        layers = layers_of(model)
        expected = cfg.get("layers")
        got: list[list[Any]] = [[name, sum(p.numel() for _, p in ps)] for name, ps in layers]  # [name, size] (JSON)
        if expected is not None and [list(x) for x in expected] != got:
            raise ArchitectureError("the model's layers differ from the key's (another architecture?): expected "
                                    f"{_short(expected)}, got {_short(got)}")
        payload = key.tensors["payload"].float()
        self.variant = str(cfg.get("variant", "paper"))  # keys written before variants existed: the paper's
        layer, index = draw_positions([s for _, s in got], len(payload), key.key_root,
                                      float(cfg.get("max_layer_fraction", 1.0)),
                                      proportional=self.variant == "official-code")
        self.params: dict[str, nn.Parameter] = {}
        self.index: dict[str, Tensor] = {}
        self.element: dict[str, Tensor] = {}  # payload element of each locked entry
        for lj, (_, ps) in enumerate(layers):
            sel = (layer == lj).nonzero().reshape(-1)
            offset = 0
            for pname, p in ps:
                inside = (index[sel] >= offset) & (index[sel] < offset + p.numel())
                if inside.any():
                    self.params[pname] = p
                    self.index[pname] = (index[sel][inside] - offset).to(p.device)
                    self.element[pname] = sel[inside]
                offset += p.numel()
        mu, sigma = float(cfg.get("mu", 0.0)), float(cfg.get("sigma", 0.01))
        self.mu, self.sigma = mu, sigma
        self.values = {n: encode(payload[e], self.variant, mu, sigma).to(self.params[n].device, self.params[n].dtype)
                       for n, e in self.element.items()}
        self.n = len(payload)

    @torch.no_grad()
    def write(self) -> None:
        for n, p in self.params.items():
            p.view(-1)[self.index[n]] = self.values[n].to(p.dtype)

    @torch.no_grad()
    def read(self) -> Tensor:
        """Eq. 7 for every payload element (in payload order)."""
        out = torch.empty(self.n)
        for n, p in self.params.items():
            w = p.detach().reshape(-1)[self.index[n]].float().cpu()
            out[self.element[n]] = decode(w, self.variant, self.mu, self.sigma)
        return out

    def masks(self) -> dict[str, Tensor]:
        """1 at the watermarked entries of each parameter that has some."""
        out = {}
        for n, p in self.params.items():
            m = torch.zeros(p.numel(), device=p.device, dtype=p.dtype)
            m[self.index[n]] = 1
            out[n] = m.view_as(p)
        return out


def _short(layers: Any) -> str:
    s = ", ".join(f"{n}:{k}" for n, k in layers)
    return s if len(s) < 120 else s[:117] + "..."


def _root(key: WatermarkKey) -> int | bytes:
    if key.seed is None and key.root is None:
        raise KeyFileError("tartaglione key has neither a seed nor a root: its watermark positions cannot be drawn")
    return key.key_root


#: the stream of a key's root that draws the Eq. 2 re-initialisation (:func:`initialise`)
INIT_STREAM = 3


def init_seed(key_seed: int) -> int:
    """The seed of the Eq. 2 re-initialisation that the hook draws for a key of seed ``key_seed``."""
    return key_seed + INIT_STREAM


def initialise(model: nn.Module, key: WatermarkKey) -> None:
    """Eq. 2 as the hook does it for ``key`` (``reinit``): every Conv2d/Linear parameter from N(μ, σ)."""
    reinit(model, float(key.config.get("mu", 0.0)), float(key.config.get("sigma", 0.01)), _root(key), INIT_STREAM)


def watermark_masks(model: nn.Module, key: WatermarkKey) -> dict[str, Tensor]:
    """Per parameter name, 1 at the entries that carry ``key``'s payload in ``model`` (model unchanged)."""
    return _Locked(model, key).masks()


class TartaglioneHook(TrainHook):
    """Re-initialises (Eq. 2), writes the payload (Eq. 4), keeps it locked after every step (Eq. 5)
    and ascends the replicas' mean gradient on the free weights (Eqs. 8-10)."""

    def __init__(self, key: WatermarkKey, config: TartaglioneConfig) -> None:
        self.key, self.config = key, config
        self.gamma = config.gamma
        self.locked: _Locked | None = None
        self.grads: dict[str, Tensor] | None = None
        self.gen = draw(_root(key), 2)

    def on_train_start(self, model: nn.Module) -> None:
        if self.config.reinit:
            reinit(model, self.config.mu, self.config.sigma, _root(self.key), INIT_STREAM)
        self.locked = _Locked(model, self.key)
        self.locked.write()
        self.masks = self.locked.masks()

    def extra_loss(self, model: nn.Module, x: Tensor, y: Tensor, logits: Tensor) -> dict[str, Tensor]:
        R = self.config.replicas
        if R == 0 or self.gamma == 0 or self.locked is None:
            return {}
        params = dict(model.named_parameters())
        free = [n for n, p in params.items() if p.requires_grad]
        if self.config.replica_batch == "split" and len(x) >= R:
            loss = self._split_loss(model, params, x, y, R)
        else:
            loss = torch.stack([self._replica_loss(model, params, x, y) for _ in range(R)]).mean()
        grads = torch.autograd.grad(loss, [params[n] for n in free], allow_unused=True)
        self.grads = {n: g for n, g in zip(free, grads, strict=True) if g is not None}
        return {"replica_loss": loss.detach()}  # reported; its gradient is applied in after_step

    def _replica_loss(self, model: nn.Module, params: Mapping[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        """Eq. 8: the task loss of Γ_k, the model with N(0, s) noise on its watermarked weights only
        (drawn for those entries alone and scattered: a dense draw would cost more than the pass)."""
        assert self.locked is not None
        moved = {}
        for n, idx in self.locked.index.items():
            p = params[n]
            z = torch.zeros(p.numel(), device=p.device, dtype=p.dtype)
            z[idx] = self.gen.randn(len(idx)).to(p.device, p.dtype) * self.config.noise
            moved[n] = p + z.view_as(p)
        return F.cross_entropy(functional_call(model, {**params, **moved}, (x,)), y)

    def _split_loss(self, model: nn.Module, params: Mapping[str, Tensor], x: Tensor, y: Tensor, R: int) -> Tensor:
        """Replica k sees the k-th of R disjoint slices of (the first ``replica_fraction`` of) the batch."""
        m = max(R, round(len(x) * self.config.replica_fraction))
        xs, ys = x[:m].chunk(R), y[:m].chunk(R)
        total = sum(self._replica_loss(model, params, xk, yk) * len(yk) for xk, yk in zip(xs, ys, strict=True))
        return cast(Tensor, total) / m  # R >= 1 slices: a Tensor, never sum()'s empty 0

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        if self.grads is not None:
            params = dict(model.named_parameters())
            for n, g in self.grads.items():
                params[n].add_(g, alpha=self.gamma)  # Eq. 10's ascent (locked entries are rewritten below)
            self.grads = None
        if self.locked is not None:
            self.locked.write()

    def on_epoch_end(self, model: nn.Module, epoch: int, metrics: dict[str, float]) -> None:
        if self.config.gamma_step and epoch % self.config.gamma_step == 0:
            self.gamma *= self.config.gamma_decay
        metrics["tartaglione_gamma"] = self.gamma
        if self.locked is not None:
            metrics["pearson"] = float(pearson(self.locked.read(), self.key.tensors["payload"].float()))


@torch.no_grad()
def reinit(model: nn.Module, mu: float, sigma: float, root: KeyRoot, k: int = 0) -> None:
    """Eq. 2: every Conv2d/Linear parameter drawn from N(μ, σ) (stream ``k`` of ``root``)."""
    g = draw(root, k)
    for _, ps in layers_of(model):
        for _, p in ps:
            p.copy_(g.randn(*p.shape) * sigma + mu)


def pearson(a: Tensor, b: Tensor) -> float:
    """Pearson correlation of two vectors (0.0 when either is constant)."""
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    den = float(a.norm() * b.norm())
    return float((a @ b) / den) if den > 0 else 0.0


@register_method
class Tartaglione(WatermarkMethod):
    """Tartaglione et al. 2021 locked key-spread weights with replica training (see module docstring)."""

    name = "tartaglione"
    config_cls = TartaglioneConfig
    paper = ("Tartaglione, Grangetto, Cavagnino, Botta: Delving in the loss landscape to embed robust watermarks "
             "into neural networks, ICPR 2020")
    TRAITS = MethodTraits(payload="values", reads_weights=True)
    KEY_CONFIG_EXTRAS = ("layers", "payload_shape")
    VERSION = 2  # 2: the key holds an alignment reference of every layer (issue 21)
    config: TartaglioneConfig

    @classmethod
    def example_config(cls) -> TartaglioneConfig:
        # the paper's N(0, 0.01) re-initialisation needs far more steps than 12 epochs of digits: the default init
        return TartaglioneConfig(size=300, replicas=2, reinit=False)

    def embed_advice(self, *, at_chance: bool) -> str:
        if not at_chance:  # the payload is written into the locked weights: rare
            return f"Embed a smaller payload (--method-arg size=N, now {self.config.size})."
        reinit = (" The paper's N(mu, sigma) re-initialisation (reinit=true) needs far more epochs: use "
                  "--method-arg reinit=false." if self.config.reinit else "")
        return super().embed_advice(at_chance=True) + reinit

    def _create_key(self, model: nn.Module, *, root: KeyRoot, data: Dataset | None, payload: Tensor | None,
                    message: str | None) -> WatermarkKey:
        """``payload``: values in [0, 1] of any shape, recorded as ``payload_shape`` (an image's ``[3, H, W]``:
        ``values.reshape(shape)`` of :func:`image_payload`); default ``size`` random values."""
        if payload is None:
            payload = random_payload(self.config.size, root)
        payload = torch.as_tensor(payload, dtype=torch.float32)
        payload_shape = list(payload.shape) if payload.ndim > 1 else None
        payload = payload.reshape(-1)
        if len(payload) < 3 or not bool(torch.isfinite(payload).all()) or payload.min() < 0 or payload.max() > 1:
            raise ConfigError("the payload must hold at least 3 finite values in [0, 1]")
        sizes = layer_sizes(model)
        draw_positions([s for _, s in sizes], len(payload), root, self.config.max_layer_fraction)  # fits?
        return self.key_for(model, root=root, layer=None, tensors={"payload": payload}, message_random=False,
                            size=len(payload), layers=sizes,
                            payload_shape=list(payload_shape) if payload_shape else [len(payload)])

    def check_key_tensors(self, key: WatermarkKey) -> None:
        if "payload" not in key.tensors:
            raise KeyFileError("tartaglione key lacks its payload tensor")

    def host_tensors(self, model: nn.Module, layer: str | None) -> dict[str, Tensor]:
        """Every parameter of every Conv2d/Linear layer, in model order: the payload is spread over all of them."""
        return {name: p for _, ps in layers_of(model) for name, p in ps}

    def hook(self, key: WatermarkKey) -> TartaglioneHook:
        return TartaglioneHook(key, self.config)

    def finalize(self, key: WatermarkKey, model: nn.Module, *, null_models: Sequence[Any] | None = None,
                 **kwargs: Any) -> WatermarkKey:
        """The key with every marked layer as its alignment reference (the payload spans them all), and the aligned
        null measured on ``null_models`` when given (:func:`~.alignment.calibrate_null`)."""
        return calibrate_null(self.verify, with_reference(key, model, upto=None), null_models)

    def extract(self, model: nn.Module, key: WatermarkKey) -> Extraction:
        values = _Locked(model, key).read()
        payload = key.tensors["payload"].float()
        err = (values - payload).abs()
        details: dict[str, Any] = {"size": len(payload), "pearson": pearson(values, payload),
                                   "mean_abs_error": float(err.mean()),
                                   "exact_8bit": float(((values * 255).round() == (payload * 255).round())
                                                       .float().mean()),
                                   "payload_shape": key.config.get("payload_shape")}
        return Extraction(bits=torch.zeros(0, dtype=torch.int64), scores=values, details=details)

    def verify(self, model: nn.Module, key: WatermarkKey, *, alpha: float = DEFAULT_ALPHA) -> VerificationResult:
        """Pearson ρ between the values extracted from ``model`` (aligned to the key's reference:
        :mod:`netmark.methods.alignment`) and the payload, tested against the permutation null."""
        def decide(m: nn.Module) -> VerificationResult:
            ex = self.extract(m, key)
            return pearson_result(ex.details["pearson"], ex.details["size"], method=self.name, alpha=alpha,
                                  details=ex.details)
        return verify_aligned(decide, model, key)
