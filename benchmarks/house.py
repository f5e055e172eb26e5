"""Figures of the code's shape (issue 15): lines per package, the largest functions and classes, and hand-written
type dispatch (`isinstance(`, `type(...) is`, class patterns in `match`). Run on any checkout:

    python benchmarks/house.py [ROOT]
"""

from __future__ import annotations

import ast
import re
import sys
from collections import Counter
from pathlib import Path

DISPATCH = re.compile(r"\bisinstance\(|\btype\([^)]*\) is\b|^\s*case [A-Z]\w*\(", re.M)


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
    package = root / "matcalc"
    lines: Counter[str] = Counter()
    dispatch: Counter[str] = Counter()
    sizes: list[tuple[int, str, str]] = []
    for path in sorted(package.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        relative = path.relative_to(package)
        room = relative.parts[0] if len(relative.parts) > 1 else relative.name
        lines[room] += text.count("\n")
        dispatch[str(relative)] += len(DISPATCH.findall(text))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                kind = "class" if isinstance(node, ast.ClassDef) else "def"
                sizes.append((node.end_lineno - node.lineno + 1, kind, f"{relative}:{node.name}"))
    print("lines per room:", ", ".join(f"{room} {n}" for room, n in sorted(lines.items())), f"(total {lines.total()})")
    for kind in ("def", "class"):
        top = sorted((s for s in sizes if s[1] == kind), reverse=True)[:3]
        print(f"largest {kind}:", ", ".join(f"{name} ({n} lines)" for n, _, name in top))
    print(f"type dispatch (isinstance, type() is, class patterns): {dispatch.total()}")
    print("  by file:", ", ".join(f"{f} {n}" for f, n in dispatch.most_common() if n))


if __name__ == "__main__":
    main()
