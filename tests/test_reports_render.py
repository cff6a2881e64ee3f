"""Every committed report under reports/ re-renders from its results.json (issue 18).

The figures are drawn (every plotting call runs on the stored numbers) but not rasterised: ``Figure.savefig``
writes a stub PNG, which keeps this test at a few seconds; the renderers' own tests check real PNGs. Old results
render with the parts they lack marked "not measured" (:func:`test_old_results_render_with_parts_not_measured`).

``reports/tartaglione-paper`` holds no results.json on purpose: its README is written by hand from partial
paper-scale runs (``partial.json``, ``runs.json``: the plan's other runs never finished, and the renderer needs
every run of the plan), as that README says; the test checks that it stays the only such directory.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from netmark.bench.report import PNG_MAGIC
from netmark.reports import render

REPORTS = Path(__file__).resolve().parent.parent / "reports"
#: report directories without a results.json, and why
HAND_WRITTEN = {"tartaglione-paper": "no report was rendered"}


def _dirs() -> list[str]:
    return sorted(p.name for p in REPORTS.iterdir() if p.is_dir() and (p / "README.md").is_file())


@pytest.fixture
def stub_png(monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    def savefig(self: Any, fname: Any, *args: Any, **kwargs: Any) -> None:
        Path(fname).write_bytes(PNG_MAGIC + b"stub")

    monkeypatch.setattr(Figure, "savefig", savefig)


def test_every_report_directory_has_results_or_is_known_hand_written() -> None:
    dirs = _dirs()
    assert len(dirs) >= 8
    for d in dirs:
        has = (REPORTS / d / "results.json").is_file()
        assert has != (d in HAND_WRITTEN), d
    for d, phrase in HAND_WRITTEN.items():
        assert phrase in (REPORTS / d / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", [d for d in _dirs() if d not in HAND_WRITTEN])
def test_committed_report_rerenders(name: str, tmp_path: Path, stub_png: None) -> None:
    src = REPORTS / name / "results.json"
    before = src.read_bytes()
    written = render(src, tmp_path)
    assert (tmp_path / "README.md").is_file() and written
    assert (tmp_path / "README.md").read_text(encoding="utf-8").startswith("# ")
    assert src.read_bytes() == before  # the committed results are never rewritten


#: per reproduction: the experiments an old results.json may lack
OLD = {"wang": ("extractors",), "fkirin": ("optimizers",), "uchida": ("acceptance", "table8"),
       "chen-wu": ("acceptance",)}


@pytest.mark.parametrize("name", sorted(OLD))
def test_old_results_render_with_parts_not_measured(name: str, tmp_path: Path, stub_png: None) -> None:
    res = json.loads((REPORTS / name / "results.json").read_text(encoding="utf-8"))
    old = copy.deepcopy(res)
    for k in OLD[name]:
        old["experiments"].pop(k, None)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(old), encoding="utf-8")
    render(path)
    md = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "not measured" in md
