"""The package's layout shows its architecture: one subpackage per layer, short
modules with one job each, every one saying what it is for."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "tb_lstm_states"
MAX_LINES = 600


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "static" not in p.parts)


def test_no_module_is_over_600_lines():
    modules = _modules()
    assert len(modules) >= 20
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in modules
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, "modules over %d lines: %s" % (MAX_LINES, long)


def test_every_module_has_a_docstring():
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), "%s has no module docstring" % path.relative_to(PACKAGE)


def test_one_subpackage_per_layer():
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert {"capturing", "storage", "server", "analysis"} <= subpackages
