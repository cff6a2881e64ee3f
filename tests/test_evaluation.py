"""``netmark.evaluation``: config validation, a tiny end-to-end run (serial and process pool), the cache, resuming."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from netmark.errors import ConfigError, OutputExistsError
from netmark.evaluation import SCHEMA, EvaluationConfig, SerialExecutor, Sweep, evaluate, get_executor, measure, preset
from netmark.evaluation.jobs import run_job
from netmark.evaluation.spec import default_sweeps
from netmark.training import TrainConfig

J = TypeVar("J")
R = TypeVar("R")
METHODS = ["uchida", "adi"]
#: the tiny preset's four sweeps: 3 + 2 + 2 + 1 strengths
N_STRENGTHS = 8


def _tiny(**overrides: Any) -> EvaluationConfig:
    return preset("tiny", methods=METHODS, **overrides)


def _strip(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in c.items() if k != "seconds"} for c in cells]


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory) -> tuple[dict[str, Any], Path]:
    root = tmp_path_factory.mktemp("evaluation")
    lines: list[str] = []
    results = evaluate(_tiny(), root / "out", cache_dir=root / "cache", executor="serial", progress=lines.append)
    assert lines and lines[-1].startswith("done")
    return results, root


# ---------------------------------------------------------------------- configuration


def test_presets_and_defaults_validate() -> None:
    full = preset("full")
    assert full.n_independent == 20 and {s.attack for s in full.sweeps} >= {
        "prune", "finetune", "fixed-point", "quantize", "roundtrip", "overwrite", "distill"}
    assert {s.options.get("order") for s in full.sweeps if s.attack == "prune"} == {"ascending", "descending", "random"}
    assert {s.data for s in full.sweeps if s.attack == "finetune"} == {"attacker", "other-domain"}
    quick = preset("quick")
    assert quick.quick and quick.dataset == "fashion-mnist" and quick.model == "mlp"
    assert EvaluationConfig.from_dict(json.loads(json.dumps(quick.to_dict()))).to_dict() == quick.to_dict()
    assert EvaluationConfig(["uchida"]).methods == {"uchida": {}}
    assert quick.max_accuracy_drop == 5.0
    assert preset("tiny", max_accuracy_drop=2.5).to_dict()["max_accuracy_drop"] == 2.5
    assert _tiny().resolved_other_domain() == "inverted" and quick.resolved_other_domain() == "digits"
    # issue 23: the SoK's removal attacks, with the attacker's data budgets (1/5/10/30% of the owner's training set)
    removal = {"preprocess", "capsulation", "sok-finetune", "fine-pruning", "neural-cleanse", "weight-shift",
               "feature-shuffle", "extraction", "neural-dehydration", "combined"}
    for config in (quick, full):
        assert {s.attack for s in config.sweeps} >= removal
        budgets = {s.data_fraction for s in config.sweeps if s.attack == "extraction" and s.data == "attacker"}
        assert budgets == {0.01, 0.05, 0.1, 0.3}
        assert any(s.data == "other-images" for s in config.sweeps if s.attack == "extraction")


@pytest.mark.parametrize("bad", [
    {"methods": []}, {"methods": ["no-such-method"]}, {"methods": {"uchida": {"bitz": 3}}}, {"methods": "uchida"},
    {"model": "no-such-model"}, {"dataset": "no-such-data"}, {"attacker_size": 0}, {"n_independent": 0},
    {"train_size": -5}, {"alpha": 0.0}, {"alpha": 2.0}, {"train": {"epochs": 1}}, {"other_domain": "digits"},
    {"capacity": {"bits": (64, 16)}}, {"capacity": {"furlongs": (1,)}},
    {"sweeps": (Sweep("prune", (0.5,), "rate", "a", "rate"), Sweep("prune", (0.9,), "rate", "a", "rate"))},
    {"access": ("nope",)}, {"access": "fixed"}, {"access": ("fixed", "fixed")}, {"access_options": {"bogus": 1}},
    {"access_options": {"sigma": -1.0}}, {"access_options": {"raw_pass": "both"}}, {"piracy_trials": 0},
    {"pair_fractions": (0.0,)}, {"pair_fractions": (0.5, 0.5)}, {"max_accuracy_drop": -1.0},
    {"max_accuracy_drop": 101}, {"max_accuracy_drop": float("nan")}, {"max_accuracy_drop": True},
])
def test_bad_evaluation_config_raises(bad: dict[str, Any]) -> None:
    kw: dict[str, Any] = {"methods": ["uchida"], "dataset": "digits", "model": "mlp", "attacker_size": 400, **bad}
    with pytest.raises(ConfigError):
        EvaluationConfig(**kw)


def test_piracy_attacks_are_typed_records_named_as_in_stored_results(tmp_path: Path) -> None:
    """A forged-transform attack is a record (kind, fraction); its name is the string results.json, the cache keys
    and the job names have always used, read back only to label stored results."""
    from netmark.evaluation.report_access import access_blocks
    from netmark.evaluation.runner import plan_access
    from netmark.evaluation.spec import PiracyAttack, piracy_attacks
    from tests.test_evaluation_report import synthetic_results

    cfg = _tiny(pair_fractions=(0.1, 1))
    attacks = piracy_attacks(cfg, "generator")
    assert [a.name for a in attacks] == ["input-only", "one-pair", "pair@0.1", "pair@1"]
    assert [a.label for a in attacks] == ["input-only", "one pair", "pair attack, 10% of the images",
                                          "pair attack, 100% of the images"]
    assert piracy_attacks(cfg, "fixed") == attacks[:2]
    assert all(PiracyAttack.named(a.name) == a for a in attacks)
    assert PiracyAttack.named("pair@half") is None and PiracyAttack.named("two-pair") is None
    assert attacks[3].options(cfg)["fraction"] == 1.0 and isinstance(attacks[3].options(cfg)["fraction"], float)
    assert attacks[0].options(cfg)["trials"] == cfg.piracy_trials and attacks[1].options(cfg) == {"index": 0}
    jobs = [j for j in plan_access(cfg, str(tmp_path), ["generator"]) if j.kind == "piracy"]
    assert [j.name for j in jobs] == [f"anti-piracy (generator): {n} attack"  # the pair fits (slow) first
                                      for n in ("pair@0.1", "pair@1", "input-only", "one-pair")]
    assert [j.piracy for j in jobs] == [*attacks[2:], *attacks[:2]]
    # a stored name no attack has is shown as it is (it used to raise from float())
    res = synthetic_results(piracy=True)
    res["access"]["transforms"]["fixed"]["piracy"].append({"attack": "pair@half", "trials": 1, "mean": 0.5,
                                                            "best": 0.5})
    headers = next(b.headers for b in access_blocks(res) if hasattr(b, "headers"))
    assert headers[-2:] == ("pair@half (%)", "pair attack, 10% of the images (%)")


@pytest.mark.parametrize("args", [
    ("no-such-attack", (1,), "x", "l", "rate"), ("prune", (), "rate", "l", "rate"),
    ("prune", (0.5, 0.5), "rate", "l", "rate"), ("prune", (1.5,), "rate", "l", "rate"),
    ("prune", (0.5,), "rate", "l", "no_such_field"), ("roundtrip", ("fp8",), "dtype", "l", "dtype"),
    ("finetune", (1,), "epochs", "l", "epochs"),  # a training attack without data
    ("distill", (0,), "epochs", "l", "epochs"),
])
def test_bad_sweep_raises(args: tuple[Any, ...]) -> None:
    data = "attacker" if args[0] == "distill" else "none"
    with pytest.raises(ConfigError):
        Sweep(*args, data=data)


def test_sweep_builds_attack_configs() -> None:
    by_label = {s.label: s for s in default_sweeps()}
    train = TrainConfig(epochs=7, optimizer="adam", lr=0.002, progress=False)
    ft = by_label["fine-tune (different domain)"].attack_config(3, train=train, seed=9)
    assert ft.train.epochs == 3 and ft.train.lr == 0.002 and ft.new_head is True and ft.seed == 9
    ow = by_label["overwrite (same method)"].attack_config(2, train=train, seed=9, method="adi",
                                                           method_options={"per_batch": 4})
    assert ow.method == "adi" and ow.method_config == {"per_batch": 4} and ow.train.epochs == 2
    d = by_label["distillation"].attack_config(5, train=train, seed=9)
    assert (d.epochs, d.lr, d.optimizer) == (5, 0.002, "adam")
    assert by_label["prune (random)"].attack_config(0.9, train=train, seed=1).order == "random"


def test_executors_by_name() -> None:
    assert get_executor("serial").name == "serial" and get_executor("local", 3).jobs == 3
    with pytest.raises(ConfigError):
        get_executor("nope")
    with pytest.raises(ConfigError):
        get_executor("local", 0)


# ---------------------------------------------------------------------- end to end


def test_results_schema(serial_run) -> None:
    res, root = serial_run
    assert json.loads((root / "out" / "results.json").read_text()) == res
    assert res["schema"] == SCHEMA
    assert {"schema", "generated", "netmark_version", "command", "config", "alpha", "baseline", "methods", "sweeps",
            "cells", "timing"} <= set(res)
    assert set(res["baseline"]) >= {"test_accuracy", "seed"} and res["baseline"]["test_accuracy"] > 0.8
    assert [s["label"] for s in res["sweeps"]] == [s.label for s in _tiny().sweeps]
    assert set(res["timing"]) >= {"seconds", "cells", "cached_cells", "executor", "jobs"}
    assert res["timing"]["executor"] == "serial" and res["timing"]["cached_cells"] == 0
    for name in METHODS:
        m = res["methods"][name]
        assert {"black_box", "test_accuracy", "fidelity_pp", "capacity", "overhead_ratio", "embed_seconds",
                "false_positives"} <= set(m)
        assert m["black_box"] is (name == "adi") and m["detected"]
        assert m["fidelity_pp"] == pytest.approx(100 * (m["test_accuracy"] - res["baseline"]["test_accuracy"]))
        assert set(m["capacity"]) >= {"value", "unit", "note"} and m["capacity"]["note"]
        assert m["overhead_ratio"] > 0 and m["embed_seconds"] > 0
        assert m["false_positives"]["n"] == 3 and m["false_positives"]["detected"] == 0
        assert 0 < m["false_positives"]["min_p_value"] <= 1
    assert res["methods"]["uchida"]["capacity"]["unit"] == "bits"
    assert res["methods"]["adi"]["capacity"]["unit"] == "triggers"
    assert res["methods"]["adi"]["capacity"]["value"] in (10, 40)


def test_cells(serial_run) -> None:
    res, _ = serial_run
    cells = res["cells"]
    assert len(cells) == len(METHODS) * N_STRENGTHS
    keys = {"method", "attack", "label", "strength", "test_accuracy", "p_value", "score", "detected", "seconds",
            "error"}
    assert all(keys <= set(c) and c["error"] is None for c in cells)
    at = {(c["method"], c["label"], c["strength"]): c for c in cells}
    for name in METHODS:
        unattacked = at[(name, "prune (magnitude)", 0.0)]
        assert unattacked["detected"] and unattacked["test_accuracy"] == res["methods"][name]["test_accuracy"]
        assert at[(name, "round trip", "fp16")]["detected"]
        assert at[(name, "fine-tune (same domain)", 0)]["p_value"] == unattacked["p_value"]


def test_refuses_to_overwrite_results(serial_run) -> None:
    _, root = serial_run
    with pytest.raises(OutputExistsError):
        evaluate(_tiny(), root / "out", cache_dir=root / "cache", executor="serial")


def test_process_pool_gives_the_same_cells(serial_run, tmp_path: Path) -> None:
    res, _ = serial_run
    cfg = _tiny(sweeps=_tiny().sweeps[:1], capacity={}, n_independent=2, access=())  # the same cells, fewer
    out = evaluate(cfg, tmp_path / "out", cache_dir=tmp_path / "cache", executor="local", jobs=2)
    assert out["timing"]["executor"] == "local" and out["timing"]["jobs"] == 2
    labels = {s.label for s in cfg.sweeps}
    assert _strip(out["cells"]) == _strip([c for c in res["cells"] if c["label"] in labels])
    for name in METHODS:
        assert out["methods"][name]["test_accuracy"] == res["methods"][name]["test_accuracy"]
        assert out["methods"][name]["capacity"]["value"] is None
        assert out["methods"][name]["false_positives"]["n"] == 2


def test_access_section(serial_run) -> None:
    """The anti-piracy section: a protected model per transform, its piracy attacks and attack cells."""
    res, _ = serial_run
    a = res["access"]
    assert list(a["transforms"]) == ["fixed", "generator"] and a["piracy_trials"] == 2
    assert a["options"]["alpha"] == 1.0 and a["options"]["transform"]["sigma"] == 0.1
    base = res["baseline"]["test_accuracy"]
    for kind, t in a["transforms"].items():
        assert t["error"] is None and t["authorized"] > 0.8 and t["authorized"] > t["unauthorized"] + 0.3, kind
        assert t["fidelity_pp"] == pytest.approx(100 * (t["authorized"] - base))
        assert len(t["cells"]) == N_STRENGTHS and all(c["error"] is None for c in t["cells"])
        at = {(c["label"], c["strength"]): c for c in t["cells"]}
        assert at[("prune (magnitude)", 0.0)]["authorized"] == t["authorized"]
        assert at[("prune (magnitude)", 0.0)]["unauthorized"] == t["unauthorized"]
    piracy = {k: {p["attack"]: p for p in t["piracy"]} for k, t in a["transforms"].items()}
    assert list(piracy["fixed"]) == ["input-only", "one-pair"]
    assert list(piracy["generator"]) == ["input-only", "one-pair", "pair@1"]
    assert piracy["generator"]["pair@1"]["trials"] == 2 and piracy["generator"]["pair@1"]["pairs"] == 400
    # one wiretapped pair gives a universal transform's δ exactly (§2.3): the thief's accuracy is the owner's
    assert piracy["fixed"]["one-pair"]["mean"] == pytest.approx(a["transforms"]["fixed"]["authorized"])
    assert piracy["fixed"]["one-pair"]["max_abs_error"] < 1e-6


def test_forgery_section(serial_run) -> None:
    """The forgery section (issue 20, item 7): per method, the owner's claim verifies and no forged key or claim is
    accepted under the claim check, while plain verify "detects" the fitted keys (the threat); the report shows it.
    A smaller evaluation records that the section needs 3 independent models."""
    res, root = serial_run
    assert set(res["forgery"]) == set(METHODS)
    for name, rec in res["forgery"].items():
        row = rec["row"]
        assert rec["error"] is None and rec["accepted"] == 0 and row["owner"] == "accepted", name
        assert row["forgeries"]["fitted"] == {"plain": "detected", "claim": "rejected: material"}, name
        assert row["independent"]["fitted"]["plain"] == "detected", name
        assert row["forgeries"]["back-dated"]["claim"] == "rejected: signature"
        assert row["forgeries"]["replayed"]["claim"] == "rejected: opening"
        assert row["forgeries"]["declared null"]["claim"].startswith("rejected")
    assert set(res["forgery"]["adi"]["row"]["forgeries"]) >= {"universal"}
    from netmark.evaluation.report import page_blocks, to_markdown

    page = to_markdown(page_blocks(res))
    assert "Forgeries accepted under a claim: 0; owners' claims verified: 2 of 2." in page
    assert "| uchida | accepted | not detected → rejected: watermark | detected → rejected: material |" in page
    small = evaluate(_tiny(sweeps=(), capacity={}, n_independent=2, access=()), root / "small",
                     cache_dir=root / "cache", executor="serial")
    assert all("needs 3 independent models" in r["error"] for r in small["forgery"].values())


def test_obfuscation_sweeps(tmp_path: Path) -> None:
    """The permute sweep (issue 21): a black-box mark reads only the function, which the attack keeps — detected at
    every strength, with the unattacked model's accuracy exactly; the report gains the threat model's section."""
    from netmark.evaluation.report import page_blocks, to_markdown

    sweep = Sweep("permute", (0.0, 1.0), "fraction", "permute (hidden units)", "fraction")
    res = evaluate(_tiny(sweeps=(sweep,), capacity={}, access=(), forgery=False), tmp_path / "out",
                   cache_dir=tmp_path / "cache", executor="serial")
    adi = [c for c in res["cells"] if c["method"] == "adi"]
    assert [c["strength"] for c in adi] == [0.0, 1.0] and all(c["detected"] and c["error"] is None for c in adi)
    assert adi[0]["test_accuracy"] == adi[1]["test_accuracy"] == res["methods"]["adi"]["test_accuracy"]
    assert "## Function-preserving obfuscation" in to_markdown(page_blocks(res))


def test_ray_executor_gives_the_same_cells(serial_run, tmp_path: Path) -> None:
    """`--executor ray` on a local Ray instance: the same cells as the serial run; a job's own exception
    comes back as itself."""
    pytest.importorskip("ray")
    from netmark.bench.executors import RayExecutor
    from netmark.evaluation.cells import Job

    res, _ = serial_run
    round_trip = next(s for s in _tiny().sweeps if s.attack == "roundtrip")  # 2 cheap cells
    cfg = preset("tiny", methods=["uchida"], sweeps=(round_trip,), capacity={}, n_independent=1,
                 access=("fixed",), piracy_trials=1)
    ex = RayExecutor(1)  # one worker: CI's two cores are shared with the other test process
    try:
        out = evaluate(cfg, tmp_path / "out", cache_dir=tmp_path / "cache", executor=ex)
        assert out["timing"]["executor"] == "ray" and out["timing"]["cached_cells"] == 0
        assert _strip(out["cells"]) == _strip([c for c in res["cells"] if c["label"] == round_trip.label
                                               and c["method"] == "uchida"])
        assert out["methods"]["uchida"]["false_positives"]["detected"] == 0
        fixed = res["access"]["transforms"]["fixed"]
        got = out["access"]["transforms"]["fixed"]
        assert got["authorized"] == fixed["authorized"]
        assert _strip(got["cells"]) == _strip([c for c in fixed["cells"] if c["label"] == round_trip.label])
        with pytest.raises(ConfigError, match="unknown job kind"):
            list(ex.map(run_job, [Job("no-such-kind", cfg, str(tmp_path / "cache"))]))
    finally:
        ex.close()


class FailAfter(SerialExecutor):
    """Serial, but raises after ``k`` attack cells (an interrupted run)."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k
        self.seen = 0

    def map(self, fn: Callable[[J], R], jobs: Sequence[J]) -> Iterator[R]:
        for r in super().map(fn, jobs):
            if r["kind"] == "attack":  # type: ignore[index]
                if self.seen == self.k:
                    raise RuntimeError("injected failure")
                self.seen += 1
            yield r


