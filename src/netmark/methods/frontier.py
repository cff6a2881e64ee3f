"""Le Merrer, Pérez, Trédan 2019, "Adversarial frontier stitching for remote neural network watermarking".

Paper: Le Merrer, Pérez, Trédan, Neural Computing and Applications 32(13):9233-9244, 2020 (online 2019;
arXiv:1711.01894; surveyed in ``fkirin2022-comparative-study.txt``, §4). Threat model: the stolen model
is queried through a remote API only, possibly after fine-tuning, pruning or compression; a zero-bit
watermark must be read from a few queries.

Key (§3). Adversarial examples crafted with the fast gradient sign method on the *trained* model,
``x' = clip(x + eps·sign(∇ₓ loss(x, y)), 0, 1)``, from training images the model classifies correctly:
half are *true adversaries* (the model now misclassifies ``x'``), half *false adversaries* (still
classified correctly, close to the decision frontier). All keep their **true** label ``y``. Marking
fine-tunes the model on the training data together with the key until the key is classified correctly,
which "stitches" the frontier around the true adversaries while the false ones keep it from moving
elsewhere. netmark picks the candidate images in an order drawn from the key's seed and appends
``per_batch`` key samples to every fine-tuning batch (:mod:`netmark.methods.triggerset`).

Hyper-parameters and where they come from. The paper's text could not be retrieved here; its settings are
taken from re-implementations. Key size 100, half true and half false adversaries
(``dunky11/adversarial-frontier-stitching``, ``l = 100``; Watermark Robustness Toolbox,
``dnn-security/Watermark-Robustness-Toolbox``, ``keylength: 100``). The FGSM step: the toolbox's ImageNet config
(``configs/imagenet/wm_configs/frontier_stitching.yaml``) lists the paper's values as 0.025, 0.1 and 0.25 and
defaults to 0.25; dunky11's MNIST example uses 0.1, netmark's default. The step trades two failures: too large,
and almost every image is fooled, leaving too few false adversaries (digits 8×8 at 0.25: 25-101 of 1437 per
trained CNN, so the key cannot always be made); too small, and the true adversaries do not transfer, so
independent models agree with the key almost as well as the marked one (digits: independent models match
38-50 % of a 100-image key at 0.25, 50-59 % at 0.2, 53-69 % at 0.15, 64-80 % at 0.1, 76-92 % at 0.05).
On digits netmark's tests use 0.15. Fine-tuning is on "the concatenation of the training set and the true
and false adversaries using their original labels until the adversaries are correctly classified"
(dunky11's README); the toolbox fine-tunes at most 5 epochs with early stopping on the key accuracy.
netmark does both: it stops after the first epoch whose trigger accuracy reaches ``key_target`` [1.0], at most
``finetune_epochs`` [5] (check the trigger accuracy afterwards: a cap that is too small leaves it short). The paper
decides by allowing ``θ`` errors, ``θ`` from a Binomial(|K|, 1/2) null at 0.05 (dunky11's
``find_tolerance``); netmark does not use that null: independent models agree with true labels far more
often than the model-specific 1/2 assumed there (see Verification).

Embedding (:meth:`FrontierStitching.embed`), two cases:

* a fresh model (default, ``pretrained=False``): it is first trained plainly with ``train_config``
  (``train_config.epochs`` epochs), the key is crafted on it, then it is fine-tuned (at most ``finetune_epochs``
  more, see ``key_target``) with the key mixed in. The run history covers every epoch, plain ones first
  (numbered on; ``"finetune"`` is 0.0 or 1.0 in each entry).
* a trained model (``pretrained=True``, or a ``key`` passed in, which must have been crafted on it): no
  plain training; the key is crafted (or used) and the model fine-tuned as above.

Fine-tuning uses ``train_config`` with at most ``finetune_epochs`` epochs, no milestones and ``finetune_lr``
(``None``: the learning rate the schedule ends at, after its milestones).

Verification. Independent models classify most key images correctly (the false adversaries, and any true
adversary that does not transfer), far above 1/C: the key's null is calibrated on ``null_models`` reference
models trained plainly with ``train_config`` (``null_epochs`` overrides its epochs; set it to the
pretraining schedule's length when ``pretrained``), and the p-value comes from that measured null. An ownership claim
cannot bind such a key (:mod:`netmark.methods.ownership`, step ``binding``): its triggers are crafted on the model, and
a thief can craft FGSM steps of the same form that fit a stolen model.

Args (:class:`FrontierConfig`): ``size`` [100], ``per_batch`` [2], ``null_models`` [4], ``null_epochs``,
``eps`` [0.1], ``pretrained`` [False], ``finetune_epochs`` [5, a cap], ``key_target`` [1.0],
``finetune_lr`` [schedule's final rate].

Example::

    method = FrontierStitching(FrontierConfig(per_batch=16))
    model, key, run = method.embed(model, train_set, TrainConfig(epochs=20), seed=3)  # 20 plain + 5 marked
    method.verify_query(my_api, key).p_value
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from netmark._util import check_bool, check_finite, check_int, check_unit
from netmark.draws import KeyRoot, draw
from netmark.errors import ConfigError
from netmark.keys import WatermarkKey
from netmark.methods.base import register_method
from netmark.methods.phases import EmbedPrep
from netmark.methods.traits import MethodTraits
from netmark.methods.triggerset import TriggerSetConfig, TriggerSetMethod, dataset_rows
from netmark.training import TrainConfig, evaluating, model_device, train


@dataclass
class FrontierConfig(TriggerSetConfig):
    """Frontier-stitching options (see the module docstring for their sources).

    Args:
        eps: FGSM step on [0, 1] images [0.1; the paper used 0.025, 0.1 and 0.25, per the toolbox config cited above].
        pretrained: the model passed to :meth:`FrontierStitching.embed` is already trained: craft the key
            on it and only fine-tune [False: train it plainly first].
        finetune_epochs: at most this many epochs of fine-tuning with the key mixed in [5, the toolbox's cap].
        key_target: fine-tuning stops after the first epoch whose trigger accuracy reaches this [1.0: "until
            the adversaries are correctly classified"]; ``None``: always ``finetune_epochs``.
        finetune_lr: their learning rate (``None``: the rate the training schedule ends at).
    """

    eps: float = 0.1
    pretrained: bool = False
    finetune_epochs: int = 5
    key_target: float | None = 1.0
    finetune_lr: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_unit("eps", self.eps)
        check_bool("pretrained", self.pretrained)
        check_int("finetune_epochs", self.finetune_epochs, 1)
        check_unit("key_target", self.key_target, optional=True)
        if self.finetune_lr is not None:
            check_finite("finetune_lr", self.finetune_lr, positive=True)


def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
    """``clip(x + eps·sign(∇ₓ CE(model(x), y)), 0, 1)`` (no parameter gradients are accumulated)."""
    x = x.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, [x])
    return (x + eps * grad.sign()).clamp(0, 1).detach()


def frontier_adversaries(model: nn.Module, data: Dataset, n: int, eps: float, root: KeyRoot, *,
                         batch_size: int = 256) -> tuple[Tensor, Tensor, Tensor]:
    """``n`` FGSM examples of correctly classified training images, ``n // 2`` true adversaries (now
    misclassified) and ``n - n // 2`` false ones (still correct), visiting the images in an order drawn from
    ``root``: ``(inputs, true labels, is_true_adversary)``, true and false interleaved in an order drawn from it."""
    order = draw(root).randperm(len(data))  # type: ignore[arg-type]
    need = {True: n // 2, False: n - n // 2}
    got: dict[bool, list[Tensor]] = {True: [], False: []}
    labels: dict[bool, list[Tensor]] = {True: [], False: []}
    dev = model_device(model)
    with evaluating(model):
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            x, y = dataset_rows(data, idx)
            x, y = x.to(dev), y.to(dev)
            with torch.no_grad():
                ok = model(x).argmax(1) == y
            if not bool(ok.any()):
                continue
            x, y = x[ok], y[ok]
            adv = fgsm(model, x, y, eps)
            with torch.no_grad():
                fooled = model(adv).argmax(1) != y
            for kind in (True, False):
                sel = (fooled == kind).nonzero().reshape(-1)[:need[kind] - sum(len(t) for t in got[kind])]
                got[kind].append(adv[sel].cpu())
                labels[kind].append(y[sel].cpu())
            if all(sum(len(t) for t in got[k]) >= need[k] for k in (True, False)):
                break
    counts = {k: sum(len(t) for t in got[k]) for k in (True, False)}
    if counts[True] < need[True] or counts[False] < need[False]:
        raise ConfigError(f"frontier-stitching found only {counts[True]} true and {counts[False]} false adversaries "
                          f"(needs {need[True]} and {need[False]}) at eps={eps}: use a trained model, more data, "
                          f"{'a larger' if counts[True] < need[True] else 'a smaller'} eps or a smaller size")
    x = torch.cat(got[True] + got[False])
    y = torch.cat(labels[True] + labels[False])
    flag = torch.cat([torch.ones(need[True], dtype=torch.bool), torch.zeros(need[False], dtype=torch.bool)])
    mix = draw(root, 1).randperm(n)
    return x[mix], y[mix], flag[mix]


@register_method
class FrontierStitching(TriggerSetMethod):
    """Le Merrer et al. frontier stitching: FGSM true/false adversaries with their true labels."""

    name = "frontier-stitching"
    config_cls = FrontierConfig
    #: the key must be crafted on a trained model (:meth:`create_key` on a fresh one finds no false adversaries)
    TRAITS = MethodTraits(payload="labels", query_verifiable=True, needs_data=True, needs_trained_model=True)
    REDERIVABLE = False  # FGSM on the model as it was when marked: no later model re-derives it

    def check_crafted(self, key: WatermarkKey, data: Dataset | None) -> str | None:
        """Each trigger must be one FGSM step of a training image (every pixel moved by exactly ``eps`` unless
        clipped at 0 or 1) labelled with that image's label: what a forger cannot fake by relabelling triggers with
        the stolen model's answers (a true adversary's answer is not its label) or by taking clean images."""
        if data is None:
            return "frontier stitching crafts its key from training images: give them (--dataset)"
        xs, ys = dataset_rows(data)
        xs = xs.float().reshape(len(xs), -1)
        eps = float(self.config.eps)
        for x, y in zip(key.tensors["inputs"].float().reshape(len(key.tensors["inputs"]), -1),
                        key.tensors["labels"].to(torch.int64), strict=True):
            diff = (x - xs).abs()
            clipped = (x == 0) | (x == 1)
            step = ((diff - eps).abs() <= 1e-5) | ((diff <= eps + 1e-5) & clipped)
            src = (step.all(1) & (ys == y)).nonzero()
            if len(src) == 0:
                return "a trigger is not an FGSM step of a committed training image with that image's label"
        return None
    paper = ("Le Merrer, Pérez, Trédan: Adversarial frontier stitching for remote neural network watermarking, "
             "Neural Computing and Applications 32(13), 2020")
    config: FrontierConfig

    @classmethod
    def example_config(cls) -> FrontierConfig:
        # 12 plain epochs, then the key crafted (FGSM ε 0.15: independent models agree on 53-70%) and 8 fine-tuning
        return FrontierConfig(per_batch=16, finetune_epochs=8, eps=0.15, null_models=2)

    def embed_advice(self, *, at_chance: bool) -> str:
        if at_chance:
            return super().embed_advice(at_chance=True)
        return (f"Fine-tune longer with the key (--method-arg finetune_epochs=N, now {self.config.finetune_epochs}) or "
                f"mix more key images into each batch (--method-arg per_batch=N, now {self.config.per_batch}).")

    def make_triggers(self, model: nn.Module, *, root: KeyRoot, data: Dataset | None) -> tuple[Tensor, Tensor, bool]:
        """The key of ``root``, crafted on ``model`` as it is now (it should be trained)."""
        if data is None:
            raise ConfigError(f"{self.name} crafts its key from training images: pass data=")
        x, y, _ = frontier_adversaries(model, data, self.config.size, float(self.config.eps), root)
        return x, y, False

    @property
    def key_target(self) -> float | None:  # type: ignore[override]
        """The fine-tuning (the only training with this hook) stops once the key's accuracy reaches it."""
        return self.config.key_target

    def finetune_config(self, train_config: TrainConfig | None) -> TrainConfig:
        """``train_config`` for the fine-tuning phase: ``finetune_epochs``, no milestones, ``finetune_lr`` or
        the rate the schedule ends at."""
        cfg = train_config or TrainConfig()
        lr = self.config.finetune_lr
        if lr is None:
            lr = cfg.lr * cfg.gamma ** sum(1 for m in cfg.milestones if m <= cfg.epochs)
        return replace(cfg, epochs=self.config.finetune_epochs, milestones=(), lr=float(lr), seed=cfg.seed + 1)

    def prepare(self, model: nn.Module, data: Dataset, train_config: TrainConfig | None, *,
                key: WatermarkKey | None, teacher: nn.Module | None, eval_data: Dataset | None,
                null_models: Sequence[Any] | None) -> EmbedPrep:
        """Train plainly (a fresh model without a key only): the key is then crafted on the trained model and the
        hooked training is the fine-tuning (:meth:`finetune_config`); the reference models of :meth:`finalize` train
        plainly on the whole schedule, from the architecture as it was before (see the module docstring)."""
        # no distillation; the copy of the model from before any training is re-initialised per reference model
        prep = super().prepare(model, data, train_config, key=key, teacher=teacher, eval_data=eval_data,
                               null_models=null_models)
        cfg = train_config or TrainConfig()
        prep.train_config, prep.phases = self.finetune_config(cfg), []
        if key is None and not self.config.pretrained:
            pre = train(model, data, cfg, eval_data=eval_data)
            prep.phases, prep.seconds = [{**h, "finetune": 0.0} for h in pre.history], pre.seconds
        return prep

