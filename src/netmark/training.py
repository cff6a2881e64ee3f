"""The one training loop every method, attack and experiment uses.

* optimizers: SGD (momentum, Nesterov), Adam, Adagrad, Adamax, NAdam, RMSprop;
* step schedules (``milestones`` + ``gamma``, e.g. Uchida's ×0.2 at epochs 60/120/160);
* weight decay, seeded and deterministic shuffling (a local ``torch.Generator``; torch's
  global RNG is forked, so dropout/initialisation never disturb the caller's state);
* a tqdm progress bar (off with ``progress=False`` or when stderr is not a terminal);
* :class:`TrainHook` s through which a watermarking method adds a loss term, rewrites a
  batch (trigger sets, input transforms) or acts after an optimizer step (weight locking).

Using a method from your own loop instead: every hook is a plain object; call
``hook.on_train_start(model)`` once, ``x, y = hook.transform_batch(x, y)`` per batch, add
``sum(hook.extra_loss(model, x, y, logits).values())`` to your loss, and call
``hook.after_step(model)`` after ``optimizer.step()`` (see README, "Your own training loop").

Data-parallel: called while a ``torch.distributed`` process group of several ranks is initialised
(``torchrun`` + :func:`netmark.distributed.init_from_env`), :func:`train` splits each global batch over the
ranks and sums shard-weighted gradients, so that every rank ends with the single-process weights up to float
rounding; see :mod:`netmark.distributed` for the design and its limits (dropout, BatchNorm, batch-non-linear
loss terms).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeAlias, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from netmark import distributed
from netmark._util import generator, seeded
from netmark.errors import ConfigError

log = logging.getLogger(__name__)

OptimizerName = Literal["sgd", "adam", "adagrad", "adamax", "nadam", "rmsprop"]
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "adagrad", "adamax", "nadam", "rmsprop")
#: The training loop's behaviour version, part of every cached study run's key (with the TrainConfig): bump it when
#: :func:`train` gives other weights for the same model, data, config and hooks (batch order, step, loss, schedule).
#: Moving or renaming code does not need a bump.
TRAINING_VERSION = 1


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (validated on construction).

    Args:
        epochs: passes over the training data.
        batch_size: minibatch size.
        optimizer: one of ``sgd``, ``adam``, ``adagrad``, ``adamax``, ``nadam``, ``rmsprop``.
        lr: initial learning rate (finite, > 0).
        momentum: SGD / RMSprop momentum, in [0, 1).
        nesterov: Nesterov momentum (SGD only).
        weight_decay: L2 penalty passed to the optimizer.
        milestones: epochs after which the learning rate is multiplied by ``gamma``.
        gamma: learning-rate factor at each milestone.
        seed: seeds shuffling, dropout and anything else random in the run.
        progress: show a progress bar on a terminal.
        device: torch device string.
        clip_grad_norm: rescale the gradient to at most this global L2 norm before each step
            (``torch.nn.utils.clip_grad_norm_``); ``None``: no clipping.
    """

    epochs: int = 10
    batch_size: int = 64
    optimizer: OptimizerName = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    seed: int = 0
    progress: bool = True
    device: str = "cpu"
    clip_grad_norm: float | None = None

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if int(self.epochs) != self.epochs or self.epochs < 0:
            raise ConfigError(f"epochs must be a non-negative integer, got {self.epochs!r}")
        if int(self.batch_size) != self.batch_size or self.batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        for name in ("lr", "momentum", "weight_decay", "gamma"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise ConfigError(f"{name} must be a finite non-negative number, got {v!r}")
        if self.lr == 0:
            raise ConfigError("lr must be > 0")
        if self.momentum >= 1:  # the update grows without bound: a useless model, not an error, without this check
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if self.gamma == 0:
            raise ConfigError("gamma must be > 0 (the learning rate would drop to 0 at the first milestone)")
        if self.device != "cpu":
            check_device(self.device)
        if self.clip_grad_norm is not None and not (math.isfinite(self.clip_grad_norm) and self.clip_grad_norm > 0):
            raise ConfigError(f"clip_grad_norm must be a positive number or None, got {self.clip_grad_norm!r}")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ConfigError("nesterov=True needs optimizer='sgd' and momentum > 0")
        self.milestones = tuple(sorted(int(m) for m in self.milestones))
        if any(m < 1 for m in self.milestones):
            raise ConfigError(f"milestones must be positive epochs, got {self.milestones}")

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d


class TrainHook:
    """Extension points of :func:`train`; every method is a subclass (all methods optional).

    The hook owns any state it needs (a key, an extractor network, a weight mask).
    """

    def on_train_start(self, model: nn.Module) -> None:
        """Called once before the first batch (register forward hooks, snapshot weights...)."""

    def transform_batch(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Rewrite a training batch (mix in trigger samples, apply a secret input transform)."""
        return x, y

    def extra_loss(self, model: nn.Module, x: Tensor, y: Tensor, logits: Tensor) -> dict[str, Tensor]:
        """Named loss terms added to the task loss (already weighted)."""
        return {}

    def after_step(self, model: nn.Module) -> None:
        """Called after each ``optimizer.step()`` (weight locking, projection...)."""

    def on_epoch_end(self, model: nn.Module, epoch: int, metrics: dict[str, float]) -> None:
        """Called after each epoch; may add entries to ``metrics``."""

    def stop_training(self) -> bool:
        """Asked after each epoch's :meth:`on_epoch_end`: ``True`` ends training there (early stopping)."""
        return False

    def on_train_end(self, model: nn.Module) -> None:
        """Called once after training (remove forward hooks...)."""


@dataclass
class TrainResult:
    """Per-epoch history of a run plus the final evaluation."""

    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


def make_optimizer(params: Iterable[Tensor], cfg: TrainConfig) -> torch.optim.Optimizer:
    """Build the optimizer named in ``cfg``."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    cls = {"adam": torch.optim.Adam, "adagrad": torch.optim.Adagrad, "adamax": torch.optim.Adamax,
           "nadam": torch.optim.NAdam}[cfg.optimizer]
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


#: a batch of inputs: a tensor, or keyword inputs (``input_ids``, ``attention_mask``, ...) of a Hugging Face model
Inputs: TypeAlias = Tensor | Mapping[str, Tensor]
#: label keys of a dict batch (Hugging Face datasets and collators)
LABEL_KEYS = ("labels", "label")


def logits_of(out: Any) -> Tensor:
    """The class scores of a model's output: a tensor itself, a ``ModelOutput``'s ``logits``, a tuple's first
    element."""
    if isinstance(out, Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(out, tuple | list) and out and isinstance(out[0], Tensor):
        return out[0]
    raise ConfigError(f"the model returned a {type(out).__name__}: expected logits (a tensor, a tuple starting with "
                      "one, or an output with .logits)")


def forward(model: nn.Module, x: Inputs) -> Tensor:
    """``model``'s logits for inputs ``x`` (keyword inputs are passed as keywords: ``model(**x)``)."""
    return logits_of(model(**x) if isinstance(x, Mapping) else model(x))


def to_device(x: Inputs, device: torch.device | str) -> Inputs:
    """Inputs on ``device`` (each value of keyword inputs)."""
    return {k: v.to(device) for k, v in x.items()} if isinstance(x, Mapping) else x.to(device)


def split_batch(batch: Any) -> tuple[Inputs, Tensor]:
    """``(inputs, labels)`` of a collated batch: an ``(x, y)`` pair, or a dict with ``labels`` (or ``label``)."""
    if isinstance(batch, Mapping):
        key = next((k for k in LABEL_KEYS if k in batch), None)
        if key is None:
            raise ConfigError(f"a dict batch needs one of {', '.join(LABEL_KEYS)}; it has {', '.join(batch)}")
        return {k: v for k, v in batch.items() if k != key}, batch[key]
    if isinstance(batch, tuple | list) and len(batch) == 2:
        return batch[0], batch[1]
    raise ConfigError(f"a batch must be an (inputs, labels) pair or a dict with labels, got {type(batch).__name__}")


def n_samples(data: Dataset | DataLoader) -> int:
    """Examples in ``data`` (a DataLoader's dataset's)."""
    return len(cast(Sized, data.dataset if isinstance(data, DataLoader) else data))


def iter_batches(data: Dataset | DataLoader, batch_size: int, *, shuffle: bool = False,
                 gen: torch.Generator | None = None) -> Iterator[tuple[Any, Tensor]]:
    """Minibatches ``(inputs, labels)`` of ``data`` (:func:`split_batch`); a ``DataLoader`` is iterated as it is
    (its own batch size and order); in-memory datasets (tensor attributes ``x``/``y``) are sliced directly, which
    is several times faster than per-sample collation on a CPU."""
    if isinstance(data, DataLoader):
        yield from (split_batch(b) for b in data)
        return
    x_all, y_all = getattr(data, "x", None), getattr(data, "y", None)
    if isinstance(x_all, Tensor) and isinstance(y_all, Tensor) and len(x_all) == len(y_all) == len(cast(Sized, data)):
        n = len(x_all)
        order = torch.randperm(n, generator=gen) if shuffle else None
        for i in range(0, n, batch_size):
            if order is None:
                yield x_all[i : i + batch_size], y_all[i : i + batch_size]
            else:
                idx = order[i : i + batch_size]
                yield x_all[idx], y_all[idx]
        return
    yield from (split_batch(b) for b in DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=gen))


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: Tensor, y: Tensor,
               hooks: Sequence[TrainHook] = ()) -> Tensor:
    """One single-process step as :func:`train` takes it (hooks' batch transform, task loss plus their terms,
    optimizer step, ``after_step``; no teacher, no clipping): what step-cost measurements time. Returns the loss."""
    for h in hooks:
        x, y = h.transform_batch(x, y)
    _, _, loss = loss_terms(model, x, y, hooks)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    for h in hooks:
        h.after_step(model)
    return loss.detach()


