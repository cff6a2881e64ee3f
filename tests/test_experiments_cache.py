"""The on-disk run cache of the reproductions (``--cache-dir``) and worker-process training (``--jobs``)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from netmark import training
from netmark.bench.cache import RunCache, fingerprint, tensor_digest
from netmark.bench.runner import Runner
from netmark.errors import ConfigError
from netmark.experiments.wang import get_scale, run
from netmark.experiments.wang.runs import RUNS
from netmark.keys import WatermarkKey
from netmark.models import build
from netmark.training import TrainConfig

#: the Wang quick scale cut down to a handful of short runs
TINY = replace(get_scale("quick"), name="tiny", bits=64, capacity_bits=(64,),
               train=TrainConfig(epochs=6, progress=False), small_train=TrainConfig(epochs=1, progress=False),
               n_independent=2, finetune_epochs=1, conv_model=None, plain_seeds=1, fidelity_seeds=1)


def test_fingerprint_depends_on_every_part_and_on_the_training_version(monkeypatch: pytest.MonkeyPatch) -> None:
    base = {"spec": {"name": "a", "seed": 0}, "data": "x"}
    assert fingerprint(base) == fingerprint(dict(base))
    assert len(fingerprint(base)) == 64
    assert fingerprint(base) != fingerprint({**base, "spec": {"name": "a", "seed": 1}})
    assert fingerprint(base) != fingerprint({**base, "data": "y"})
    before = fingerprint(base)
    monkeypatch.setattr(training, "TRAINING_VERSION", training.TRAINING_VERSION + 1)
    assert fingerprint(base) != before
    t = torch.arange(6, dtype=torch.float32)
    assert tensor_digest(t) == tensor_digest(t.clone()) != tensor_digest(t.reshape(2, 3)) != tensor_digest(t + 1)


def test_runner_fingerprints_differ_by_run_and_follow_the_parent() -> None:
    r = Runner(RUNS, TINY)
    fps = {n: r.fingerprint(n) for n in r.plan}
    assert len(set(fps.values())) == len(fps)
    other = Runner(RUNS, replace(TINY, key_seed=7))
    assert other.fingerprint("plain") == fps["plain"]  # plain runs use no key
    assert other.fingerprint("auto-64") != fps["auto-64"]
    assert other.fingerprint("auto-64-sd") != fps["auto-64-sd"]  # derived runs inherit the parent's change


def test_cache_round_trip_and_damaged_entries_are_retrained(tmp_path: Path) -> None:
    cache = RunCache(tmp_path)
    model = build("mlp")
    key = WatermarkKey(method="uchida", layer="fc2", message="0101", tensors={"X": torch.randn(4, 640)})
    cache.save("run", "f" * 64, model, key, {"train_size": 3, "history": [{"epoch": 1}], "seconds": 1.5})
    assert cache.has("run", "f" * 64) and not cache.has("run", "e" * 64)
    got = cache.load("run", "f" * 64)
    assert got is not None
    m2, k2, rec, _ = got
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), m2.state_dict().values(), strict=True))
    assert k2 is not None and k2.fingerprint == key.fingerprint and rec["seconds"] == 1.5
    assert (tmp_path / f"run-{'f' * 12}.key").stat().st_mode & 0o077 == 0  # keys stay private
    model_file = tmp_path / f"run-{'f' * 12}.safetensors"
    model_file.write_bytes(model_file.read_bytes()[:100])  # truncated: a miss, never an error or a bad model
    assert cache.load("run", "f" * 64) is None
    attacker = WatermarkKey(method="uchida", layer="fc2", message="0011", tensors={"X": torch.randn(4, 640)})
    cache.save("ow", "a" * 64, model, key, {"train_size": 1, "history": [], "seconds": 0.0},
               {"attacker_key": attacker, "none": None})
    got = cache.load("ow", "a" * 64, ("attacker_key", "none"))
    assert got is not None and got[3]["attacker_key"].fingerprint == attacker.fingerprint and got[3]["none"] is None
    assert cache.load("run", "f" * 64, ("attacker_key",)) is None  # stored without it: retrained, not half-loaded
    # dotted run names ("R4-g0.001") and a run named like another plus a suffix keep separate entries
    for i, name in enumerate(("R4-g0.001", "R4-g0.001-ft", "R4-g0.002")):
        cache.save(name, str(i) * 64, model, key, {"train_size": i, "history": [], "seconds": 0.0},
                   {"attacker_key": attacker})
    for i, name in enumerate(("R4-g0.001", "R4-g0.001-ft", "R4-g0.002")):
        got = cache.load(name, str(i) * 64, ("attacker_key",))
        assert got is not None and got[2]["train_size"] == i, name
    assert (tmp_path / f"R4-g0.001-{'0' * 12}.attacker_key.key").is_file()
    rec_file = tmp_path / f"run-{'f' * 12}.json"
    rec_file.write_text(json.dumps({"fingerprint": "other"}))
    assert cache.load("run", "f" * 64) is None


def test_second_invocation_reads_every_run_from_the_cache(tmp_path: Path) -> None:
    first = run(tmp_path / "a", scale=TINY, cache_dir=tmp_path / "cache", jobs=2)
    assert first["timing"]["cached_runs"] == 0 and first["timing"]["jobs"] == 2
    second = run(tmp_path / "b", scale=TINY, cache_dir=tmp_path / "cache")
    assert second["timing"]["cached_runs"] == len(second["runs"]) == len(first["runs"])
    assert all(r["from_cache"] for r in second["runs"].values())
    for name, r in first["runs"].items():  # the same models: the same accuracies and histories
        assert second["runs"][name]["test_accuracy"] == r["test_accuracy"], name
        assert second["runs"][name]["history"] == r["history"], name
    assert second["experiments"]["table3"]["measured"] == first["experiments"]["table3"]["measured"]
    assert "(cached)" in (tmp_path / "b" / "README.md").read_text()


def test_jobs_need_a_cache_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cache_dir"):
        run(tmp_path / "x", scale=TINY, jobs=2)
    with pytest.raises(ConfigError, match="jobs"):
        run(tmp_path / "x", scale=TINY, jobs=0)
    assert not (tmp_path / "x").exists()


def test_runs_train_a_piece_of_the_plan_into_the_cache(tmp_path: Path) -> None:
    """`runs=[...]` (`netmark reproduce --runs`): only those runs and their parents, their records in runs.json and
    no report; a later full invocation reads them back from the cache."""
    derived = next(n for n, s in Runner(RUNS, TINY).plan.items() if s.parent)
    parent = Runner(RUNS, TINY).plan[derived].parent
    part = run(tmp_path / "p", scale=TINY, cache_dir=tmp_path / "cache", runs=[derived])
    assert part["partial"] is True and part["requested"] == [derived]
    assert set(part["runs"]) == {derived, parent} and part["timing"]["cached_runs"] == 0
    assert json.loads((tmp_path / "p" / "runs.json").read_text())["runs"] == part["runs"]
    assert not (tmp_path / "p" / "results.json").exists() and not (tmp_path / "p" / "README.md").exists()
    again = run(tmp_path / "p2", scale=TINY, cache_dir=tmp_path / "cache", runs=[derived])  # all from the cache
    assert set(again["runs"]) == {derived, parent} and again["timing"]["cached_runs"] == 2
    assert again["runs"][parent]["history"] == part["runs"][parent]["history"]
    with pytest.raises(ConfigError, match="unknown run"):
        run(tmp_path / "q", scale=TINY, cache_dir=tmp_path / "cache", runs=["no-such-run"])
    full = run(tmp_path / "f", scale=TINY, cache_dir=tmp_path / "cache")
    assert full["runs"][derived]["from_cache"] and full["runs"][parent]["from_cache"]
    assert full["runs"][derived]["history"] == part["runs"][derived]["history"]


def _children(pid: int) -> set[int]:
    """The live processes whose parent is ``pid`` (from /proc)."""
    kids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.add(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads worker processes from /proc")
def test_cli_reproduce_stops_its_workers_on_sigterm(tmp_path: Path) -> None:
    """SIGTERM (a scheduler's stop) while `netmark reproduce --jobs 2` trains in worker processes: exit 130 with one
    line saying where the finished runs are, no traceback, no report, and no worker left training."""
    import os
    import signal
    import subprocess
    import sys
    import time

    cmd = [sys.executable, "-c", "from netmark.cli import main; main()", "reproduce", "wang", "--quick", "--jobs", "2",
           "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    try:
        lines: list[str] = []
        workers: set[int] = set()
        for line in proc.stdout:
            lines.append(line)
            if "worker processes" in line:
                break
        deadline = time.monotonic() + 60
        while len(workers) < 3 and time.monotonic() < deadline:  # 2 workers + the resource tracker
            time.sleep(0.5)
            workers = _children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)  # a worker left running would hold the pipe open: a timeout
        assert proc.returncode == 130, "".join(lines) + rest
    finally:
        for p in [proc.pid, *workers]:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
    assert len(workers) >= 3, "".join(lines)
    assert f"interrupted: the finished runs are cached in {tmp_path / 'cache'}" in rest and "Traceback" not in rest
    assert not (tmp_path / "out" / "results.json").exists()
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers)
