"""Data-parallel embedding (:mod:`netmark.distributed`): 2 gloo ranks on the CPU under ``torchrun``.

One ``torchrun --nproc_per_node 2`` launch runs this file as a script (:func:`_worker`): each rank
initialises the process group from torchrun's variables and embeds every case of :data:`CASES` with its full
schedule; the cases that must reproduce one process and train longer than :data:`SHORT_EPOCHS` epochs are
also run for their first :data:`SHORT_EPOCHS` epochs alone. Weights, verification and history are saved.
The tests check that both ranks hold identical weights, that the watermark verifies, and that the (short)
runs' weights and metrics equal the single-process run (here, without a process group) up to float rounding.

Why a short run for the comparison: these tiny from-scratch runs are chaotic after a few epochs (a 1e-8
change of the initial weights grows to 1e-2 within 10 epochs of ``adi`` on one process), so float rounding
(which differs between a batch and its shards) cannot be compared over a long schedule; over 2 epochs
(12 steps) a 1e-8 change stays below 1e-7.

Cases whose loss is non-linear in the batch (DeepSigns' white-box cluster loss, Tartaglione's split
replicas), whose key is selected by thresholds on model outputs (DeepSigns' black-box keys: a 1e-7 difference can
keep another key) or whose model has BatchNorm or dropout are equivalent only in expectation (see
:mod:`netmark.distributed`): for them ranks must agree and the watermark must verify.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import torch

from netmark import distributed
from netmark._util import seeded
from netmark.data import ArrayDataset, load
from netmark.draws import new_root
from netmark.methods import METHODS, MethodConfig, get_method, verify
from netmark.methods.examples import example
from netmark.models import build
from netmark.training import TrainConfig, train

TRAIN = TrainConfig(epochs=2, lr=0.1, batch_size=63, seed=3, progress=False)  # SGD, momentum 0.9
SHORT_EPOCHS = 2
ATOL = 1e-5


def _epochs(n: int) -> TrainConfig:
    return replace(TRAIN, epochs=n)


@dataclass(frozen=True)
class Case:
    """One embedding (``method`` ``None``: plain training). ``exact``: its short run on 2 ranks must match one
    process to :data:`ATOL`; otherwise the ranks must only agree (and the watermark verify)."""

    method: str | None
    config: MethodConfig | None
    train: TrainConfig = field(default_factory=lambda: TRAIN)
    rows: int = 320  # of digits' training split; 320 = 5·63 + 5: an uneven last batch (shards of 3 and 2)
    model: str = "simple-cnn"
    exact: bool = True
    teacher: bool = False  # distill-to-embed from an (untrained) teacher of another seed


#: the methods' example configs (netmark.methods.examples), made smaller or stronger for these 320-row runs of a few
#: epochs: the differences are the replace(...) of each case
#: Uchida: 32 bits at a 10x regularizer weight (a batch-independent term)
UCHIDA = replace(example("uchida"), bits=32, strength=0.1)
#: image-dependent trigger sets: 16 triggers, 12 appended to every batch; 2 reference models (trained data-parallel
#: too, 3 epochs each) calibrate the null
ZHANG = {"size": 16, "per_batch": 12, "null_epochs": 3}
#: Tartaglione: 100 values, 10x gamma (few epochs)
TARTAGLIONE = replace(example("tartaglione"), size=100, gamma=1e-3)

CASES: dict[str, Case] = {
    # 316 = 5·63 + 1: the last batch (1 row) is smaller than the world, so both ranks take it whole
    "plain": Case(None, None, rows=316),
    "uchida": Case("uchida", UCHIDA),
    "uchida-distill": Case("uchida", UCHIDA, teacher=True),
    "adi": Case("adi", replace(example("adi"), size=16, per_batch=12), _epochs(10)),  # 12 triggers in every batch
    # replica gradients taken with torch.autograd.grad in extra_loss and applied in after_step (full batches)
    "tartaglione": Case("tartaglione", replace(TARTAGLIONE, replica_batch="full")),
    # a weight regulariser plus an extractor network trained in after_step: 32 bits, 256 null samples, 10x
    # strength and extractor learning rate (5 epochs)
    "wang": Case("wang", replace(example("wang"), bits=32, null_samples=256, strength=0.5, extractor_lr=1e-2),
                 _epochs(5)),
    "zhang-content": Case("zhang-content", replace(example("zhang-content"), **ZHANG), _epochs(8)),
    "zhang-noise": Case("zhang-noise", replace(example("zhang-noise"), **ZHANG), _epochs(8)),
    "zhang-unrelated": Case("zhang-unrelated", replace(example("zhang-unrelated"), **ZHANG), _epochs(8)),
    # plain epochs, FGSM adversaries crafted from the trained model (on every rank alike), then fine-tuning
    # (ε 0.25, 32 adversaries: at ε 0.15 independent models of this small run agree with every key label)
    "frontier-stitching": Case("frontier-stitching", replace(example("frontier-stitching"), size=32, per_batch=12,
                                                             eps=0.25), _epochs(6), rows=640),
    # 16 keys kept
    "deepsigns-black": Case("deepsigns", replace(example("deepsigns", "black"), size=16), _epochs(8), rows=640,
                            exact=False),
    "tartaglione-split": Case("tartaglione", TARTAGLIONE, exact=False),
    # 16 key images per target class, 4 appended to every batch
    "deepsigns-white": Case("deepsigns", replace(example("deepsigns"), key_images=16, per_batch=4), exact=False),
    "plain-batchnorm": Case(None, None, model="resnet", exact=False),
    "plain-dropout": Case(None, None, model="dropout", exact=False),
}
#: a registered method without a case above runs its example config as it is (a new method needs no entry here)
CASES.update({n: Case(n, example(n)) for n in sorted(METHODS) if n not in {c.method for c in CASES.values()}})
EXACT = [n for n, c in CASES.items() if c.exact]
#: exact cases whose schedule is longer than SHORT_EPOCHS: their comparison needs a separate short run
SHORT = [n for n in EXACT if CASES[n].train.epochs > SHORT_EPOCHS]


def _data(rows: int) -> ArrayDataset:
    return load("digits", "train").subset(list(range(rows)))


def _model(name: str, seed: int = 0) -> torch.nn.Module:
    with seeded(seed):
        if name == "resnet":
            return build("resnet", in_channels=1, image_size=8, num_classes=10, depth=8)
        dropout = 0.5 if name == "dropout" else 0.0  # dropout masks of a shard cannot be the full batch's
        return build("simple-cnn", in_channels=1, image_size=8, num_classes=10, dropout=dropout)


def run_case(name: str, *, short: bool = False) -> dict[str, Any]:
    """Embed case ``name`` (data-parallel when a process group is initialised) and return its results;
    ``short``: only the first :data:`SHORT_EPOCHS` epochs."""
    case = CASES[name]
    cfg = replace(case.train, epochs=SHORT_EPOCHS) if short else case.train
    data, model = _data(case.rows), _model(case.model)
    teacher = _model(case.model, seed=1) if case.teacher else None
    res = None
    if case.method is None:
        run = train(model, data, cfg, teacher=teacher)
    else:
        model, key, run = get_method(case.method)(case.config).embed(model, data, cfg, seed=5, teacher=teacher)
        r = verify(model, key)
        res = {"detected": r.detected, "p_value": r.p_value, "score": r.score}
    history = [{k: v for k, v in h.items() if k != "seconds"} for h in run.history]
    return {"state": {k: v.detach().clone() for k, v in model.state_dict().items()}, "verify": res,
            "history": history}


def _worker(out: Path) -> None:
    """The torchrun entry point: every case on this rank, saved as ``<case>.<full|short>.rank<r>.pt``."""
    torch.set_num_threads(1)
    assert distributed.init_from_env(), "launch with torchrun"
    try:
        assert distributed.world_size() == 2
        # a key made without a seed on every rank: rank 0's secret root, broadcast (one key for the run)
        (out / f"root.rank{distributed.rank()}.hex").write_text(new_root().hex())
        for name in CASES:
            torch.save(run_case(name), out / f"{name}.full.rank{distributed.rank()}.pt")
        for name in SHORT:
            torch.save(run_case(name, short=True), out / f"{name}.short.rank{distributed.rank()}.pt")
        distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ddp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run :func:`_worker` on 2 ranks with torchrun (gloo, CPU) once for the module."""
    if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
        pytest.skip("this torch build has no gloo backend")
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(v, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(Path(__file__).resolve()), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return out


def _load(ddp_dir: Path, name: str, kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Rank 0's and rank 1's results, after checking that they are identical (weights and buffers bit for bit)."""
    r0, r1 = (torch.load(ddp_dir / f"{name}.{kind}.rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["state"].keys() == r1["state"].keys()
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    assert r0["history"] == r1["history"] and r0["verify"] == r1["verify"]
    return r0, r1


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())


@pytest.mark.parametrize("name", list(CASES))
def test_two_ranks_agree_and_the_watermark_verifies(name: str, ddp_dir: Path) -> None:
    r0, _ = _load(ddp_dir, name, "full")
    # frontier stitching: the schedule's plain epochs, then fine-tuning until the key is learned
    assert len(r0["history"]) >= CASES[name].train.epochs
    if CASES[name].method is not None:
        assert r0["verify"]["detected"], r0["verify"]


@pytest.mark.parametrize("name", EXACT)
def test_two_ranks_match_one_process(name: str, ddp_dir: Path) -> None:
    short = name in SHORT
    r0, _ = _load(ddp_dir, name, "short" if short else "full")
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank
    try:
        one = run_case(name, short=short)
    finally:
        torch.set_num_threads(n)
    assert _max_diff(r0["state"], one["state"]) <= ATOL
    for hd, hs in zip(r0["history"], one["history"], strict=True):  # global values, not rank 0's shard's
        assert hd.keys() == hs.keys()
        for k in hs:
            assert hd[k] == pytest.approx(hs[k], rel=1e-4, abs=1e-6), k


def test_ranks_share_one_secret_root(ddp_dir: Path) -> None:
    r0, r1 = ((ddp_dir / f"root.rank{r}.hex").read_text() for r in (0, 1))
    assert r0 == r1 and len(bytes.fromhex(r0)) == 32


def test_every_registered_method_has_a_case() -> None:
    assert set(METHODS) <= {c.method for c in CASES.values()}


def test_helpers_without_a_process_group() -> None:
    assert not distributed.is_initialized()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    if distributed.env_world_size() <= 1:  # outside torchrun: nothing to initialise
        assert distributed.init_from_env() is False
    t = torch.ones(3)
    distributed.all_reduce_weighted_([t])
    distributed.barrier()
    assert torch.equal(t, torch.ones(3)) and distributed.any_rank(False) is False
    assert [distributed.shard_bounds(7, 3, r) for r in range(3)] == [(0, 3), (3, 5), (5, 7)]
    assert [distributed.shard_bounds(1, 2, r) for r in range(2)] == [(0, 1), (1, 1)]


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
