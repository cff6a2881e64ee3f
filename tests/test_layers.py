"""The layering of netmark is enforced by import-linter (``[tool.importlinter]`` in pyproject.toml, run by
``make test``), and no module of netmark takes part in an import cycle (imports inside functions count; imports
under ``if TYPE_CHECKING:`` do not, they never run)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

grimp = pytest.importorskip("grimp")
pytest.importorskip("importlinter")

ROOT = Path(__file__).resolve().parents[1]


def module_cycles(graph: grimp.ImportGraph) -> list[tuple[str, str]]:
    """Every direct import ``(importer, imported)`` that closes a cycle: ``imported`` leads back to ``importer``."""
    return sorted((m, d) for m in graph.modules for d in graph.find_modules_directly_imported_by(m)
                  if graph.chain_exists(importer=d, imported=m))


def test_module_cycles_finds_a_cycle_and_only_a_cycle() -> None:
    g = grimp.ImportGraph()
    for importer, imported in [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")]:
        g.add_import(importer=importer, imported=imported)
    assert module_cycles(g) == [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a")]
    g.remove_import(importer="p.c", imported="p.a")
    assert module_cycles(g) == []


def test_no_import_cycle_among_netmark_modules() -> None:
    g = grimp.build_graph("netmark", cache_dir=None, exclude_type_checking_imports=True)
    assert len(g.modules) > 50  # the whole package was read
    assert module_cycles(g) == []
    # the statistics module knows nothing of the methods that use it (verify(model, key) lives in methods)
    assert not g.chain_exists(importer="netmark.verify", imported="netmark.methods")


def test_import_linter_contracts_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlinter.cli import lint_imports

    monkeypatch.chdir(ROOT)
    # lint_imports configures logging and disables every logger that exists (netmark.training's epoch lines
    # included): restore them, or a later test in this process depends on the order the tests ran in
    disabled = {n: lg.disabled for n, lg in logging.root.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    try:
        assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0
    finally:
        for n, d in disabled.items():
            logging.getLogger(n).disabled = d
