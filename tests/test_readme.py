"""The README's Python example must run as written."""

from __future__ import annotations

import ast
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(capsys) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    exec(compile(blocks[0], "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "detected=True" in out and "bit_error_rate=0.0" in out


def test_readme_anti_piracy_example_runs(tmp_path, monkeypatch, capsys) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if "from netmark.access import" in b)
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), ns)  # defines netmark and data
    capsys.readouterr()
    exec(compile(example, "README.md", "exec"), ns)
    acc = ast.literal_eval(capsys.readouterr().out.strip())  # the printed dict of two floats
    assert acc["authorized"] > 0.8 and acc["unauthorized"] < 0.2
    assert (tmp_path / "transform.key").is_file() and (tmp_path / "model.safetensors").is_file()


def test_readme_names_the_two_commands_and_the_patent() -> None:
    text = README.read_text()
    assert "make demo" in text and "make test" in text
    assert "11,687,623 B2" in text


def test_readme_black_box_example_runs(capsys) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if "verify_query" in b)
    ns: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), ns)  # defines netmark, data and a model
    capsys.readouterr()
    exec(compile(example, "README.md", "exec"), ns)
    assert capsys.readouterr().out.strip() == "True"


def test_readme_own_training_loop_runs_as_written(capsys) -> None:
    """The "Your own training loop" block, alone in a fresh namespace (its own imports): the hook embeds a
    watermark that verifies (digits, simple-cnn, 5 epochs, seeds in the block)."""
    import torch

    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if "hook.on_train_start(model)" in b)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small model on shared cores: a second thread only spins
    try:
        exec(compile(example, "README.md", "exec"), {})
    finally:
        torch.set_num_threads(threads)
    assert capsys.readouterr().out.strip() == "True"


def test_readme_bring_your_own_model_example_runs(tmp_path, monkeypatch, capsys) -> None:
    """The Hugging Face example (a config-built GPT-2, Conv1D host): marked, saved with save_pretrained, and the
    folder verifies from the command line as the README says."""
    import pytest
    from typer.testing import CliRunner

    pytest.importorskip("transformers")
    from netmark.cli import app

    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if "GPT2ForSequenceClassification" in b)
    monkeypatch.chdir(tmp_path)
    black = next(b for b in blocks if "AdiConfig" in b)
    ns: dict = {"__name__": "readme"}
    exec(compile(example, "README.md", "exec"), ns)
    assert "detected: True" in capsys.readouterr().out
    r = CliRunner().invoke(app, ["verify", "my-gpt2", "--key", "owner.key"])
    assert r.exit_code == 0 and "DETECTED" in r.stdout, r.output
    exec(compile(black, "README.md", "exec"), ns)  # continues the first block (its data)
    assert "detected: True" in capsys.readouterr().out
    r = CliRunner().invoke(app, ["verify", "my-bert", "--key", "bert.key"])
    assert r.exit_code == 0 and "DETECTED" in r.stdout, r.output
