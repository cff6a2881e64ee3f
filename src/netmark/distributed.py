"""Data-parallel embedding across processes: ``torchrun`` (gloo on CPU) for :func:`netmark.training.train`.

Usage (the same script on every rank, e.g. ``torchrun --nproc_per_node 2 embed.py``)::

    from netmark import distributed
    distributed.init_from_env()               # gloo process group from torchrun's variables (no-op without)
    model, key, run = method.embed(model, data, TrainConfig(...))   # same arguments on every rank (one key: rank 0's)
    if distributed.is_main():
        key.save("model.key")                 # write outputs once

Every :func:`~netmark.training.train` call made while a process group of ``W > 1`` ranks is initialised
is data-parallel; without one (or with ``W == 1``) nothing here runs and training is unchanged, bit for bit.

What a data-parallel run does (:class:`TrainSync`), and why it equals the single-process run:

* Rank 0's parameters and buffers (and the teacher's) are broadcast first, so every rank starts alike.
* Every rank walks the *same* seeded shuffle and calls the hooks' ``transform_batch`` on the *whole*
  global batch, so stateful transforms (a trigger set appending its next ``per_batch`` triggers) draw the
  same random numbers on every rank and the transformed global batch is identical everywhere. Only then is
  it split into ``W`` contiguous shards of equal size give or take one (:func:`shard_bounds`); rank ``r``
  runs the forward pass, the task loss and the hooks' ``extra_loss`` on its shard of ``n_r`` of ``N`` rows.
* Rank ``r`` weights its gradient by ``w_r = n_r / N`` and the weighted gradients are summed. A batch-mean
  term (cross-entropy, a distillation loss, a trigger sample's loss: the trigger rows are part of the
  sharded batch) then sums to the full batch's mean, ``Σ_r (n_r/N)·mean_r = mean``; a term that does not
  depend on the batch at all (Uchida's and Wang's weight regularisers, computed in full on every rank) sums
  to itself, ``Σ_r w_r·R(w) = R(w)`` because ``Σ_r w_r = 1``: it is counted once, with no need to tell the
  two kinds apart. A global batch smaller than ``W`` is not split: every rank takes all of it with
  ``w_r = 1/W`` (the same identity).
* The gradients that hooks compute themselves with ``torch.autograd.grad`` on the parameters inside
  ``extra_loss`` (Tartaglione's replica gradient, applied in ``after_step``) are reduced the same way,
  through tensor hooks on the parameters that are armed only while ``extra_loss`` runs.
* Reported terms and the loss are reduced with the same weights, train accuracy by summing counts, so the
  history holds global values; the divergence check is taken on the global loss, so every rank raises.
* ``after_step``, ``on_epoch_end`` and the evaluation run on every rank on identical weights and identical
  hook state, so they stay identical (Wang's extractor step and Tartaglione's weight locking included);
  early stopping is agreed on (any rank stops: all stop) so that no rank is left waiting.
* Up to float rounding (different summation order) the update equals the single-process one.

What is not equal to the single-process run, only equivalent in expectation:

* random layers: dropout masks of a shard cannot be the full batch's; each rank draws them from its own
  stream (seeded from the run's seed and the rank: identical streams would give every rank the same masks),
  swapped in for the forward/backward pass only, so that hooks keep one shared random state;
* BatchNorm normalises by its shard's statistics (as torch's ``DistributedDataParallel`` without
  ``SyncBatchNorm``); running means and variances are averaged with the shard weights after every step so
  that ranks stay identical (the running mean then tracks the global batch's exactly, the variance not);
* loss terms that are non-linear in the batch: DeepSigns' white-box cluster loss (class means of the batch's
  activations) and Tartaglione's ``replica_batch="split"`` (replica k takes the k-th slice of the batch's
  first ``replica_fraction``) are computed on each shard; they still embed and verify but do not reproduce
  the single-process weights (``replica_batch="full"`` does).

Why not ``torch.nn.parallel.DistributedDataParallel``: hooks address the model's own modules by name and
call it functionally (``functional_call``, forward hooks), which a wrapper would rename; DDP averages with
equal weights (uneven last batches need ``n_r/N``), reduces only what its own backward accumulates (not a
hook's ``torch.autograd.grad``) and expects one backward after every forward of the wrapper. The reducer
here is synchronous and small: per step one all-reduce of a few float64 statistics and one of the flattened
gradients (and BatchNorm statistics), plus one per parameter for gradients a hook computes itself.
Every rank holds the whole data set and walks it whole (only the model's work is split).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from netmark.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["TrainSync", "all_reduce_weighted_", "any_rank", "barrier", "broadcast_module", "check_same",
           "env_world_size", "init_from_env", "is_initialized", "is_main", "rank", "shard_bounds", "world_size"]


# ----------------------------------------------------------------------------- process group


def is_initialized() -> bool:
    """Whether a ``torch.distributed`` process group is initialised in this process."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank in the process group (0 without one)."""
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """The number of processes in the process group (1 without one)."""
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    """True on rank 0 (and without a process group): the process that writes outputs and logs."""
    return rank() == 0


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 when unset)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer") from None