def test_interrupted_run_resumes_from_the_cache(serial_run, tmp_path: Path, monkeypatch) -> None:
    res, root = serial_run
    cache = tmp_path / "cache"
    shutil.copytree(root / "cache", cache)
    attack_files = [p for p in (cache / "cells").glob("*.json") if "test_accuracy" in json.loads(p.read_text())]
    assert len(attack_files) == len(res["cells"])
    for p in attack_files:
        p.unlink()  # the trained models and the other cells stay cached
    computed: list[int] = []
    real_evaluate = measure.evaluate
    monkeypatch.setattr(measure, "evaluate", lambda *a, **k: computed.append(1) or real_evaluate(*a, **k))
    monkeypatch.setattr("netmark.evaluation.cells.train", lambda *a, **k: pytest.fail("a cached model was retrained"))

    with pytest.raises(RuntimeError, match="injected"):
        evaluate(_tiny(), tmp_path / "out", cache_dir=cache, executor=FailAfter(5))
    first = len(computed)
    assert 5 <= first < len(res["cells"])
    done_before = {p: p.stat().st_mtime_ns for p in (cache / "cells").glob("*.json")}
    assert not (tmp_path / "out" / "results.json").exists()

    again = evaluate(_tiny(), tmp_path / "out", cache_dir=cache, executor="serial")
    assert len(computed) - first == len(res["cells"]) - first  # only the missing cells were computed
    assert all(p.stat().st_mtime_ns == t for p, t in done_before.items())  # finished cells were not rewritten
    assert again["timing"]["cached_cells"] == again["timing"]["cells"] - (len(res["cells"]) - first)
    assert _strip(again["cells"]) == _strip(res["cells"])
    assert again["methods"]["adi"]["false_positives"] == res["methods"]["adi"]["false_positives"]