def loss_terms(model: nn.Module, x: Tensor, y: Tensor, hooks: Sequence[TrainHook], teacher: nn.Module | None = None,
               ) -> tuple[Tensor, dict[str, Tensor], Tensor]:
    """``(logits, terms, loss)`` of one batch: the task loss (cross-entropy with ``y``, or with ``teacher``'s softmax)
    and the hooks' terms by name, and their sum."""
    logits = forward(model, x)
    if teacher is not None:
        with torch.no_grad():
            soft = F.softmax(forward(teacher, x), dim=1)
        task = F.cross_entropy(logits, soft)
    else:
        task = F.cross_entropy(logits, y)
    terms: dict[str, Tensor] = {"task_loss": task}
    for h in hooks:
        terms.update(h.extra_loss(model, x, y, logits))
    return logits, terms, torch.stack([t.reshape(()) for t in terms.values()]).sum()


def epoch_line(metrics: dict[str, float], epochs: int) -> str:
    """``epoch 3/10: loss 0.4120, train acc 0.8812, test acc 0.8700, lr 0.01 (1.2 s)``: the line logged (INFO,
    logger ``netmark.training``) after each epoch; ``netmark -v`` shows it on stderr."""
    parts = [f"loss {metrics['loss']:.4f}"] if "loss" in metrics else []
    for key, label in (("train_accuracy", "train acc"), ("test_accuracy", "test acc")):
        if key in metrics:
            parts.append(f"{label} {metrics[key]:.4f}")
    extra = [f"{k} {v:.4g}" if isinstance(v, int | float) else f"{k} {v}" for k, v in metrics.items()
             if k not in ("epoch", "loss", "train_accuracy", "test_accuracy", "test_loss", "seconds", "lr")
             and not (k == "task_loss" and v == metrics.get("loss"))]  # the loss itself when nothing is added
    parts += [*extra, f"lr {metrics.get('lr', float('nan')):.4g}"]
    return f"epoch {int(metrics.get('epoch', 0))}/{epochs}: {', '.join(parts)} ({metrics.get('seconds', 0.0):.1f} s)"


