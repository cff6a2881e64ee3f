"""The shared study engine (:mod:`netmark.bench`): executors with per-job dependencies, data roles."""

from __future__ import annotations

import time

import torch

from netmark.bench.executors import ProcessExecutor, SerialExecutor
from netmark.bench.roles import Roles, fresh_model
from netmark.data import ArrayDataset


def _stamp(job: tuple[str, float]) -> tuple[str, float, float]:
    """Sleeps ``job[1]`` seconds; ``(name, start, end)`` on the wall clock."""
    t0 = time.time()
    time.sleep(job[1])
    return job[0], t0, time.time()


def test_serial_executor_runs_a_job_after_the_one_it_waits_for() -> None:
    jobs = [("child", 0.0), ("parent", 0.0), ("free", 0.0)]
    names = [r[0] for r in SerialExecutor().map(_stamp, jobs, after=[1, None, None])]
    assert names == ["parent", "free", "child"]
    assert [r[0] for r in SerialExecutor().map(_stamp, jobs)] == ["child", "parent", "free"]


def test_process_executor_starts_a_dependent_job_when_its_parent_ends_not_after_the_generation() -> None:
    # the slow root must not delay the child of the fast root
    jobs = [("slow", 3.0), ("fast", 0.2), ("child-of-fast", 0.2), ("child-of-slow", 0.0)]
    ex = ProcessExecutor(2)
    try:
        got = {r[0]: r[1:] for r in ex.map(_stamp, jobs, after=[None, None, 1, 0])}
    finally:
        ex.close()
    assert set(got) == {j[0] for j in jobs}
    assert got["child-of-fast"][0] >= got["fast"][1]  # started after its parent ended
    assert got["child-of-fast"][1] < got["slow"][1]  # ... and before the slow root ended
    assert got["child-of-slow"][0] >= got["slow"][1]


def test_roles_load_once_and_digest_the_training_part() -> None:
    calls: list[str] = []
    a = ArrayDataset(torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, 0, 1]), name="a", num_classes=2)
    b = ArrayDataset(torch.ones(4, 1, 8, 8), torch.tensor([0, 1, 0, 1]), name="b", num_classes=2)

    def load(role: str) -> tuple[ArrayDataset, ArrayDataset]:
        calls.append(role)
        return (a, b) if role == "main" else (b, a)

    roles = Roles(load)
    assert roles("main") is roles("main") and calls == ["main"]
    assert roles.digest("main").startswith("a:") and roles.digest("other").startswith("b:")
    assert roles.digest("main") != roles.digest("other")
    single = Roles(lambda role: a)
    assert single.digest("x") == roles.digest("main")


def test_fresh_model_is_a_function_of_its_seed() -> None:
    d = ArrayDataset(torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]), name="d", num_classes=4)
    m1, m2, m3 = (fresh_model("mlp", d, s, {"hidden": [8]}) for s in (0, 0, 1))
    p1, p2, p3 = (torch.cat([p.flatten() for p in m.parameters()]) for m in (m1, m2, m3))
    assert torch.equal(p1, p2) and not torch.equal(p1, p3)
    assert m1(torch.zeros(2, 1, 8, 8)).shape == (2, 4)
