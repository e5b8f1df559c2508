"""The package's architecture, enforced: which layer may import which, and module size.

Layers (see each folder's __init__.py): spec -> policy -> analysis -> runtime -> cli.
A module may import its own layer and the layers before it; the pure layers (spec,
policy, analysis) import only the standard library from outside the package.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "envisolation"
ORDER = ["spec", "policy", "analysis", "runtime", "cli"]
PURE = {"spec", "policy", "analysis"}
MAX_LINES = 300


def _layer(module: str) -> str:
    """envisolation.policy.plan -> policy; envisolation.cli -> cli; envisolation -> top."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ORDER else "top"


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(p for p in rel.parts if p != "__init__")
        out.append((name, path))
    return out


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            # `from envisolation.spec import constants` imports envisolation.spec.constants
            names.extend(f"{node.module}.{a.name}" for a in node.names)
    return names


MODULES = _modules()


def test_every_layer_is_a_folder_with_a_docstring_saying_what_it_may_import() -> None:
    for layer in ORDER[:-1]:
        init = PACKAGE / layer / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "May import" in doc, f"{init} must say what it may import"


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_imports_follow_the_layers(module: str, path: Path) -> None:
    mine = _layer(module)
    for imported in _imports(path):
        top = imported.split(".")[0]
        if top == "envisolation":
            theirs = _layer(imported)
            if mine == "top" or theirs == "top":
                continue  # the package's own __init__ (its version) is below everything
            assert ORDER.index(theirs) <= ORDER.index(mine), (
                f"{module} ({mine}) imports {imported} ({theirs}): a layer may import only "
                "itself and the layers before it"
            )
        elif mine in PURE:
            assert top in sys.stdlib_module_names or top == "__future__", (
                f"{module} is pure ({mine}) but imports {imported}"
            )


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_modules_stay_small_or_say_why_not(module: str, path: Path) -> None:
    lines = len(path.read_text().splitlines())
    first = (ast.get_docstring(ast.parse(path.read_text())) or "").splitlines()[:1]
    if lines > MAX_LINES + 30:
        assert first and "long because" in first[0], (
            f"{module} has {lines} lines: split it, or say why in its docstring's first line"
        )


def test_the_checker_sees_a_violation() -> None:
    """The rule is not vacuous: an import from runtime in a pure module is caught."""
    assert _layer("envisolation.runtime.client") == "runtime"
    assert ORDER.index(_layer("envisolation.runtime.client")) > ORDER.index("policy")
    assert "envisolation.runtime.api.ObjectRef" in _imports_of(
        "from envisolation.runtime.api import ObjectRef\n"
    )


def _imports_of(source: str) -> list[str]:
    tmp = PACKAGE.parent.parent / ".pytest_cache" / "layers_probe.py"
    tmp.parent.mkdir(exist_ok=True)
    tmp.write_text(source)
    return _imports(tmp)