def check_device(device: str) -> None:
    """ConfigError unless ``device`` names a torch device that this machine has."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise ConfigError(f"unknown device {device!r} (cpu, cuda, cuda:1, mps, ...)") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: this torch build or machine has no CUDA GPU")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r}: MPS is not available here")


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode for the block; its train/eval mode is restored after (also on an exception)."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


def reinitialised(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every submodule's ``reset_parameters`` called (torch's global RNG: seed it
    around the call)."""
    new = copy.deepcopy(model)
    for m in new.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()
    return new


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter or buffer (CPU for a model with neither)."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset | DataLoader, *, batch_size: int = 512,
             device: str | torch.device | None = None,
             transform: Callable[[Tensor], Tensor] | None = None) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` on ``data`` (eval mode, restored after).

    Batches go to ``device`` (default: the model's); ``transform`` must live there too."""
    device = model_device(model) if device is None else device
    total, correct, loss_sum = 0, 0, 0.0
    with evaluating(model):
        for x, y in iter_batches(data, batch_size):
            x, y = to_device(x, device), y.to(device)
            if transform is not None:
                x = transform(x)  # type: ignore[arg-type]  # transforms act on image tensors
            logits = forward(model, x)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            total += len(y)
    if total == 0:
        return {"accuracy": float("nan"), "loss": float("nan")}
    return {"accuracy": correct / total, "loss": loss_sum / total}


def train(model: nn.Module, data: Dataset | DataLoader, config: TrainConfig | None = None, *,
          hooks: Sequence[TrainHook] = (), eval_data: Dataset | DataLoader | None = None,
          teacher: nn.Module | None = None, params: Sequence[Tensor] | None = None) -> TrainResult:
    """Train ``model`` in place on ``data`` and return its per-epoch history.

    Args:
        model: the network (modified in place, left in eval mode).
        data: a map-style dataset of ``(x, y)`` pairs (or of dicts with ``labels``: keyword inputs of a Hugging Face
            model), or a ``DataLoader`` of such batches (iterated as it is). Outputs may be tensors, tuples or
            ``ModelOutput`` s (:func:`logits_of`).
        config: hyper-parameters (defaults: :class:`TrainConfig`).
        hooks: method hooks (loss terms, batch transforms, post-step actions).
        eval_data: evaluated after each epoch (``test_accuracy`` in the history).
        teacher: distillation (Uchida §2.2 distill-to-embed): labels are ignored and the
            teacher's softmax predictions are the (soft) targets.
        params: train only these parameters (default: all of ``model``).

    Under a process group of ``W > 1`` ranks (call it with the same arguments on every rank): rank 0's weights
    are broadcast, every rank transforms the whole global batch with the hooks (same random draws everywhere)
    and computes the loss on its shard of it, gradients are summed with weights ``shard size / batch size``
    (batch-mean terms then add up to the full batch's, batch-independent ones to themselves), hooks'
    ``after_step`` and ``on_epoch_end`` run on every rank on identical weights, and the history holds global
    values (:mod:`netmark.distributed`).
    """
    cfg = config or TrainConfig()
    device = torch.device(cfg.device)
    model.to(device)
    if teacher is not None:
        teacher.to(device).eval()
    trained = list(params) if params is not None else list(model.parameters())
    opt = make_optimizer(trained, cfg)
    sched = (torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.milestones), gamma=cfg.gamma)
             if cfg.milestones else None)
    gen = generator(cfg.seed)
    sync = None
    if distributed.world_size() > 1:
        same = {"config": {k: v for k, v in cfg.to_dict().items() if k not in ("progress", "device")},
                "samples": n_samples(data), "hooks": [type(h).__name__ for h in hooks],
                "teacher": teacher is not None}
        sync = distributed.TrainSync(model, trained, seed=cfg.seed, device=device, teacher=teacher, checks=same)
    elif distributed.env_world_size() > 1:
        log.warning("WORLD_SIZE=%d but no process group is initialised: this rank trains alone on every batch "
                    "(call netmark.distributed.init_from_env() first)", distributed.env_world_size())
    result = TrainResult()
    start = time.perf_counter()
    bar = None
    if cfg.progress and sys.stderr.isatty() and distributed.is_main():
        from tqdm.auto import tqdm

        batches = len(data) if isinstance(data, DataLoader) else math.ceil(n_samples(data) / cfg.batch_size)
        bar = tqdm(total=cfg.epochs * batches, unit="batch", leave=False, dynamic_ncols=True)
    with seeded(cfg.seed):
        for h in hooks:
            h.on_train_start(model)
        try:
            for epoch in range(1, cfg.epochs + 1):
                model.train()
                sums: dict[str, float] = {}
                n_seen, n_correct = 0, 0
                t0 = time.perf_counter()
                for x, y in iter_batches(data, cfg.batch_size, shuffle=True, gen=gen):
                    x, y = to_device(x, device), y.to(device)
                    for h in hooks:  # hooks that rewrite batches (trigger sets, input transforms) take tensors
                        x, y = h.transform_batch(cast(Tensor, x), y)
                    bs = len(y)  # the global batch (all ranks together)
                    if sync is not None:
                        x, y = sync.shard(x, y)
                    with sync.local(reduce_hook_grads=True) if sync is not None else contextlib.nullcontext():
                        logits, terms, loss = loss_terms(model, x, y, hooks, teacher)
                    correct = int((logits.detach().argmax(1) == y).sum()) if teacher is None else 0
                    if sync is not None:  # backward on the shard, then global values and summed gradients
                        opt.zero_grad(set_to_none=True)
                        with sync.local(reduce_hook_grads=False):
                            loss.backward()
                        loss_v, term_v, correct = sync.reduce(loss.detach(), {k: v.detach() for k, v in terms.items()},
                                                              correct)
                    else:
                        loss_v, term_v = float(loss.detach()), {k: float(v.detach()) for k, v in terms.items()}
                    if not math.isfinite(loss_v):
                        raise ConfigError(f"training diverged at epoch {epoch} (loss {loss_v}); "
                                          "lower the learning rate")
                    if sync is None:
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                    if cfg.clip_grad_norm is not None:
                        torch.nn.utils.clip_grad_norm_(trained, cfg.clip_grad_norm)
                    opt.step()
                    for h in hooks:
                        h.after_step(model)
                    n_seen += bs
                    n_correct += correct
                    sums["loss"] = sums.get("loss", 0.0) + loss_v * bs
                    for k, v in term_v.items():
                        sums[k] = sums.get(k, 0.0) + v * bs
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(epoch=epoch, loss=f"{loss_v:.3f}")
                metrics = {k: v / max(n_seen, 1) for k, v in sums.items()}
                metrics["epoch"] = float(epoch)
                metrics["lr"] = float(opt.param_groups[0]["lr"])  # the rate this epoch used
                if sched is not None:
                    sched.step()
                if teacher is None:
                    metrics["train_accuracy"] = n_correct / max(n_seen, 1)
                metrics["seconds"] = time.perf_counter() - t0
                if eval_data is not None:
                    ev = evaluate(model, eval_data, device=cfg.device)
                    metrics["test_accuracy"] = ev["accuracy"]
                    metrics["test_loss"] = ev["loss"]
                for h in hooks:
                    h.on_epoch_end(model, epoch, metrics)
                result.history.append(metrics)
                if distributed.is_main():
                    log.info("%s", epoch_line(metrics, cfg.epochs))
                stop = any(h.stop_training() for h in hooks)
                if sync is not None:
                    stop = distributed.any_rank(stop)  # every rank leaves the loop together
                if stop:
                    log.info("stopped after epoch %d by a hook", epoch)
                    break
        finally:
            for h in hooks:
                h.on_train_end(model)
            if sync is not None:
                sync.close()
            if bar is not None:
                bar.close()
    model.eval()
    result.seconds = time.perf_counter() - start
    return result
