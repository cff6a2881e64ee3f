"""Wang et al. 2020, "Watermarking in Deep Neural Networks via Error Back-propagation" (white-box, multi-bit).

Paper: ``wang2020-error-backpropagation.txt``. Threat model (Introduction, "Robustness"): the thief
holds the weights and may fine-tune (same domain, or another with a new head) or prune them; the
owner gets white-box access to a suspect and holds the key: extractor, selection layer, message.

Embedding ("General Framework", "Watermark Embedding", Eq. 1): the M weights of one host layer
(biases excluded, flattened in PyTorch order) are the *input* of a bias-free MLP (Table 2)::

    w ∈ R^M  →  s ⊙ w  →  h = ReLU(W1 (s ⊙ w)) ∈ R^256  →  y = σ(W2 h) ∈ (0, 1)^l

``L2 = BCE(y, m)``, mean over the l bits (Eq. 1). The host trains on ``L1 + λ·L2`` (λ = 0.05);
the extractor (W1, W2, AUTO's s) on L2 alone, not λ·L2, with its own optimizer, which the hook
steps after every host step (each update treats the other network as constant). Extraction
("Watermark Verification"): bit i = 1[y_i > 0.5]; details give L2 (``l2_loss``).

The "trainable layer" (Fig. 3, Table 2, Setup) has M nodes and, for MANU, "each parameter [is]
fixed as either 1 or 0" to select convergent weights: netmark reads it as an elementwise
(diagonal) layer s ∈ R^M without activation. AUTO learns s (initialised to ones); MANU fixes it
to the 0/1 mask, so L2 reaches only the selected ("reachable") weights. ReLU acts on h only.

MANU (footnote 1): the host trains without the extractor for ``converge_epochs`` epochs (paper: 6
for the MLP, 26 for VGG16); a weight is convergent when the sample std of its last
``converge_window`` (5) per-epoch values is < ``converge_threshold`` (0.01); then s = 1[convergent]
and training goes on with the extractor. Fewer than ``min_selected`` convergent weights raises
ConfigError (the paper's MLP put 512 bits into 163 of 640). ``snapshot_every=N`` records every N
optimizer steps instead of every epoch (for loops that do not call ``on_epoch_end``).

A specific extractor (netmark addition; ``negatives=0, augment=0`` is the paper's). Trained on L2
alone the extractor outputs the message *whatever its input*: on digits it maps independently
trained MLPs to all 256 bits (binomial p ≈ 1e-77), so the paper's 100% bit accuracies, after
pruning or fine-tuning too, say nothing about ownership. netmark also trains it, at each of its
steps, to map ``negatives`` (16) fresh inputs (half U(−1, 1), half the host weights with 70-100% of
them permuted) to the complement 1 − m, and ``augment`` host-weight copies, magnitude-pruned at
random rates in [0, 0.9), to m. The host's loss is unchanged. MANU needs enough epochs after its
selection for this (on digits: 7 of 12). Once training ends (host final), ``harden_steps`` (400) more
extractor-only steps with ``harden_negatives`` (128) null inputs each and a margin loss
(:meth:`WangHook._harden_step`): without them the extractor is, in effect, one "is this the host?" score
shared by every bit, and the rare null input it scores positive reads the *whole* message. Measured
(``benchmarks/wang_null_tail.py``: digits MLP ``fc2``, 64 bits, 8 epochs, 12 seeds, 16,384 null inputs each):
without hardening 8 of 12 keys have null inputs at 48-64 of 64 bits and 2 of 12 owner keys are refused
(p = 4.9e-4); with it 0 of 12, no null input above 0 bits, and the key is still detected after pruning 80 % of
fc2 or 5 epochs of fine-tuning in 12 of 12 (10 of 12 without). Fashion-MNIST LeNet5 ``conv2`` (M = 25,000,
512 bits, CPU, seed 0): 3 of 4,096 null inputs read 512/512 bits without hardening; 200 BCE steps (256 null
inputs each: issue 18's first try) left 2; the margin loss, 0 of 4,096 and 0 of 16,384 after 400 steps.

P-value. The extractor was trained on the message, so on a model that never saw the key its bits
are no fair coins and can flip together: Binomial(l, 1/2) does not hold. :meth:`Wang.finalize` (after
training) writes the final extractor into the key and has it read ``null_samples`` fresh inputs, half from each
family:

* ``init``: i.i.d. U(−1, 1) vectors (a fresh layer). The extractor is bias-free with ReLU, so its
  logits are positively homogeneous (bits(c·w) = bits(w), c > 0): any init scale is covered;
* ``shuffle``: random permutations of the marked layer (a trained histogram, no positions).

An independently trained model lies between the two (on digits, fc2's of independent MLPs have
cosines up to 0.14: shared structure neither family has), hence the tests on independently
*trained* (and pruned) models. The key keeps per-bit match rates ``(c_i + 1)/(N + 2)`` (larger
family) and the null match counts; the p-value (:func:`netmark.verify.calibrated_bit_match_result`)
is the largest of a Poisson-binomial tail over the rates (each ≥ 1/2), a beta-binomial tail fitted
to the counts (bits matching together) and the empirical rate of null inputs within 3 sd of the
observed count: never below the fair binomial's, never extrapolated into the measured null. With
the paper's extractor it says "not detected" for the marked model too: the honest answer.

Paper defaults (:func:`paper_config`, :data:`PAPER_TRAIN_MLP`, :data:`PAPER_TRAIN_VGG16`): 512 bits,
λ = 0.05, hidden 256; MLP 784-64-10 on MNIST (48k/12k/10k: ``load("mnist", val_size=12000)``), Adam
1e-3, batch 32, 50 epochs, host ``fc2`` (M = 640); VGG16 on CIFAR-10 (40k/10k/10k), SGD 0.01, batch
32, 150 epochs, host ``features.conv1_1`` (M = 1728). One optimizer trains both networks in the
paper; the extractor's is set to match. Keras' SGD ``decay=1e-6`` (lr/(1 + 1e-6·t), not weight
decay) has no TrainConfig equivalent and is left out.

Args (:class:`WangConfig`): ``layer`` (host Conv2d/Linear; ``None`` = the architecture's
registered host layer), ``bits`` (l, paper 512; Tables 5-6 up to 4096), ``variant`` (``auto`` |
``manu``), ``strength`` (λ, 0.05), ``hidden`` (256), ``extractor_optimizer``/``extractor_lr``
(paper: the host's), MANU's ``converge_epochs``, ``converge_window``, ``converge_threshold``,
``min_selected``, ``snapshot_every``; ``negatives``, ``augment``, ``harden_steps``, ``harden_negatives``,
``null_samples`` (above).

Example::

    model, key, run = Wang(WangConfig(layer="fc2", bits=256)).embed(model, train_set, TrainConfig(epochs=20))
    Wang.from_key(key).verify(model, key).detected   # True
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from netmark._util import check_choice, check_finite, check_int, check_layer_name
from netmark.draws import Draw, KeyRoot, draw
from netmark.errors import ArchitectureError, ConfigError, KeyFileError
from netmark.keys import WatermarkKey
from netmark.methods.alignment import with_reference
from netmark.methods.alignment_null import calibrate_null, verify_aligned
from netmark.methods.base import Extraction, MethodConfig, WatermarkMethod, register_method, without_null
from netmark.methods.phases import EmbedPrep
from netmark.methods.traits import MethodTraits
from netmark.methods.uchida import host_module, host_weight_of
from netmark.training import TrainConfig, TrainHook
from netmark.verify import DEFAULT_ALPHA, VerificationResult, calibrated_bit_match_result

log = logging.getLogger(__name__)

VARIANTS = ("auto", "manu")
EXTRACTOR_OPTIMIZERS = ("adam", "sgd")
EXTRACTOR_TENSORS = ("selection", "W1", "W2")
AUGMENT_MAX_RATE = 0.9
#: κ of the hardening loss (:meth:`WangHook._harden_step`): host and null inputs pushed κ null-spreads past 0
HARDEN_MARGIN = 4.0

#: Wang et al. "Setup": the MLP on MNIST.
PAPER_TRAIN_MLP = TrainConfig(epochs=50, batch_size=32, optimizer="adam", lr=1e-3)
#: Wang et al. "Setup": VGG16 on CIFAR-10 (plain SGD; Keras' lr decay 1e-6 left out, see module docstring).
PAPER_TRAIN_VGG16 = TrainConfig(epochs=150, batch_size=32, optimizer="sgd", lr=0.01, momentum=0.0)


@dataclass
class WangConfig(MethodConfig):
    """Wang et al. options (paper defaults for the MLP; see module docstring)."""

    layer: str | None = None
    bits: int = 512
    variant: Literal["auto", "manu"] = "auto"
    strength: float = 0.05
    hidden: int = 256
    extractor_optimizer: Literal["adam", "sgd"] = "adam"
    extractor_lr: float = 1e-3
    converge_epochs: int = 6
    converge_window: int = 5
    converge_threshold: float = 0.01
    min_selected: int = 1
    snapshot_every: int | None = None
    null_samples: int = 4096
    negatives: int = 16
    augment: int = 4
    harden_steps: int = 400
    harden_negatives: int = 128

    def __post_init__(self) -> None:
        check_layer_name(self.layer, "fc2")
        for name in ("bits", "hidden", "converge_epochs", "min_selected"):
            check_int(name, getattr(self, name))
        for name in ("negatives", "augment", "harden_steps", "harden_negatives"):
            check_int(name, getattr(self, name), 0)
        check_int("null_samples", self.null_samples, 4)
        check_choice("variant", self.variant, VARIANTS)
        check_choice("extractor_optimizer", self.extractor_optimizer, EXTRACTOR_OPTIMIZERS)
        check_finite("strength (lambda)", self.strength, positive=False)
        check_finite("extractor_lr", self.extractor_lr, positive=True)
        check_finite("converge_threshold", self.converge_threshold, positive=True)
        check_int("converge_window", self.converge_window, 2)
        if self.converge_window > self.converge_epochs:
            raise ConfigError(f"converge_window={self.converge_window} exceeds converge_epochs={self.converge_epochs}")
        if self.snapshot_every is not None:
            check_int("snapshot_every", self.snapshot_every)


def paper_config(model: Literal["mlp", "vgg16"] = "mlp", variant: Literal["auto", "manu"] = "auto",
                 bits: int = 512, *, specific: bool = True) -> WangConfig:
    """The paper's setting for its MLP (``fc2``, Adam 1e-3, MANU after 6 epochs) or VGG16
    (``features.conv1_1``, SGD 0.01, MANU after 26 epochs). ``specific=False``: the paper's own
    extractor (no negatives, no augmentation), whose bits match unrelated models too."""
    extra: dict[str, Any] = {} if specific else {"negatives": 0, "augment": 0}
    if model == "mlp":
        return WangConfig(layer="fc2", bits=bits, variant=variant, converge_epochs=6, **extra)
    if model == "vgg16":
        return WangConfig(layer="features.conv1_1", bits=bits, variant=variant, converge_epochs=26,
                          extractor_optimizer="sgd", extractor_lr=0.01, **extra)
    raise ConfigError(f"the paper uses model 'mlp' or 'vgg16', got {model!r}")


def host_layer_name(model: nn.Module) -> str:
    """The registered host layer of a netmark architecture (``fc2`` for the MLP)."""
    from netmark.models import MODELS, arch_of

    try:
        return MODELS[arch_of(model)["name"]].host_layer
    except (ArchitectureError, KeyError):
        raise ConfigError(f"{type(model).__name__} has no registered host layer; pass layer=...") from None


def extractor_logits(w: Tensor, selection: Tensor, W1: Tensor, W2: Tensor) -> Tensor:
    """Pre-sigmoid outputs ``W2 · ReLU(W1 · (s ⊙ w))`` for ``w`` of shape ``(M,)`` or ``(N, M)``."""
    return F.relu((w * selection) @ W1.T) @ W2.T


def l2_loss(logits: Tensor, message: Tensor) -> Tensor:
    """Eq. 1: binary cross-entropy between σ(logits) and the message, mean over the l bits."""
    return F.binary_cross_entropy_with_logits(logits, message.to(logits.dtype).expand_as(logits))


def _glorot(fan_out: int, fan_in: int, g: Draw) -> Tensor:
    return (g.rand(fan_out, fan_in) * 2 - 1) * math.sqrt(6.0 / (fan_in + fan_out))


def _extractor(key: WatermarkKey) -> tuple[Tensor, Tensor, Tensor]:
    missing = [n for n in EXTRACTOR_TENSORS if n not in key.tensors]
    if missing:
        raise KeyFileError(f"wang key lacks the extractor tensor(s) {', '.join(missing)}")
    return tuple(key.tensors[n].detach().float() for n in EXTRACTOR_TENSORS)  # type: ignore[return-value]


def host_weight(model: nn.Module, key: WatermarkKey) -> Tensor:
    """The key's host-layer weight of ``model`` (ArchitectureError if its size differs from the key's M)."""
    w = host_weight_of(host_module(model, key.layer or ""))
    M = int(key.tensors["selection"].numel()) if "selection" in key.tensors else -1
    if w.numel() != M:
        raise ArchitectureError(f"layer {key.layer!r} has {w.numel()} weights but the key's extractor reads {M}"
                                " (a model of another architecture?)")
    return w


@torch.no_grad()
def calibrate(model: nn.Module, key: WatermarkKey, *, samples: int | None = None, seed: int | None = None,
              ) -> dict[str, Tensor]:
    """Measure the key's extractor on null inputs (module docstring); writes into ``key.tensors`` and
    returns ``null_rates`` (per-bit match rates, max over the families) and ``null_counts``."""
    sel, W1, W2 = _extractor(key)
    w = host_weight(model, key).detach().float().cpu().reshape(-1)
    n = samples if samples is not None else int(key.config.get("null_samples", 4096))
    g = draw(key.key_root, 7_919) if seed is None else draw(seed)
    init = g.rand(n // 2, w.numel()) * 2 - 1
    shuffle = w[g.rand(n - n // 2, w.numel()).argsort(dim=1)]
    rates, counts = [], []
    for x in (init, shuffle):
        match = (extractor_logits(x, sel, W1, W2) > 0).long() == key.bits
        rates.append((match.sum(0).double() + 1) / (len(x) + 2))
        counts.append(match.sum(1))
    out = {"null_rates": torch.stack(rates).amax(0).float(), "null_counts": torch.cat(counts).to(torch.int64)}
    key.tensors.update(out)
    return out


def extractor_optimizer(params: list[Tensor], name: str, lr: float) -> torch.optim.Optimizer:
    """The extractor's optimizer, fused where this torch supports it: W2 alone has ``bits × hidden``
    entries (1M at 4096 bits) and is stepped after every host step, where the unfused CPU Adam
    costs ~5× more than the fused one (same update rule)."""
    opt_cls = torch.optim.Adam if name == "adam" else torch.optim.SGD
    try:
        return opt_cls(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # torch < 2.4 on CPU, or a device without a fused kernel
        return opt_cls(params, lr=lr)


def _magnitude_rank(w: Tensor) -> Tensor:
    """Each weight's magnitude rank in [0, 1) (pruning at rate r keeps the weights ranked >= r)."""
    return w.abs().argsort().argsort().to(w.dtype) / w.numel()


