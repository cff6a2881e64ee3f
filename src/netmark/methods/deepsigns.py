"""Rouhani, Chen, Koushanfar 2019, "DeepSigns: an end-to-end watermarking framework for ownership protection of
deep neural networks" (ASPLOS 2019; arXiv 1804.00750): one method, ``deepsigns``, in two modes.

Paper: surveyed in ``fkirin2022-comparative-study.txt`` as [48] (the watermark "is embedded into the pdf of the
activation set obtained at each intermediate layer and output layer"; more robust than Uchida [57] / Nagai [41]
to overwriting and pruning, Tables 2-3). Threat model: ``mode="white"``, the thief holds the weights and may
fine-tune, prune or overwrite them, and the owner later reads a suspect's activations; ``mode="black"``, the
suspect sits behind a prediction API and the owner can only query it.

White-box embedding. The host layer's activations are modelled as a Gaussian mixture, one component per class;
an N-bit message ``b_t`` goes into the centre ``μ_t`` of each target class ``t``:
``loss = loss_task + λ1·loss_cluster + λ2·Σ_t BCE(σ(A μ_t), b_t)``, with a secret projection ``A`` (N×M,
N(0, 1) entries from the key seed; M = the features of the host layer's output, flattened). netmark takes ``μ_t``
to be the mean activation of the batch's class-``t`` samples; every batch gets ``per_batch`` key images appended
(WRT trains on the key images of the target classes every few batches). ``loss_cluster`` is a bounded form of the
paper's term that pulls a class's activations to its centre and pushes them from the other centres: the
within-class scatter of class ``t`` over its mean squared distance to the other classes' means (pull minus push
is unbounded below once the centres move; WRT normalises the push and switches it off, ``separate_means: False``).
The host activation is the layer's own output (before any activation function that follows it).
Extraction: average the host activation over the key's images of class ``t`` (``key_images`` training images of
each target class, drawn at key creation and stored in the key), project with ``A``, threshold at 0. Verification:
bit matches under Binomial(s·N, 1/2) (:func:`netmark.verify.bit_match_result`), exact for a random message: the
message and ``A`` are drawn independently of any suspect.

Black-box embedding (the authors' ``key_generation``). Draw ``candidates × size`` random input keys (uniform noise
in the data's [0, 1] range; the authors' code draws standard-normal noise in its normalised input space) with
uniformly random labels, train them in (:class:`~netmark.methods.triggerset.TriggerSetHook`: ``per_batch`` keys
appended to every batch), then keep the first ``size`` keys that the marked model answers with their label and
the unmarked model (the model before embedding) does not (:meth:`DeepSigns.select_keys`, run by :meth:`embed`).
Detection counts the keys answered with their label (the authors use a threshold on Binomial(K, 1/C), which
is netmark's test too), through queries only (:meth:`verify_query`).

The black-box null. A candidate set (:meth:`create_key`; what a user's own loop verifies) has labels drawn
uniformly and independently of the images: Binomial(n, 1/C) is exact. Selection is not: a random label that
independent models would also give a noise image (its "natural" class) is easier to fit, so it survives the
"marked model learnt it" test more often than 1/C, while dropping the unmarked model's answer moves the rate by
an amount that depends on how often independent models agree with it. Measured on digits (simple CNN, 400
candidates, two keys, 10 independent models each): independent models matched 0.17 and 0.21 of the ~135 selected
keys' labels, against 0.11 of all candidates. A selected key is therefore marked
``message_random=False`` and :meth:`embed` calibrates its null on ``null_models`` reference models (the measured
null of :mod:`netmark.methods.triggerset`, never below the 1/C binomial tail).

Hyper-parameters. The paper's text was not available to netmark (only abstracts in the search corpora), nor the
authors' ``DeepSigns.pyc`` (binary); the values below come from the authors' demos (github.com/Bitadr/DeepSigns),
their PyTorch port (RorschachChen/DeepSigns-torch) and WRT (dnn-security/Watermark-Robustness-Toolbox):

* λ1 = λ2 = 0.01: ``scale = 0.01  # for loss1``, ``gamma2 = 0.01  # for loss2`` (whiteboxWM/main_whitebox.py,
  MNIST MLP, RMSprop lr 1e-3, 1 epoch); the port's ``--scale`` / ``--gamma`` 0.01. WRT's CIFAR-10 configs use
  gamma1 0.001-0.01, gamma2 0.3-3 and 100 bits for its ResNets.
* N: ``embed_bits = 16`` into ``target_class = 0`` (one target class, s = 1; WRT validated only
  ``num_gaussians: 1``), on the second hidden 512-unit Dense layer (``target_dense_idx = 2``), i.e. the input of
  the output layer. netmark: ``bits=32`` (16 bits can never reach α = 1e-6: 2^-16 ≈ 1.5e-5) and, by default, the
  second-to-last conv/linear layer.
* Key images: the authors extract over the training images of the target class (``subsample_training_data``);
  WRT stores 64 per class (``max_n=64``); netmark ``key_images=64``.
* Black box: K = 20 (``key_len = 20``), fine-tuned 2 epochs (``embed_epoch = 2``, SGD lr 8e-4, Nesterov momentum
  0.9) from a trained model, decision at p = 1e-4 (``p_threshold``) (blackboxWM/main_blackbox.py); 40 candidates
  per kept key (``key_len = 40 * desired_key_len`` in the port's ``key_generation``). netmark embeds during the
  training run given to :meth:`embed` (fine-tune-to-embed: pass a trained model and a short schedule).

Args (:class:`DeepSignsConfig`): ``mode`` [white]; white: ``layer`` [second-to-last conv/linear layer], ``bits``
N per target class [32; authors 16], ``target_classes`` [(0,)], ``key_images`` [64], ``lambda1`` [0.01],
``lambda2`` [0.01]; black: ``size`` K [20], ``candidates`` [40]; both: ``per_batch`` [2] (key images / candidate
keys appended to each batch), ``null_models`` [4] and ``null_epochs`` (black: reference models for the null).

Example::

    method = DeepSigns(DeepSignsConfig(mode="white", layer="fc1"))
    model, key, run = method.embed(model, train_set, TrainConfig(epochs=20), seed=3)
    method.verify(model, key).detected                       # reads the activations of fc1
    black = DeepSigns(DeepSignsConfig(mode="black"))
    model, key, run = black.embed(trained_model, train_set, TrainConfig(epochs=2, lr=1e-3), seed=4)
    black.verify_query(my_api, key).p_value                  # query-only
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from netmark._util import check_choice, check_finite, check_layer_name, first_line
from netmark.draws import KeyRoot, draw
from netmark.errors import ArchitectureError, ConfigError, KeyFileError
from netmark.keys import WatermarkKey
from netmark.methods.alignment import with_reference
from netmark.methods.alignment_null import calibrate_null, verify_aligned
from netmark.methods.base import Extraction, MethodConfig, register_method
from netmark.methods.phases import EmbedPrep
from netmark.methods.traits import MethodTraits
from netmark.methods.triggerset import (
    Predictor,
    TriggerSetConfig,
    TriggerSetHook,
    TriggerSetMethod,
    check_int,
    dataset_images,
    input_shape,
    logits_of,
    model_predictor,
    num_classes,
    query,
    random_labels,
)
from netmark.training import TrainConfig, TrainHook
from netmark.verify import DEFAULT_ALPHA, VerificationResult, bit_match_result

log = logging.getLogger(__name__)

MODES = ("white", "black")


@dataclass
class DeepSignsConfig(TriggerSetConfig):
    """DeepSigns options (sources in the module docstring); the options of the other mode are ignored.

    Args:
        mode: ``white`` (message in the activation centres) or ``black`` (selected random keys).
        layer: white: the conv/linear layer whose output carries the message (``None``: second-to-last).
        bits: white: N, bits per target class (the message has ``bits × len(target_classes)``).
        target_classes: white: the classes whose activation centres carry the message (s of them).
        key_images: white: training images of each target class stored in the key for extraction.
        lambda1, lambda2: white: weights of the clustering term and of the message BCE.
        size: black: K, keys kept after selection.
        candidates: black: random candidate keys drawn per kept key.
        per_batch, null_models, null_epochs: as :class:`~netmark.methods.triggerset.TriggerSetConfig`
            (white: key images appended to each batch; the null models are black-box only).
    """

    mode: Literal["white", "black"] = "white"
    layer: str | None = None
    bits: int = 32
    target_classes: tuple[int, ...] = (0,)
    key_images: int = 64
    lambda1: float = 0.01
    lambda2: float = 0.01
    size: int = 20
    candidates: int = 40

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("mode", self.mode, MODES)
        check_layer_name(self.layer, "fc1")
        check_int("bits", self.bits, 1)
        check_int("key_images", self.key_images, 1)
        check_int("candidates", self.candidates, 1)
        t = self.target_classes
        if not isinstance(t, list | tuple) or not t:
            raise ConfigError(f"target_classes must be a non-empty list of class indices, got {t!r}")
        for c in t:
            check_int("a target class", c, 0)
        if len(set(t)) != len(t):
            raise ConfigError(f"target_classes has repeated classes: {list(t)}")
        self.target_classes = tuple(int(c) for c in t)
        for name in ("lambda1", "lambda2"):
            check_finite(name, getattr(self, name), positive=False)


def auto_layer(model: nn.Module) -> str:
    """The second-to-last conv/linear layer (the authors' MNIST demo marks the input of the output layer)."""
    from netmark.models import conv_and_linear_layers

    names = list(conv_and_linear_layers(model))
    if len(names) < 2:
        raise ConfigError("deepsigns needs a hidden conv/linear layer to mark: pass layer=")
    return names[-2]


def activations(model: nn.Module, layer: str, images: Tensor, *, batch_size: int = 256) -> Tensor:
    """The host layer's output on ``images``, flattened to ``(n, M)`` float64 (eval mode, no gradients)."""
    from netmark.models import get_layer

    mod = get_layer(model, layer)
    out: list[Tensor] = []
    handle = mod.register_forward_hook(lambda m, i, o: out.append(o.detach().flatten(1).to(torch.float64, copy=True)))
    try:
        logits_of(model, images, batch_size=batch_size)
    except RuntimeError as e:
        raise ArchitectureError(f"the model does not take the key's images of shape {tuple(images.shape[1:])}: "
                                f"{first_line(e)}") from None
    finally:
        handle.remove()
    if len(out) != -(-len(images) // batch_size):
        raise ArchitectureError(f"layer {layer!r} runs {len(out)} times for {len(images)} images; deepsigns needs a "
                                "layer used once per forward pass")
    return torch.cat(out).cpu()


def class_means(act: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(classes, weights, means)``: the classes present in ``y``, their row-normalised one-hot weights
    ``(K, B)`` and mean activations ``(K, M)`` (dense matrix products: mask indexing has a slow backward on a CPU)."""
    classes = torch.unique(y)
    weights = (y[None, :] == classes[:, None]).to(act.dtype)
    weights = weights / weights.sum(1, keepdim=True)
    return classes, weights, weights @ act


def cluster_loss(act: Tensor, weights: Tensor, means: Tensor, k: int) -> Tensor:
    """Within-class scatter of the ``k``-th present class over its mean squared distance to the other classes'
    means (:func:`class_means`); zero while the batch has a single class."""
    if len(means) < 2:
        return act.new_zeros(())
    within = (weights[k] * (act - means[k]).pow(2).sum(1)).sum()
    between = (means - means[k]).pow(2).sum(1).sum() / (len(means) - 1)
    return within / (between + 1e-6)


def bits_loss(centre: Tensor, A: Tensor, bits: Tensor) -> Tensor:
    """BCE between σ(A μ) and the message bits, summed over the bits (as the authors' code)."""
    return F.binary_cross_entropy_with_logits(A @ centre, bits.to(centre.dtype), reduction="sum")


class DeepSignsWhiteHook(TriggerSetHook):
    """White mode: appends key images to each batch and adds ``λ1·loss_cluster + λ2·BCE`` on the host layer.

    From your own loop: ``on_train_start`` (registers a forward hook), ``transform_batch``, ``extra_loss``,
    ``on_train_end`` (removes it).
    """

    def __init__(self, key: WatermarkKey, config: DeepSignsConfig) -> None:
        super().__init__(key.tensors["images"], key.tensors["classes"], config.per_batch, key.key_root, 5)
        self.key, self.config = key, config
        self.layer = key.layer or ""
        self.A = key.tensors["A"].float()
        self.bits = key.bits.view(len(config.target_classes), config.bits)
        self.act: Tensor | None = None
        self.handle: Any = None

    def _capture(self, module: nn.Module, inputs: Any, output: Tensor) -> None:
        self.act = output.clone()  # before any in-place activation that follows the layer

    def on_train_start(self, model: nn.Module) -> None:
        from netmark.models import get_layer

        self.on_train_end(model)
        m = activations(model, self.layer, self.inputs[:1]).shape[1]  # fail fast on a wrong layer or model
        if m != self.A.shape[1]:
            raise ArchitectureError(f"layer {self.layer!r} has {m} features but the key expects {self.A.shape[1]}")
        self.handle = get_layer(model, self.layer).register_forward_hook(self._capture)

    def extra_loss(self, model: nn.Module, x: Tensor, y: Tensor, logits: Tensor) -> dict[str, Tensor]:
        if self.act is None:
            raise ArchitectureError("the deepsigns hook saw no activation: call hook.on_train_start(model) first")
        act, self.act = self.act.flatten(1), None
        if act.shape[1] != self.A.shape[1] or len(act) != len(y):
            raise ArchitectureError(f"layer {self.layer!r} gave activations {tuple(act.shape)}; the key expects "
                                    f"{self.A.shape[1]} features per input")
        A = self.A.to(act.device)
        classes, weights, means = class_means(act, y)
        present = {int(c): k for k, c in enumerate(classes.tolist())}
        cl, bl = act.new_zeros(()), act.new_zeros(())
        for i, t in enumerate(self.config.target_classes):
            if t in present:
                cl = cl + cluster_loss(act, weights, means, present[t])
                bl = bl + bits_loss(means[present[t]], A, self.bits[i].to(act.device))
        return {"cluster_loss": self.config.lambda1 * cl, "bits_loss": self.config.lambda2 * bl}

    def on_epoch_end(self, model: nn.Module, epoch: int, metrics: dict[str, float]) -> None:
        ex = DeepSigns(self.config).extract(model, self.key)
        metrics["bit_error_rate"] = float((ex.bits != self.key.bits).float().mean())

    def on_train_end(self, model: nn.Module) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
        self.act = None


@register_method
class DeepSigns(TriggerSetMethod):
    """DeepSigns, white-box (activation centres) or black-box (selected random keys): see the module docstring."""

    name = "deepsigns"
    config_cls = DeepSignsConfig
    paper = ("Rouhani, Chen, Koushanfar: DeepSigns: an end-to-end watermarking framework for ownership protection "
             "of deep neural networks, ASPLOS 2019")
    #: the white mode's; :meth:`traits` reads the config's mode
    TRAITS = MethodTraits(payload="bits", needs_data=True)  # white: the key images come from the data
    #: the black mode's: query-verifiable, the data only gives the input shape (optional)
    BLACK_TRAITS = MethodTraits(payload="labels", query_verifiable=True)
    VERSION = 2  # 2: a white-box key holds an alignment reference (issue 21)
    config: DeepSignsConfig

    def traits(self) -> MethodTraits:
        """White mode: bits read from the activations (white box); black mode: a query-verifiable trigger set."""
        return self.TRAITS if self.config.mode == "white" else self.BLACK_TRAITS

    @classmethod
    def example_config(cls) -> DeepSignsConfig:
        return DeepSignsConfig(mode="white", layer="fc1")  # 32 bits in class 0's mean fc1 activation

    @classmethod
    def example_variants(cls) -> dict[str, MethodConfig]:
        # 2 candidates per kept key (the authors' port: 40), selected keys calibrated on 2 models
        return {"black": DeepSignsConfig(mode="black", candidates=2, per_batch=8, null_models=2, null_epochs=4)}

    def embed_advice(self, *, at_chance: bool) -> str:
        if at_chance or self.config.mode == "black":
            return super().embed_advice(at_chance=at_chance)
        return (f"Train longer (--epochs), embed fewer --bits (now {self.config.bits}) or raise the centre loss "
                f"(--method-arg lambda1=X, now {self.config.lambda1:g}).")

    def _white(self, key: WatermarkKey | None = None) -> bool:
        if key is not None and key.config.get("mode") != self.config.mode:
            raise KeyFileError(f"this is a {key.config.get('mode')!r}-mode deepsigns key, the method is in "
                               f"{self.config.mode!r} mode (use DeepSigns.from_key(key))")
        return self.config.mode == "white"

    # ------------------------------------------------------------------ keys

    def make_triggers(self, model: nn.Module, *, root: KeyRoot, data: Dataset | None) -> tuple[Tensor, Tensor, bool]:
        """Black mode's candidate keys: ``candidates × size`` noise images with uniformly random labels."""
        shape = input_shape(model, data)
        n = self.config.candidates * self.config.size
        inputs = draw(root).rand(n, *shape)
        return inputs, random_labels(n, num_classes(model, shape), root, 1), True

    def _create_key(self, model: nn.Module, *, root: KeyRoot, data: Dataset | None, payload: Tensor | None,
                    message: str | None) -> WatermarkKey:
        """White: A, the message and the key images (``data`` required). Black: the candidate keys."""
        cfg = self.config
        if not self._white():
            return super()._create_key(model, root=root, data=data, payload=payload, message=message)
        total = cfg.bits * len(cfg.target_classes)
        if data is None:  # create_key checked it (traits: needs_data)
            raise ConfigError("deepsigns' white-box mode takes its key images from the training data: pass data=")
        layer = cfg.layer or auto_layer(model)
        shape = input_shape(model, data)
        c = num_classes(model, shape)
        if max(cfg.target_classes) >= c:
            raise ConfigError(f"target_classes {list(cfg.target_classes)} lie outside the model's {c} classes")
        imgs, cls = [], []
        for t in cfg.target_classes:
            x, y = dataset_images(data, cfg.key_images, root, 2 + t, only_label=t)
            imgs.append(x.float())
            cls.append(y)
        images = torch.cat(imgs).contiguous()
        M = activations(model, layer, images[:1]).shape[1]
        A = draw(root).randn(cfg.bits, M)
        return self.key_for(model, root=root, layer=layer, message=message, bits=total, num_classes=c,
                            tensors={"A": A, "images": images, "classes": torch.cat(cls).to(torch.int64)},
                            input_shape=list(shape))

    def check_key_tensors(self, key: WatermarkKey) -> None:
        if self.config.mode == "black":
            return super().check_key_tensors(key)
        cfg = self.config
        for t in ("A", "images", "classes"):
            if t not in key.tensors:
                raise KeyFileError(f"deepsigns white-box key lacks its {t!r} tensor")
        A, x, y = key.tensors["A"], key.tensors["images"], key.tensors["classes"]
        if (A.ndim != 2 or A.shape[0] != cfg.bits or not A.is_floating_point() or x.ndim != 4 or y.ndim != 1
                or len(x) != len(y) or y.is_floating_point()):
            raise KeyFileError(f"deepsigns key has malformed tensors: A {tuple(A.shape)}, images {tuple(x.shape)}, "
                               f"classes {tuple(y.shape)}")
        if not set(cfg.target_classes) <= set(y.tolist()):
            raise KeyFileError("deepsigns key has no image of some target class")
        if not key.layer or len(key.message) != cfg.bits * len(cfg.target_classes):
            raise KeyFileError(f"deepsigns key needs a layer and {cfg.bits * len(cfg.target_classes)} message bits")

    def select_keys(self, key: WatermarkKey, *, marked: nn.Module | Predictor,
                    unmarked: nn.Module | Predictor) -> WatermarkKey:
        """Black mode: the first ``size`` candidates that ``marked`` answers with their label and ``unmarked``
        does not (``message_random`` becomes False: see "The black-box null"; calibrate the result)."""
        self._white(key)
        x, y = key.tensors["inputs"], key.tensors["labels"].to(torch.int64)
        c = int(key.config["num_classes"])
        pm, pu = (query(model_predictor(m) if isinstance(m, nn.Module) else m, x, c) for m in (marked, unmarked))
        keep = ((pm == y) & (pu != y)).nonzero().reshape(-1)[: self.config.size]
        if len(keep) == 0:
            raise ConfigError(f"none of the {len(y)} candidate keys was learnt by the marked model (and missed by the "
                              "unmarked one): train longer, or raise per_batch or candidates")
        if len(keep) < self.config.size:
            log.warning("deepsigns kept %d of %d keys (%d candidates)", len(keep), self.config.size, len(y))
        return replace(key, layer=None, message="", message_random=False,
                       tensors={"inputs": x[keep].contiguous(), "labels": y[keep].contiguous()})

    # ------------------------------------------------------------------ embedding

    def hook(self, key: WatermarkKey) -> TriggerSetHook:
        return DeepSignsWhiteHook(key, self.config) if self._white(key) else super().hook(key)

    def prepare(self, model: nn.Module, data: Dataset, train_config: TrainConfig | None, *,
                key: WatermarkKey | None, teacher: nn.Module | None, eval_data: Dataset | None,
                null_models: Sequence[Any] | None) -> EmbedPrep:
        """White: nothing (its null is exact; ``null_models``, independent models, calibrate the aligned null in
        :meth:`finalize`: :func:`~netmark.methods.alignment_null.calibrate_null`). Black: no distillation; keep a copy
        of the model from before training (:meth:`finalize` selects the keys against it and trains the reference
        models from it)."""
        if not self._white(key):
            return super().prepare(model, data, train_config, key=key, teacher=teacher, eval_data=eval_data,
                                   null_models=null_models)
        if null_models is not None and not all(isinstance(m, nn.Module) for m in null_models):
            raise ConfigError("deepsigns white: null_models must be independently trained models (they calibrate "
                              "the aligned null)")
        return EmbedPrep(train_config=train_config)

    def finalize(self, key: WatermarkKey, model: nn.Module, *, hook: TrainHook | None = None,
                 data: Dataset | None = None, train_config: TrainConfig | None = None, seed: int | None = None,
                 unmarked: nn.Module | None = None, null_models: Sequence[Any] | None = None) -> WatermarkKey:
        """White: the key as it is. Black: a candidate set is selected against ``unmarked`` (:meth:`select_keys`;
        without ``unmarked`` it stays the candidate set, whose labels are random: exact null) and the selected
        keys' null calibrated (:meth:`TriggerSetMethod.finalize`)."""
        if self._white(key):  # issue 21: the layers up to the host, for :mod:`netmark.methods.alignment`
            return calibrate_null(self.verify, with_reference(key, model, upto=key.layer), null_models)
        if key.message_random and unmarked is not None:  # a candidate set, not yet selected
            key = self.select_keys(key, marked=model, unmarked=unmarked)
        return super().finalize(key, model, hook=hook, data=data, train_config=train_config, seed=seed,
                                unmarked=unmarked, null_models=null_models)

    # ------------------------------------------------------------------ extraction and decision

    def extract(self, model: nn.Module, key: WatermarkKey) -> Extraction:
        """White: per target class, the sign of A·(mean activation over its key images). Black: the answers."""
        if not self._white(key):
            return super().extract(model, key)
        if not key.layer or not {"A", "images", "classes"} <= set(key.tensors):
            raise KeyFileError("deepsigns white-box key has no host layer or lacks A / images / classes")
        act = activations(model, key.layer, key.tensors["images"].float())
        A = key.tensors["A"].to(torch.float64)
        if act.shape[1] != A.shape[1]:
            raise ArchitectureError(f"layer {key.layer!r} has {act.shape[1]} features but the key expects "
                                    f"{A.shape[1]} (a model of another architecture?)")
        cls = key.tensors["classes"]
        proj = torch.cat([A @ act[cls == t].mean(0) for t in self.config.target_classes])
        bits = (proj > 0).to(torch.int64)
        loss = F.binary_cross_entropy_with_logits(proj, key.bits.to(torch.float64), reduction="sum")
        details = {"layer": key.layer, "features": int(A.shape[1]), "target_classes": list(self.config.target_classes),
                   "embed_loss": float(loss), "min_margin": float(proj.abs().min())}
        return Extraction(bits=bits, scores=torch.sigmoid(proj).float(), details=details)

    def verify(self, model: nn.Module, key: WatermarkKey, *, alpha: float = DEFAULT_ALPHA) -> VerificationResult:
        """White: bit matches under Binomial(s·N, 1/2). Black: the trigger-set decision (queries ``model``)."""
        if not self._white(key):
            return super().verify(model, key, alpha=alpha)

        def decide(m: nn.Module) -> VerificationResult:  # on m aligned to the key's reference (alignment)
            ex = self.extract(m, key)
            return bit_match_result(ex.bits, key.bits, method=self.name, alpha=alpha, details=ex.details,
                                    exact_null=key.message_random)
        return verify_aligned(decide, model, key)

    def verify_query(self, predict: Predictor, key: WatermarkKey, *,
                     alpha: float = DEFAULT_ALPHA) -> VerificationResult:
        if self._white(key):
            raise ConfigError("a white-box deepsigns key is read from the model's activations: it cannot be verified "
                              "through queries (pass the model itself)")
        return super().verify_query(predict, key, alpha=alpha)

    def calibrate(self, key: WatermarkKey, models: Sequence[nn.Module | Predictor]) -> WatermarkKey:
        if self._white(key):
            raise ConfigError("a white-box deepsigns key needs no calibration: its null is exact for a random message")
        return super().calibrate(key, models)
