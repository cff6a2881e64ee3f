"""Black-box (query-only) watermarks: a secret trigger set whose labels the marked model reproduces.

The shared protocol of the trigger-set schemes (``adi``, ``zhang-*``, ``frontier-stitching`` and
DeepSigns' black-box mode): a scheme only says how its triggers are made
(:meth:`TriggerSetMethod.make_triggers`); this module mixes them into training batches, stores them
in the key, queries a suspect and decides.

Key. ``tensors["inputs"]`` (the trigger images, in the model's input space), ``tensors["labels"]``
(the labels the marked model must answer), and once calibrated ``tensors["null_counts"]`` /
``tensors["null_rates"]`` (see below). ``config`` holds the scheme's options plus ``num_classes`` and
``input_shape``. ``message_random`` is true when the labels were drawn uniformly at random,
independently of the images.

Embedding (:class:`TriggerSetHook`). Each training batch gets ``per_batch`` trigger samples appended
(cycling through the trigger set in a seeded random order): train-to-embed with a fresh model, or
fine-tune-to-embed with a trained one (Adi et al. §4, "FromScratch" / "PreTrained"; their code appends
2 triggers to each batch of 100).

Verification through queries only. The suspect is any function from a batch of inputs to labels: a
model (:func:`model_predictor`), an HTTP endpoint (:mod:`netmark.serve`) or your own callable. The
statistic is ``k``, the number of triggers answered with the key's label, out of ``n``. Null
hypothesis: the suspect was trained independently of the key.

* Random labels (``message_random``): whatever an independent model answers, it matches a uniformly
  random label with probability exactly 1/C, independently per trigger: ``k ~ Binomial(n, 1/C)``.
* Labels that depend on the image (a fixed target class, the true class near the frontier) are matched
  by independent models far above 1/C. Such keys must be *calibrated*: :meth:`TriggerSetMethod.calibrate`
  queries models trained without the key and stores their match counts and per-trigger match rates;
  :meth:`TriggerSetMethod.embed` trains ``null_models`` of them by default. The p-value is then the most
  conservative of a Poisson-binomial over the per-trigger rates, a beta-binomial fitted to the counts and
  the empirical rate (:func:`netmark.verify.calibrated_bit_match_result`, with chance 1/C). An
  uncalibrated key of this kind is refused rather than tested against 1/C.
"""

from __future__ import annotations

import copy
import math
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from netmark._util import check_int, first_line, seeded
from netmark.draws import KeyRoot, derived_seed, draw
from netmark.errors import ArchitectureError, ConfigError, KeyFileError, NetmarkError
from netmark.keys import WatermarkKey
from netmark.methods.base import Extraction, MethodConfig, WatermarkMethod, without_null
from netmark.methods.phases import EmbedPrep
from netmark.methods.tokens import first_input
from netmark.methods.traits import MethodTraits
from netmark.training import (
    TrainConfig,
    TrainHook,
    evaluating,
    forward,
    model_device,
    reinitialised,
    train,
)
from netmark.verify import (
    DEFAULT_ALPHA,
    VerificationResult,
    beta_binomial_log10_tails,
    calibrated_bit_match_result,
    match_result,
    min_reaching,
)

#: a suspect seen through queries: a float batch ``(N, C, H, W)`` in, ``N`` integer labels out.
Predictor = Callable[[Tensor], Tensor | Sequence[int]]


class QueryError(NetmarkError):
    """A prediction endpoint answered something that is not one label per input."""


@dataclass
class TriggerSetConfig(MethodConfig):
    """Options every trigger-set scheme shares (each scheme's config adds its own).

    Args:
        size: number of triggers [Adi et al.: 100].
        per_batch: trigger samples appended to every training batch [Adi et al.'s code: 2 per batch of 100].
        null_models: independently trained reference models :meth:`TriggerSetMethod.embed` trains to
            calibrate the key's null (0: none; keys with image-dependent labels then cannot be verified
            until :meth:`TriggerSetMethod.calibrate` is called).
        null_epochs: epochs of each reference model (``None``: the embedding schedule's).
    """

    size: int = 100
    per_batch: int = 2
    null_models: int = 4
    null_epochs: int | None = None

    def __post_init__(self) -> None:
        check_int("size", self.size, 1)
        check_int("per_batch", self.per_batch, 1)
        check_int("null_models", self.null_models, 0)
        if self.null_epochs is not None:
            check_int("null_epochs", self.null_epochs, 1)