class WangHook(TrainHook):
    """Adds ``λ·L2`` to the host loss, steps the extractor on L2 after each host step, selects
    MANU's convergent weights and hardens the extractor at ``on_train_end``. The key is never written:
    :meth:`Wang.finalize` takes the trained extractor from :meth:`extractor`."""

    def __init__(self, key: WatermarkKey, config: WangConfig) -> None:
        self.key, self.config, self.message = key, config, key.bits.float()
        self.sel, self.W1, self.W2 = (t.clone() for t in _extractor(key))
        self.active = config.variant == "auto" or bool(self.sel.any())  # a MANU key already masked
        self.opt: torch.optim.Optimizer | None = None
        self.snapshots: list[Tensor] = []
        self.n_snapshots = self.n_steps = 0
        self.gen = draw(key.key_root, 104_729)

    def _ready(self, model: nn.Module) -> Tensor:
        w = host_weight(model, self.key)
        if self.opt is None or self.W1.device != w.device:
            dev = w.device
            self.W1 = self.W1.detach().to(dev).requires_grad_(True)
            self.W2 = self.W2.detach().to(dev).requires_grad_(True)
            self.sel = self.sel.detach().to(dev).requires_grad_(self.config.variant == "auto")
            self.message = self.message.to(dev)
            self.opt = self._new_optimizer()
        return w

    def _new_optimizer(self) -> torch.optim.Optimizer:
        params = [self.W1, self.W2] + ([self.sel] if self.config.variant == "auto" else [])
        return extractor_optimizer(params, self.config.extractor_optimizer, self.config.extractor_lr)

    def on_train_start(self, model: nn.Module) -> None:
        self._ready(model)  # fail fast on a wrong layer

    def extra_loss(self, model: nn.Module, x: Tensor, y: Tensor, logits: Tensor) -> dict[str, Tensor]:
        w = self._ready(model)
        if not self.active:
            return {}
        out = extractor_logits(w.reshape(-1), self.sel.detach(), self.W1.detach(), self.W2.detach())
        return {"wang_loss": self.config.strength * l2_loss(out, self.message)}

    def after_step(self, model: nn.Module) -> None:
        w = self._ready(model).detach().reshape(-1)
        self.n_steps += 1
        if self.active and self.opt is not None:  # _ready made the optimizer
            self._extractor_step(w, self.config.negatives)
        elif self.config.snapshot_every is not None and self.n_steps % self.config.snapshot_every == 0:
            self._snapshot(w)

    def _extractor_step(self, w: Tensor, neg: int) -> None:
        """One optimizer step of the extractor alone: the host weights -> m; ``neg`` null inputs -> 1 - m;
        ``augment`` host-weight copies pruned at random rates -> m."""
        if self.opt is None:  # made by _ready once the extractor is attached
            return
        aug = self.config.augment
        pruned = self._pruned_copies(w, _magnitude_rank(w))
        x = torch.cat([w[None], self._negatives(w, neg), pruned])
        target = torch.cat([self.message[None], (1 - self.message).expand(neg, -1), self.message.expand(aug, -1)])
        weight = torch.tensor([1.0] + [1 / max(neg, 1)] * neg + [1 / max(aug, 1)] * aug, device=w.device)
        out = extractor_logits(x, self.sel, self.W1, self.W2)
        self.opt.zero_grad(set_to_none=True)
        (F.binary_cross_entropy_with_logits(out, target, reduction="none").mean(dim=1) @ weight).backward()
        self.opt.step()

    def _pruned_copies(self, w: Tensor, rank: Tensor) -> Tensor:
        """``augment`` copies of ``w`` magnitude-pruned at random rates in [0, AUGMENT_MAX_RATE) (``rank``:
        :func:`_magnitude_rank` of ``w``)."""
        rate = self.gen.rand(self.config.augment, 1).to(w.device) * AUGMENT_MAX_RATE
        return w * (rank >= rate)

    def _negatives(self, w: Tensor, n: int) -> Tensor:
        """Fresh null inputs: half i.i.d. U(-1, 1); half the host weights with a random 70-100% of
        them replaced by a permutation (cosine to w below ~0.3: hard negatives)."""
        M, g, wc = w.numel(), self.gen, w.cpu()
        k = n - n // 2
        keep = g.rand(k, M) >= 0.7 + 0.3 * g.rand(k, 1)
        blend = torch.where(keep, wc, wc[g.rand(k, M).argsort(dim=1)])
        return torch.cat([g.rand(n - k, M) * 2 - 1, blend]).to(w.device)

    def on_epoch_end(self, model: nn.Module, epoch: int, metrics: dict[str, float]) -> None:
        w = self._ready(model).detach().reshape(-1)
        if not self.active and self.config.snapshot_every is None:
            self._snapshot(w)
        if self.config.variant == "manu":
            metrics["wang_selected"] = float((self.sel > 0).sum()) if self.active else 0.0
        if self.active:
            with torch.no_grad():
                out = extractor_logits(w, self.sel, self.W1, self.W2)
                metrics["wang_l2"] = float(l2_loss(out, self.message))
                metrics["bit_error_rate"] = float(((out > 0).float() != self.message).float().mean())

    def _snapshot(self, w: Tensor) -> None:
        self.snapshots = [*self.snapshots[-(self.config.converge_window - 1):], w.cpu().clone()]
        self.n_snapshots += 1
        if self.n_snapshots >= self.config.converge_epochs:
            self._select()

    def _select(self) -> None:
        cfg = self.config
        mask = torch.stack(self.snapshots).std(dim=0, unbiased=True) < cfg.converge_threshold
        n, M = int(mask.sum()), mask.numel()
        if n < cfg.min_selected:
            raise ConfigError(f"MANU: only {n} of the {M} weights of {self.key.layer!r} converged after "
                              f"{self.n_snapshots} snapshots (std of the last {cfg.converge_window} < "
                              f"{cfg.converge_threshold}) but min_selected={cfg.min_selected}; select later "
                              "(converge_epochs), raise converge_threshold, or use variant='auto'")
        log.info("wang MANU: %d of %d weights of %s are convergent; attaching the extractor", n, M, self.key.layer)
        self.sel = mask.float().to(self.W1.device)
        self.active = True

    def on_train_end(self, model: nn.Module) -> None:
        if not self.active:
            log.warning("wang MANU: the convergent weights were never selected (train longer than converge_epochs=%d"
                        " epochs); nothing was embedded", self.config.converge_epochs)
        if self.active and self.opt is not None and self.config.negatives and self.config.harden_steps:
            w = self._ready(model).detach().reshape(-1)
            self.opt = self._new_optimizer()  # fresh moments: the training's were sized by the host's moving weights
            rank = _magnitude_rank(w)  # the host is final: ranked once
            for _ in range(self.config.harden_steps):  # widen the extractor's null margin
                self._harden_step(w, rank)

    def _harden_step(self, w: Tensor, rank: Tensor) -> None:
        """One hardening step: a margin in the null inputs' own spread. Rows scaled to unit norm (the extractor is
        positively homogeneous: no bit changes); z = logits signed by the message, s = std of z over the null rows;
        loss softplus(κ - z/s) on the host and its pruned copies, softplus(κ + z/s) on the null inputs (κ =
        HARDEN_MARGIN). BCE cannot do this: its gradient vanishes once the nulls are confidently wrong, leaving the
        rare null input scored positive, and scaling the weights moves z and s alike."""
        neg, aug = self.config.harden_negatives, self.config.augment
        pruned = self._pruned_copies(w, rank)
        x = torch.cat([w[None], pruned, self._negatives(w, neg)])
        z = extractor_logits(x / x.norm(dim=1, keepdim=True), self.sel, self.W1, self.W2) * (2 * self.message - 1)
        z = z / z[1 + aug:].std()
        loss = F.softplus(HARDEN_MARGIN - z[:1 + aug]).mean() + F.softplus(HARDEN_MARGIN + z[1 + aug:]).mean()
        if self.opt is not None:
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()

    def extractor(self) -> dict[str, Tensor]:
        """The extractor as trained so far (``selection``, ``W1``, ``W2``; CPU copies)."""
        trained = (self.sel, self.W1, self.W2)
        return {n: t.detach().cpu().clone() for n, t in zip(EXTRACTOR_TENSORS, trained, strict=True)}