def test_netmark_report_renders_evaluation_results(serial_run, tmp_path: Path) -> None:
    """`netmark report` recognises an evaluation's results.json (by its schema) and writes its report."""
    from typer.testing import CliRunner

    from netmark.cli import app

    _, root = serial_run
    out = tmp_path / "report"
    shutil.copytree(root / "out", out, ignore=shutil.ignore_patterns("cache"))
    res = CliRunner().invoke(app, ["report", str(out)])
    assert res.exit_code == 0 and "index.html" in res.output, res.output
    assert (out / "index.html").is_file() and "data:image/png;base64" in (out / "index.html").read_text()
    other = tmp_path / "other"
    other.mkdir()
    (other / "index.html").write_text("mine")
    refused = CliRunner().invoke(app, ["report", str(out), "--out", str(other)])  # would overwrite: exit 2
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    assert (other / "index.html").read_text() == "mine"


def test_cli_evaluate_without_a_model_compares_methods(serial_run, tmp_path: Path) -> None:
    """`netmark evaluate --methods ... --preset tiny` (resuming from the module's cache) writes the results and the
    report; a second run into the same directory is refused with one line and exit code 2; MODEL and --methods
    together are refused."""
    from typer.testing import CliRunner

    from netmark.cli import app

    _, root = serial_run
    out = tmp_path / "cli"
    args = ["evaluate", "--preset", "tiny", "--methods", ",".join(METHODS), "--executor", "serial",
            "--cache-dir", str(root / "cache"), "--out", str(out), "--quiet", "--max-accuracy-drop", "2.5"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    assert results["timing"]["cached_cells"] == results["timing"]["cells"] > 0  # every cell from the cache
    assert results["config"]["max_accuracy_drop"] == 2.5  # the setting travels with the results: the report uses it
    assert "| max. accuracy drop of a useful attacked model | 2.5 pp |" in (out / "README.md").read_text()
    assert results["command"].startswith("netmark evaluate --methods uchida,adi")
    assert (out / "index.html").is_file() and (out / "README.md").is_file()
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "already exists" in refused.output and "Traceback" not in refused.output
    both = CliRunner().invoke(app, ["evaluate", str(out / "results.json"), "--methods", "uchida"])
    assert both.exit_code == 2 and "not both" in both.output
    drop = CliRunner().invoke(app, ["evaluate", str(out / "results.json"), "--max-accuracy-drop", "3"])
    assert drop.exit_code == 2 and "applies to the comparison" in drop.output


def test_cli_evaluate_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """SIGTERM (a scheduler's stop; Ctrl-C the same) during `netmark evaluate`: exit 130 with one line saying how to
    resume, no results.json, no worker left running, and every job reported finished is in the cache."""
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "out"
    cmd = [sys.executable, "-c", "from netmark.cli import main; main()", "evaluate", "--preset", "tiny",
           "--methods", "uchida", "--out", str(out), "--jobs", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("[3/"):
                proc.send_signal(signal.SIGTERM)
                break
        rest, _ = proc.communicate(timeout=60)  # a hung stop fails here instead of hanging the suite
        assert proc.returncode == 130, "".join(lines) + rest
    finally:
        if proc.poll() is None:
            proc.kill()
    finished = [ln for ln in lines if ln.startswith("[")]
    assert "interrupted: the finished cells are cached in" in rest and "Traceback" not in rest
    assert not (out / "results.json").exists()
    stored = [*(out / "cache" / "runs").glob("*.json"), *(out / "cache" / "cells").glob("*.json")]
    assert len(stored) >= len(finished) == 3  # the jobs reported done are cached (one more may have finished)


def test_interrupted_process_pool_stops_its_running_jobs() -> None:
    """A KeyboardInterrupt (here SIGTERM under sigterm_interrupts) while the pool runs 60-second jobs: close()
    terminates the workers instead of waiting for their jobs."""
    import signal
    import threading
    import time

    from netmark._util import sigterm_interrupts
    from netmark.evaluation import ProcessExecutor

    ex = ProcessExecutor(2)
    main = threading.main_thread().ident
    assert main is not None
    timer = threading.Timer(4.0, signal.pthread_kill, (main, signal.SIGTERM))
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt), sigterm_interrupts():
        timer.start()
        try:
            for _ in ex.map(time.sleep, [60, 60, 60]):
                pytest.fail("a 60-second job finished")
        finally:
            ex.close()
    timer.cancel()
    assert time.perf_counter() - t0 < 30 and ex._pool is None