def init_from_env(backend: str = "gloo", *, timeout_s: float | None = None) -> bool:
    """Initialise the process group from torchrun's variables (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
    ``MASTER_PORT``); ``gloo`` runs on the CPU.

    Returns whether a process group is now initialised: an existing one is kept, and without torchrun's
    variables (or with ``WORLD_SIZE=1``) nothing is done and ``False`` is returned.
    """
    if is_initialized():
        return True
    if env_world_size() <= 1:
        return False
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed")
    missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise ConfigError(f"WORLD_SIZE is set but {', '.join(missing)} is not: launch with torchrun")
    timeout = None if timeout_s is None else datetime.timedelta(seconds=timeout_s)
    dist.init_process_group(backend=backend, init_method="env://", timeout=timeout)
    log.info("process group initialised: rank %d of %d (%s)", rank(), world_size(), backend)
    return True


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if is_initialized():
        dist.barrier()


# ----------------------------------------------------------------------------- collectives


@torch.no_grad()
def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Overwrite ``module``'s parameters and buffers with rank ``src``'s (in place; no-op without a group)."""
    if world_size() <= 1:
        return
    for t in (*module.parameters(), *module.buffers()):
        dist.broadcast(t.data, src)


@torch.no_grad()
def all_reduce_weighted_(tensors: Sequence[Tensor], weight: float | None = None) -> None:
    """In place: every tensor becomes ``Σ_r weight_r · tensor_r`` over the ranks (one flat all-reduce per
    dtype). ``weight`` is this rank's; ``None`` means ``1/W`` (the mean). No-op without a process group."""
    W = world_size()
    if W <= 1 or not tensors:
        return
    w = 1.0 / W if weight is None else float(weight)
    groups: dict[tuple[torch.dtype, torch.device], list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault((t.dtype, t.device), []).append(i)
    for idx in groups.values():
        flat = torch.cat([tensors[i].reshape(-1) for i in idx]) * w
        dist.all_reduce(flat)
        offset = 0
        for i in idx:
            n = tensors[i].numel()
            tensors[i].copy_(flat[offset:offset + n].view_as(tensors[i]))
            offset += n


def _comm_device() -> torch.device:
    """Where small control tensors go: NCCL takes CUDA tensors only, gloo any (the CPU)."""
    if is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any (the flag itself without a process group)."""
    if world_size() <= 1:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def check_same(value: object, what: str) -> None:
    """ConfigError on every rank unless ``value`` (picklable, comparable) is equal on all of them: arguments
    that differ between ranks would otherwise leave the collectives waiting for each other."""
    if world_size() <= 1:
        return
    values: list[object] = [None] * world_size()
    dist.all_gather_object(values, value)
    if any(v != values[0] for v in values):
        raise ConfigError(f"data-parallel training needs the same {what} on every rank, got {values}")


def shard_bounds(n: int, world: int, r: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of rank ``r``'s shard when ``n`` rows are split into ``world`` contiguous
    shards whose sizes differ by at most one (the first ``n % world`` shards take the extra row)."""
    base, extra = divmod(n, world)
    start = r * base + min(r, extra)
    return start, start + base + (1 if r < extra else 0)


# ----------------------------------------------------------------------------- the training step


class _RankRNG:
    """A per-rank random stream for the model's own randomness (dropout), swapped into torch's global
    generator (CPU, and the CUDA device when training there) for the forward/backward pass only."""

    def __init__(self, seed: int, r: int, device: torch.device) -> None:
        s = (int(seed) * 1_000_003 + 7_919 * (r + 1)) % (2**63)
        self.cpu = torch.Generator().manual_seed(s).get_state()
        self.cuda: torch.device | None = None
        self.cuda_state: Tensor | None = None
        if device.type == "cuda":
            self.cuda = torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device())
            self.cuda_state = torch.Generator(device=self.cuda).manual_seed(s).get_state()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        saved = torch.get_rng_state()
        saved_cuda = torch.cuda.get_rng_state(self.cuda) if self.cuda is not None else None
        torch.set_rng_state(self.cpu)
        if self.cuda is not None and self.cuda_state is not None:
            torch.cuda.set_rng_state(self.cuda_state, self.cuda)
        try:
            yield
        finally:
            self.cpu = torch.get_rng_state()
            torch.set_rng_state(saved)
            if self.cuda is not None and saved_cuda is not None:
                self.cuda_state = torch.cuda.get_rng_state(self.cuda)
                torch.cuda.set_rng_state(saved_cuda, self.cuda)