# ----------------------------------------------------------------------------- trigger images


def abstract_images(n: int, shape: Sequence[int], root: KeyRoot, k: int = 0) -> Tensor:
    """``n`` random "abstract" images in [0, 1] (Adi et al. use 100 abstract drawings): smooth random
    fields (upsampled low-resolution noise) overlaid with random bright strokes, all from stream ``k`` of ``root``."""
    c, h, w = (int(s) for s in shape)
    g = draw(root, k)
    low = g.rand(n, c, max(2, h // 4), max(2, w // 4))
    field = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    out = 0.6 * field
    for _ in range(3):  # three strokes per image: lines a·x + b·y = c of random angle and width
        ang = g.rand(n, 1, 1) * math.pi
        off = g.rand(n, 1, 1)
        width = 0.02 + 0.06 * g.rand(n, 1, 1)
        d = (torch.cos(ang) * xx + torch.sin(ang) * yy - off * 1.2).abs()
        out = out + 0.8 * (d < width).float().unsqueeze(1) * g.rand(n, c, 1, 1)
    return out.clamp(0, 1)


def random_labels(n: int, num_classes: int, root: KeyRoot, k: int = 0) -> Tensor:
    """``n`` labels uniform over ``num_classes`` from stream ``k`` of ``root``."""
    return draw(root, k).randint(0, num_classes, (n,))


# ----------------------------------------------------------------------------- querying


def logits_of(model: nn.Module, x: Tensor, *, batch_size: int = 256) -> Tensor:
    """``model``'s outputs on ``x`` (eval mode, no gradients, on the model's device, in chunks; mode restored), on
    the CPU."""
    dev = model_device(model)
    with evaluating(model), torch.no_grad():
        return torch.cat([forward(model, x[i:i + batch_size].to(dev)).cpu() for i in range(0, len(x), batch_size)])


def model_predictor(model: nn.Module, *, batch_size: int = 256) -> Callable[[Tensor], Tensor]:
    """The labels ``model`` answers (eval mode, no gradients, on the model's device; mode restored)."""
    return lambda x: logits_of(model, x, batch_size=batch_size).argmax(1)


def query(predict: Predictor, inputs: Tensor, num_classes: int) -> Tensor:
    """Call ``predict`` on ``inputs`` and check it answered one label in ``[0, num_classes)`` per input."""
    out = predict(inputs)
    try:
        labels = torch.as_tensor(out).reshape(-1)
    except (TypeError, ValueError, RuntimeError) as e:
        raise QueryError(f"the suspect answered something that is not a list of labels ({e})") from None
    if len(labels) != len(inputs):
        raise QueryError(f"the suspect answered {len(labels)} labels for {len(inputs)} inputs")
    if labels.dtype == torch.bool or (labels.is_floating_point() and not bool((labels == labels.round()).all())):
        raise QueryError("the suspect answered non-integer labels")
    labels = labels.to(torch.int64)
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise QueryError(f"the suspect answered labels outside 0..{num_classes - 1}")
    return labels


def _check_model(model: nn.Module, key: WatermarkKey) -> None:
    """The model must accept the key's inputs and answer ``num_classes`` logits (ArchitectureError otherwise)."""
    out = _probe(model, key.tensors["inputs"], "the key's trigger inputs")
    c = int(key.config["num_classes"])
    if out.ndim != 2 or out.shape[1] != c:
        raise ArchitectureError(f"the model answers {tuple(out.shape[1:])} outputs per input; "
                                f"the key needs {c} classes")


def _probe(model: nn.Module, inputs: Tensor, what: str) -> Tensor:
    """``model``'s output on the first of ``inputs``; ArchitectureError when it does not take them."""
    try:
        return logits_of(model, inputs[:1])
    except RuntimeError as e:
        raise ArchitectureError(f"the model does not take {what} of shape {tuple(inputs.shape[1:])}: "
                                f"{first_line(e)}") from None


# ----------------------------------------------------------------------------- decision


def trigger_result(predicted: Tensor, key: WatermarkKey, *, method: str, alpha: float = DEFAULT_ALPHA,
                   details: dict[str, Any] | None = None) -> VerificationResult:
    """Decide from the suspect's answers on the key's triggers (see the module docstring for the null)."""
    labels = key.tensors["labels"].to(torch.int64)
    c = int(key.config["num_classes"])
    n, k = len(labels), int((predicted.to(torch.int64) == labels).sum())
    extra = {"trigger_accuracy": k / n, "triggers": n, "num_classes": c, **(details or {})}
    if "null_counts" in key.tensors:
        return calibrated_bit_match_result(predicted, labels, null_rates=key.tensors["null_rates"],
                                           null_counts=key.tensors["null_counts"], method=method, alpha=alpha,
                                           chance=1.0 / c, details={**extra, "calibrated": True})
    if not key.message_random:
        raise KeyFileError("this key's trigger labels depend on the images, so independent models agree with them "
                           "far above chance: calibrate its null first (TriggerSetMethod.calibrate, or embed with "
                           "null_models > 0)")
    tails = beta_binomial_log10_tails(n, None, None, 1.0 / c)
    d = {"log10_p_value": float(tails[k]), "min_matched_bits": min_reaching(tails, alpha),
         "null": f"Binomial(n, 1/{c}): uniformly random labels", "null_exact": True, "calibrated": False, **extra}
    return match_result(k, n, float(tails[k]), method=method, alpha=alpha, details=d)


# ----------------------------------------------------------------------------- the hook


class TriggerSetHook(TrainHook):
    """Appends ``per_batch`` trigger samples (seeded cyclic order) to every training batch; after each epoch
    puts the model's accuracy on the whole trigger set into the metrics (``trigger_accuracy``) and, with a
    ``target``, stops training once it reaches it ("until the key is learnt")."""

    def __init__(self, inputs: Tensor, labels: Tensor, per_batch: int, root: KeyRoot, k: int = 0,
                 target: float | None = None) -> None:
        self.inputs, self.labels, self.per_batch = inputs, labels.to(torch.int64), per_batch
        self.gen = draw(root, k)
        self.order = torch.zeros(0, dtype=torch.int64)
        self.target = target
        self.accuracy: float | None = None

    def _next(self, m: int) -> Tensor:
        while len(self.order) < m:
            self.order = torch.cat([self.order, self.gen.randperm(len(self.labels))])
        idx, self.order = self.order[:m], self.order[m:]
        return idx

    def transform_batch(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        idx = self._next(self.per_batch)
        ty = torch.cat([y, self.labels[idx].to(y.device)])
        if isinstance(x, Mapping):  # keyword inputs of a token model: triggers are input_ids, fully attended
            ids = x["input_ids"]
            tx = self.inputs[idx].to(ids.device, ids.dtype)
            extra = {k: torch.cat([v, (torch.ones_like if k == "attention_mask" else torch.zeros_like)(
                tx, dtype=v.dtype)]) for k, v in x.items() if k != "input_ids"}
            return {"input_ids": torch.cat([ids, tx]), **extra}, ty
        tx = self.inputs[idx].to(x.device, x.dtype)
        return torch.cat([x, tx]), ty

    def on_epoch_end(self, model: nn.Module, epoch: int, metrics: dict[str, float]) -> None:
        self.accuracy = float((logits_of(model, self.inputs).argmax(1) == self.labels).float().mean())
        metrics["trigger_accuracy"] = self.accuracy

    def stop_training(self) -> bool:
        return self.target is not None and self.accuracy is not None and self.accuracy >= self.target


# ----------------------------------------------------------------------------- the base class


def fresh_copy(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model``'s architecture with every layer re-initialised (``reset_parameters``, seeded)."""
    with seeded(seed):
        return reinitialised(model)


def train_reference_models(template: nn.Module, data: Dataset, train_config: TrainConfig | None, n: int, *,
                           seed: int, epochs: int | None = None) -> list[nn.Module]:
    """``n`` models of ``template``'s architecture trained on ``data`` without any watermark (seeds
    ``seed + 1000 + i``): the independent models of the null hypothesis."""
    cfg = train_config or TrainConfig()
    out = []
    for i in range(n):
        s = seed + 1000 + i
        m = fresh_copy(template, s)
        changes: dict[str, Any] = {"seed": s, "progress": False}
        if epochs is not None:
            changes["epochs"] = epochs
        train(m, data, TrainConfig(**{**cfg.to_dict(), **changes}))
        out.append(m)
    return out


class TriggerSetMethod(WatermarkMethod):
    """Base of the black-box schemes: subclasses implement :meth:`make_triggers` (and set ``name``,
    ``config_cls``, ``paper``; ``TRAITS`` with ``needs_data`` when the triggers are made from training images)."""

    TRAITS = MethodTraits(payload="labels", query_verifiable=True)
    KEY_CONFIG_EXTRAS = ("num_classes", "input_shape")
    config: TriggerSetConfig

    def embed_advice(self, *, at_chance: bool) -> str:
        if at_chance:
            return super().embed_advice(at_chance=True)
        return (f"Train longer (--epochs) or mix more triggers into each batch (--method-arg per_batch=N, now "
                f"{self.config.per_batch}; {self.config.size} triggers in all).")

    @abstractmethod
    def make_triggers(self, model: nn.Module, *, root: KeyRoot, data: Dataset | None,
                      ) -> tuple[Tensor, Tensor, bool]:
        """``(inputs, labels, labels_random)`` for a key of ``root`` (its draws :func:`netmark.draws.draw`
        ``(root, k)``); inputs in ``model``'s input space."""

    def _create_key(self, model: nn.Module, *, root: KeyRoot, data: Dataset | None, payload: Tensor | None,
                    message: str | None) -> WatermarkKey:
        """Make the trigger set (``data``: the training set, for schemes that stamp or perturb its images)."""
        inputs, labels, rnd = self.make_triggers(model, root=root, data=data)
        inputs = inputs.float() if inputs.is_floating_point() else inputs.to(torch.int64)  # token ids stay integers
        return self.key_for(model, root=root, layer=None, message_random=rnd,
                            tensors={"inputs": inputs.contiguous(), "labels": labels.to(torch.int64)},
                            num_classes=_num_classes(model, inputs), input_shape=list(inputs.shape[1:]))

    def check_key_tensors(self, key: WatermarkKey) -> None:
        for t in ("inputs", "labels"):
            if t not in key.tensors:
                raise KeyFileError(f"{self.name} key lacks its {t!r} tensor")
        x, y = key.tensors["inputs"], key.tensors["labels"]
        tokens = not x.is_floating_point()  # token ids (N, L); images (N, C, H, W)
        if (x.ndim != (2 if tokens else 4) or (tokens and int(x.min()) < 0) or y.ndim != 1 or len(x) != len(y)
                or len(y) == 0 or y.is_floating_point()):
            raise KeyFileError(f"{self.name} key has malformed triggers: inputs {tuple(x.shape)}, "
                               f"labels {tuple(y.shape)}")
        c = key.config.get("num_classes")
        if isinstance(c, bool) or not isinstance(c, int) or c < 2 or int(y.min()) < 0 or int(y.max()) >= c:
            raise KeyFileError(f"{self.name} key has labels outside its {c!r} classes")
        if ("null_counts" in key.tensors) != ("null_rates" in key.tensors):
            raise KeyFileError(f"{self.name} key has half a null calibration")

    #: training with :meth:`hook` stops once the trigger accuracy reaches this (``None``: never early)
    key_target: float | None = None

    def hook(self, key: WatermarkKey) -> TriggerSetHook:
        return TriggerSetHook(key.tensors["inputs"], key.tensors["labels"], self.config.per_batch, key.key_root, 5,
                              target=self.key_target)

    def extract(self, model: nn.Module, key: WatermarkKey) -> Extraction:
        """The model's answers on the triggers (``bits``: labels; ``scores``: softmax of the key's label)."""
        _check_model(model, key)
        probs = torch.softmax(logits_of(model, key.tensors["inputs"]), 1)
        labels = key.tensors["labels"].to(torch.int64)
        pred = probs.argmax(1)
        return Extraction(bits=pred, scores=probs.gather(1, labels[:, None]).squeeze(1),
                          details={"trigger_accuracy": float((pred == labels).float().mean())})

    def verify(self, model: nn.Module, key: WatermarkKey, *, alpha: float = DEFAULT_ALPHA) -> VerificationResult:
        """White-box convenience: query ``model`` itself (same decision as :meth:`verify_query`)."""
        ex = self.extract(model, key)
        return trigger_result(ex.bits, key, method=self.name, alpha=alpha)

    def verify_query(self, predict: Predictor, key: WatermarkKey, *,
                     alpha: float = DEFAULT_ALPHA) -> VerificationResult:
        """Black-box: ask ``predict`` (a model's API) for the triggers' labels and decide."""
        labels = query(predict, key.tensors["inputs"], int(key.config["num_classes"]))
        return trigger_result(labels, key, method=self.name, alpha=alpha)

    def calibrate(self, key: WatermarkKey, models: Sequence[nn.Module | Predictor]) -> WatermarkKey:
        """A copy of ``key`` whose null is measured on ``models`` (≥ 2, trained without the key)."""
        if len(models) < 2:
            raise ConfigError("calibrating a trigger set's null needs at least 2 independent models")
        labels = key.tensors["labels"].to(torch.int64)
        c = int(key.config["num_classes"])
        hits = []
        for m in models:
            pred = query(model_predictor(m) if isinstance(m, nn.Module) else m, key.tensors["inputs"], c)
            hits.append((pred == labels).to(torch.int64))
        h = torch.stack(hits)
        null = {"null_counts": h.sum(1), "null_rates": ((h.sum(0) + 1).double() / (len(models) + 2))}
        return replace(key, tensors={**key.tensors, **null})

    def null_for_verifier(self, key: WatermarkKey, model: nn.Module, *,
                          null_models: Sequence[Any] | None = None) -> WatermarkKey:
        """Random labels: the exact binomial null. Labels that depend on the images: their null measured on
        ``null_models`` (the verifier's own reference models, trained without the key); without them the key
        cannot be decided (KeyFileError)."""
        out = without_null(key)
        if out.message_random:
            return out
        if not null_models:
            raise KeyFileError(f"{self.name}'s labels depend on the images, so their null is measured on models "
                               "trained without the key, and the verifier measures it: pass reference models "
                               "(null_models=, CLI --null-model)")
        return self.calibrate(out, null_models)

    def prepare(self, model: nn.Module, data: Dataset, train_config: TrainConfig | None, *,
                key: WatermarkKey | None, teacher: nn.Module | None, eval_data: Dataset | None,
                null_models: Sequence[Any] | None) -> EmbedPrep:
        """No distillation (the teacher's answers would replace the trigger labels); keep the model's architecture
        for the reference models of :meth:`finalize`."""
        if teacher is not None:
            raise ConfigError(f"{self.name}: distill-to-embed is not defined for a trigger set (the teacher's "
                              "answers would replace the trigger labels)")
        return EmbedPrep(train_config=train_config, unmarked=copy.deepcopy(model).cpu())

    def finalize(self, key: WatermarkKey, model: nn.Module, *, hook: TrainHook | None = None,
                 data: Dataset | None = None, train_config: TrainConfig | None = None, seed: int | None = None,
                 unmarked: nn.Module | None = None, null_models: Sequence[Any] | None = None) -> WatermarkKey:
        """The key with its null calibrated (:meth:`ensure_null`): on ``null_models`` if given, else, when its labels
        depend on the images, on ``config.null_models`` reference models of ``unmarked``'s architecture (default
        ``model``'s) trained here on ``data`` with ``train_config`` (seeds from ``seed``, default the key's)."""
        if (null_models is None and data is None and self.config.null_models > 0 and not key.message_random
                and "null_counts" not in key.tensors):
            raise ConfigError(f"{self.name}: this key's labels depend on the images, so its null must be calibrated: "
                              "pass null_models= (models trained without the key) or data= (and train_config=) to "
                              "train reference models")
        return self.ensure_null(key, template=unmarked if unmarked is not None else model, data=data,
                                train_config=train_config,
                                seed=seed if seed is not None else derived_seed(key.key_root, 0),
                                null_models=null_models)

    def ensure_null(self, key: WatermarkKey, *, template: nn.Module, data: Dataset | None,
                    train_config: TrainConfig | None, seed: int,
                    null_models: Sequence[nn.Module | Predictor] | None = None) -> WatermarkKey:
        """``key`` calibrated on ``null_models`` when given; else, when its labels are not random, on
        ``config.null_models`` reference models of ``template``'s architecture trained here on ``data`` with
        ``train_config`` (on the CPU; ``null_epochs`` overrides its epochs). A calibrated key is returned as is."""
        if "null_counts" in key.tensors:
            return key
        if null_models is None and self.config.null_models > 0 and not key.message_random and data is not None:
            cfg = replace(train_config or TrainConfig(), device="cpu")
            null_models = train_reference_models(template, data, cfg, self.config.null_models, seed=seed,
                                                 epochs=self.config.null_epochs)
        return self.calibrate(key, null_models) if null_models else key


def input_shape(model: nn.Module, data: Dataset | DataLoader | None) -> tuple[int, int, int]:
    """The model's input shape ``(C, H, W)``: from ``data`` when given, else from its registry arguments."""
    if data is not None:
        x = first_input(data)
        if x.ndim != 3:
            raise ConfigError(f"this trigger set takes images (C, H, W); the data's inputs have shape "
                              f"{tuple(x.shape)}")
        c, h, w = (int(s) for s in x.shape)
        return c, h, w
    from netmark.models import arch_of

    try:
        args = arch_of(model)["args"]
        return int(args["in_channels"]), int(args["image_size"]), int(args["image_size"])
    except (ArchitectureError, KeyError, TypeError, ValueError):
        raise ConfigError("cannot tell this model's input shape: pass data= to create_key") from None


def num_classes(model: nn.Module, shape: Sequence[int]) -> int:
    """How many classes ``model`` answers for inputs of ``shape`` (one probe forward)."""
    return _num_classes(model, torch.zeros(1, *[int(s) for s in shape]))


def _num_classes(model: nn.Module, inputs: Tensor) -> int:
    return int(_probe(model, inputs, "trigger inputs").shape[1])


def dataset_images(data: Dataset, n: int, root: KeyRoot, k: int = 0, *, exclude_label: int | None = None,
                   only_label: int | None = None) -> tuple[Tensor, Tensor]:
    """``n`` images (and labels) drawn without replacement from ``data`` (stream ``k`` of ``root``), optionally
    excluding or keeping only one class."""
    xs, ys = dataset_rows(data)
    keep = torch.ones(len(ys), dtype=torch.bool)
    if exclude_label is not None:
        keep &= ys != exclude_label
    if only_label is not None:
        keep &= ys == only_label
    idx = keep.nonzero().reshape(-1)
    if len(idx) < n:
        raise ConfigError(f"the data has only {len(idx)} suitable images for {n} triggers")
    pick = idx[draw(root, k).randperm(len(idx))[:n]]
    return xs[pick].clone(), ys[pick].clone()


def dataset_rows(data: Dataset, idx: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The images and int64 labels of ``data`` at ``idx`` (all when ``None``): sliced from in-memory ``x`` / ``y``
    tensors when present, else read item by item."""
    x, y = getattr(data, "x", None), getattr(data, "y", None)
    if isinstance(x, Tensor) and isinstance(y, Tensor):
        return (x, y.to(torch.int64)) if idx is None else (x[idx], y[idx].to(torch.int64))
    items = [data[int(i)] for i in (range(len(data)) if idx is None else idx)]  # type: ignore[arg-type]
    return torch.stack([a for a, _ in items]), torch.as_tensor([int(b) for _, b in items])