@register_method
class Wang(WatermarkMethod):
    """Wang et al. 2020 independent extractor network, MANU and AUTO (see module docstring)."""

    name = "wang"
    config_cls = WangConfig
    paper = "Wang et al., Watermarking in Deep Neural Networks via Error Back-propagation, EI 2020"
    TRAITS = MethodTraits(payload="bits", reads_weights=True)
    STRENGTH_WEIGHS_LOSS = True
    VERSION = 4  # 2: extractor hardening (issue 18); 3: by a margin in the nulls' spread; 4: alignment reference
    TRAINED_TENSORS = ("selection", "W1", "W2")  # drawn from the root, then trained with the host
    config: WangConfig

    @classmethod
    def example_config(cls) -> WangConfig:
        return WangConfig(layer="conv1", bits=64, null_samples=1024)  # AUTO

    @classmethod
    def example_variants(cls) -> dict[str, MethodConfig]:
        # MANU snapshots every 10 optimizer steps (a user's loop may never call on_epoch_end); augment=0 keeps its
        # extractor specific on the 83 convergent weights of simple-cnn's conv1
        return {"manu": WangConfig(layer="conv1", bits=64, variant="manu", snapshot_every=10, augment=0,
                                   null_samples=1024)}

    def embed_advice(self, *, at_chance: bool) -> str:
        if at_chance:
            return super().embed_advice(at_chance=True)
        return (f"Train longer (--epochs), show the extractor more null inputs (--method-arg negatives=N, now "
                f"{self.config.negatives}: all bits can match while null inputs match nearly as many), embed fewer "
                f"--bits (now {self.config.bits}) or raise --strength (now {self.config.strength:g}).")

    def _create_key(self, model: nn.Module, *, root: KeyRoot, data: Dataset | None, payload: Tensor | None,
                    message: str | None) -> WatermarkKey:
        cfg = self.config
        layer = cfg.layer or host_layer_name(model)
        M = host_weight_of(host_module(model, layer)).numel()
        g = draw(root)
        tensors = {"selection": torch.ones(M) if cfg.variant == "auto" else torch.zeros(M),
                   "W1": _glorot(cfg.hidden, M, g), "W2": _glorot(cfg.bits, cfg.hidden, g)}
        return self.key_for(model, root=root, layer=layer, message=message, bits=cfg.bits, tensors=tensors)

    def hook(self, key: WatermarkKey) -> WangHook:
        return WangHook(key, self.config)

    def prepare(self, model: nn.Module, data: Dataset, train_config: TrainConfig | None, *,
                key: WatermarkKey | None, teacher: nn.Module | None, eval_data: Dataset | None,
                null_models: Sequence[Any] | None) -> EmbedPrep:
        """MANU needs more epochs than ``converge_epochs`` (it selects the weights after them)."""
        cfg, epochs = self.config, (train_config or TrainConfig()).epochs
        if cfg.variant == "manu" and cfg.snapshot_every is None and epochs <= cfg.converge_epochs:
            raise ConfigError(f"MANU selects convergent weights after converge_epochs={cfg.converge_epochs} epochs, "
                              f"so it needs more than that to embed; got epochs={epochs}")
        return EmbedPrep(train_config=train_config)

    def finalize(self, key: WatermarkKey, model: nn.Module, *, hook: TrainHook | None = None,
                 data: Dataset | None = None, train_config: TrainConfig | None = None, seed: int | None = None,
                 unmarked: nn.Module | None = None, null_models: Sequence[Any] | None = None) -> WatermarkKey:
        """A new key holding the extractor ``hook`` trained (a :class:`WangHook`) and its null measured on
        ``model`` (:func:`calibrate`). Without a hook, a key that already has its null is returned as it is."""
        if not isinstance(hook, WangHook):
            if "null_rates" in key.tensors and "null_counts" in key.tensors:
                return key
            raise ConfigError("wang: finalize(key, model, hook=hook) needs the WangHook that trained the extractor")
        out = dataclasses.replace(key, tensors={**key.tensors, **hook.extractor()})
        calibrate(model, out)
        # issue 21: :mod:`netmark.methods.alignment`
        return calibrate_null(self.verify, with_reference(out, model, upto=key.layer), null_models)

    def null_for_verifier(self, key: WatermarkKey, model: nn.Module, *,
                          null_models: Sequence[Any] | None = None) -> WatermarkKey:
        """The key's null measured again, here, on ``model``'s host weights (:func:`calibrate`)."""
        out = without_null(key)
        calibrate(model, out)
        return out

    @torch.no_grad()
    def extract(self, model: nn.Module, key: WatermarkKey) -> Extraction:
        sel, W1, W2 = _extractor(key)
        w = host_weight(model, key).detach().float().cpu().reshape(-1)
        out = extractor_logits(w, sel, W1, W2)
        details: dict[str, Any] = {"layer": key.layer, "variant": self.config.variant, "M": int(w.numel()),
                                   "selected_weights": int((sel != 0).sum()), "l2_loss": float(l2_loss(out, key.bits))}
        return Extraction(bits=(out > 0).to(torch.int64), scores=torch.sigmoid(out), details=details)

    def verify(self, model: nn.Module, key: WatermarkKey, *, alpha: float = DEFAULT_ALPHA) -> VerificationResult:
        """Extract (from ``model`` aligned to the key's reference: :mod:`netmark.methods.alignment`) and test against
        the null measured on this key's extractor (module docstring)."""
        if "null_rates" not in key.tensors or "null_counts" not in key.tensors:
            raise KeyFileError("this wang key has no null calibration (its embedding never finished: "
                               "Wang.finalize(key, model, hook=hook) was not called after training)")

        def decide(m: nn.Module) -> VerificationResult:
            ex = self.extract(m, key)
            return calibrated_bit_match_result(ex.bits, key.bits, null_rates=key.tensors["null_rates"],
                                               null_counts=key.tensors["null_counts"], method=self.name, alpha=alpha,
                                               details=ex.details)
        return verify_aligned(decide, model, key)
