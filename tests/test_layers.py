"""The house's one-way data flow: each room imports only the rooms below it (docs/design.md), lazily or not."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "matcalc"

# room -> the rooms it may import (besides itself)
ALLOWED = {
    "core": set(),
    "frontend": {"core"},
    "rules": {"core"},
    "calculus": {"core", "rules"},
    "render": {"core", "calculus"},
    "backends": {"core", "rules", "calculus", "render"},
    "results": {"core", "frontend", "rules", "calculus", "render", "backends"},
    "api": {"core", "frontend", "rules", "calculus", "render", "backends", "results"},
    "cli": {"core", "frontend", "rules", "calculus", "render", "backends", "results", "api", "__init__", "serve"},
    "serve": {"core", "frontend", "rules", "calculus", "render", "backends", "results", "api"},
}


def _room(module: str) -> str:
    return module.split(".")[0]


def _imports(path: Path) -> set[str]:
    """The matcalc modules a file imports, as dotted names relative to the package."""
    relative = path.relative_to(PACKAGE).with_suffix("")
    here = list(relative.parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[: len(here) - (node.level - 1)]
            target = [*base, *(node.module.split(".") if node.module else [])]
            if not target:  # `from . import x`: x is a module of the package, or a name of its __init__
                found.update(a.name if (PACKAGE / a.name).exists() or (PACKAGE / f"{a.name}.py").exists()
                             else "__init__" for a in node.names)
            else:
                found.add(".".join(target))
    return found


def test_every_room_imports_only_the_rooms_below_it():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        room = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        if room not in ALLOWED:
            continue
        for module in _imports(path):
            target = _room(module)
            if target != room and target not in ALLOWED[room]:
                wrong.append(f"{relative} imports {module}")
    assert not wrong, "\n".join(wrong)