class TrainSync:
    """The data-parallel side of one :func:`~netmark.training.train` run (see the module docstring).

    Per step: :meth:`shard` (after the hooks' ``transform_batch`` on the global batch), the forward pass,
    loss terms and backward inside :meth:`local`, then :meth:`reduce` before the optimizer step.
    """

    def __init__(self, model: nn.Module, trained: Sequence[Tensor], *, seed: int, device: torch.device,
                 teacher: nn.Module | None = None, checks: dict[str, object] | None = None) -> None:
        """Check that every rank runs the same configuration (``checks`` and the trained shapes), then
        broadcast rank 0's weights (and the teacher's)."""
        if world_size() <= 1:
            raise ConfigError("TrainSync needs an initialised process group of at least 2 ranks")
        self.rank, self.world = rank(), world_size()
        self.model, self.trained = model, list(trained)
        check_same({**(checks or {}), "trained_shapes": [tuple(p.shape) for p in self.trained]}, "training run")
        broadcast_module(model)
        if teacher is not None:
            broadcast_module(teacher)
        self.weight, self.whole = 1.0, False
        self.rng = _RankRNG(seed, self.rank, device)
        self._arm = False
        self._checked_terms = False
        self._handles: list[Any] = []
        self.stats = [b for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)
                      for b in (m.running_mean, m.running_var) if b is not None]
        if self.rank == 0:
            log.info("data-parallel training on %d ranks", self.world)

    def close(self) -> None:
        """Remove the gradient hooks from the parameters (call once training ends)."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def shard(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """This rank's rows of the global batch; sets :attr:`weight` (``n_r / N``, or ``1/W`` unsplit)."""
        if not self._handles:  # registered here, inside train()'s try/finally that calls close()
            self._handles = [p.register_hook(self._reduce_hook_grad) for p in self.model.parameters()
                             if p.requires_grad]
        n = len(y)
        self.whole = n < self.world
        if self.whole:
            self.weight = 1.0 / self.world
            return x, y
        start, stop = shard_bounds(n, self.world, self.rank)
        self.weight = (stop - start) / n
        return x[start:stop], y[start:stop]

    @contextlib.contextmanager
    def local(self, *, reduce_hook_grads: bool) -> Iterator[None]:
        """The shard's own computation: this rank's random stream; with ``reduce_hook_grads``, gradients
        that hooks take of the parameters (``torch.autograd.grad``) come back weighted and summed over ranks."""
        with self.rng.active():
            self._arm = reduce_hook_grads
            try:
                yield
            finally:
                self._arm = False

    def _reduce_hook_grad(self, grad: Tensor) -> Tensor | None:
        if not self._arm:
            return None
        g = grad * self.weight
        dist.all_reduce(g)
        return g

    @torch.no_grad()
    def reduce(self, loss: Tensor, terms: dict[str, Tensor], correct: int) -> tuple[float, dict[str, float], int]:
        """Global loss, terms and correct count of the step (same on every rank); when the loss is finite,
        also sums the weighted gradients of the trained parameters (and BatchNorm statistics) in place."""
        if not self._checked_terms:
            check_same(list(terms), "loss term names")
            self._checked_terms = True
        has = [p.grad is not None for p in self.trained]
        vals = [float(loss), *(float(t) for t in terms.values())]
        counted = correct / self.world if self.whole else float(correct)  # a whole batch is counted once
        vec = torch.tensor([v * self.weight for v in vals] + [counted] + [float(h) for h in has],
                           dtype=torch.float64, device=_comm_device())
        dist.all_reduce(vec)
        vec = vec.cpu()
        k = len(vals)
        g_loss, g_terms = float(vec[0]), dict(zip(terms, vec[1:k].tolist(), strict=True))
        g_correct = round(float(vec[k]))
        if not torch.isfinite(vec[:k]).all():
            return g_loss, g_terms, g_correct  # the caller raises on every rank; gradients are not needed
        grads = []
        for p, n_has in zip(self.trained, vec[k + 1:].tolist(), strict=True):
            if n_has > 0:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                grads.append(p.grad)
        all_reduce_weighted_(grads + self.stats, self.weight)
        return g_loss, g_terms, g_correct
