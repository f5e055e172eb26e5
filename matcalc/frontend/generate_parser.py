"""Writes matcalc/frontend/generated_parser.py: Lark's standalone LALR parser of the grammar, so that the CLI needs
neither to import Lark (and `regex`) nor to load a grammar at start-up.

    python -m matcalc.frontend.generate_parser          # rewrite the module after a change of the grammar
    python -m matcalc.frontend.generate_parser --check  # exit 1 if the committed module is not up to date

grammar/matcalc.lark stays the source of truth (`parse.grammar_text()` writes the functions' names into it);
the generated module holds Lark's runtime (its standalone sections, docstrings stripped; `regex` and `logging`
not imported: see below) and the two parse tables
`parse.parser` uses: expressions with declarations, and programs. Lark numbers its LALR states in an order that
changes from run to run (sets of objects hashed by id), so the tables are renumbered canonically here: states in
breadth-first order from the start states, tokens by name. The same grammar and the same Lark then give the same
bytes, which `tests/test_generated_parser.py` checks.
"""

from __future__ import annotations

import hashlib
import os
import pprint
import sys
from collections import deque
from functools import partial
from pathlib import Path
from typing import Any

TARGET = Path(__file__).with_name("generated_parser.py")

# (name in the module, Lark's start rules): the two parsers of parse.parser
PARSERS = (("EXPRESSION", ["start_expr", "start_declarations"]), ("PROGRAM", ["start_program"]))

# The standalone parser never compiles a grammar, and every pattern of ours is one `re` reads: `regex` is
# only an import that costs start-up time (Lark uses it to measure a pattern's width when it is installed).
_REGEX_IMPORT = "try:\n    import regex\n    _has_regex = True\nexcept ImportError:\n    _has_regex = False\n"
_NO_REGEX = "_has_regex = False  # matcalc: every pattern of the grammar is one `re` reads (generate_parser.py)\n"
# Lark logs only while it compiles a grammar or uses its cache, which the standalone parser never does: its logger
# imports `logging` when something is logged, not at start-up.
_LOGGING_IMPORT = "import sys, re\nimport logging\n"
_LOGGER = ('logger: logging.Logger = logging.getLogger("lark")\nlogger.addHandler(logging.StreamHandler())\n##\n\n'
           "##\n\nlogger.setLevel(logging.CRITICAL)\n")
_LAZY_LOGGER = '''class _LarkLogger:  # matcalc: `logging` loads when Lark logs, never in a parse (generate_parser.py)
    def __getattr__(self, name):
        import logging

        real = logging.getLogger("lark")
        if not real.handlers:
            real.addHandler(logging.StreamHandler())
            real.setLevel(logging.CRITICAL)
        return getattr(real, name)


logger = _LarkLogger()
'''


def grammar_sha256() -> str:
    """The digest of the grammar text the parser is built from (functions' names written in)."""
    from .parse import grammar_text

    return hashlib.sha256(grammar_text().encode("utf-8")).hexdigest()


def _canonical_table(table: dict[str, Any], starts: list[str]) -> dict[str, Any]:
    """Lark's serialized LALR table with its states numbered breadth-first from the start states (transitions in
    the order of their tokens' names) and its tokens numbered by name."""
    names = table["tokens"]
    states = table["states"]
    token_ids = {name: index for index, name in enumerate(sorted(names.values()))}
    order: dict[int, int] = {}  # Lark's state -> canonical number
    queue = deque(table["start_states"][start] for start in starts)
    for state in queue:
        order.setdefault(state, len(order))
    while queue:
        state = queue.popleft()
        for token in sorted(states[state], key=lambda token: names[token]):
            action, argument = states[state][token]
            if action == 0 and argument not in order:  # a shift (or goto) to a state not yet numbered
                order[argument] = len(order)
                queue.append(argument)
    if len(order) != len(states):
        raise RuntimeError("the LALR table has states not reachable from its start states")
    renumbered = {}
    for state, number in sorted(order.items(), key=lambda item: item[1]):
        actions = sorted(states[state].items(), key=lambda item: names[item[0]])
        renumbered[number] = {token_ids[names[token]]: (action, order[argument] if action == 0 else argument)
                              for token, (action, argument) in actions}
    return {
        "tokens": {index: name for name, index in token_ids.items()},
        "states": renumbered,
        "start_states": {start: order[table["start_states"][start]] for start in starts},
        "end_states": {start: order[table["end_states"][start]] for start in starts},
    }


def _runtime() -> str:
    """Lark's standalone runtime, as `python -m lark.tools.standalone` writes it, without importing `regex` or
    `logging`."""
    from lark.tools.standalone import EXTRACT_STANDALONE_FILES, _larkdir, extract_sections, strip_docstrings

    parts = []
    for index, name in enumerate(EXTRACT_STANDALONE_FILES):
        with open(os.path.join(_larkdir, name), encoding="utf-8") as handle:
            code = extract_sections(handle)["standalone"]
        if index:  # the first is the tool's own header, kept as Lark writes it
            code = strip_docstrings(partial(next, iter(code.splitlines(True))))
        parts.append(code)
    runtime = "\n".join(parts)
    replacements = ((_REGEX_IMPORT, _NO_REGEX), (_LOGGING_IMPORT, "import sys, re\n"), (_LOGGER, _LAZY_LOGGER))
    for found, replacement in replacements:
        if runtime.count(found) != 1:
            raise RuntimeError(f"Lark's runtime changed: {found.splitlines()[-1]!r} was not found once; "
                               f"update generate_parser.py")
        runtime = runtime.replace(found, replacement)
    return runtime


def source() -> str:
    """The text of generated_parser.py for the grammar and the Lark installed now."""
    import lark
    from lark import Lark
    from lark.grammar import Rule
    from lark.lexer import TerminalDef

    from .parse import grammar_text

    text = grammar_text()
    lines = [
        "# Generated by `python -m matcalc.frontend.generate_parser` from grammar/matcalc.lark: do not edit.",
        f"# Lark v{lark.__version__}'s standalone LALR parser (its runtime is Lark's, MIT license).",
        "# ruff: noqa",
        # Lark's signatures are annotated for type checkers: left unevaluated, they cost nothing at start-up
        "from __future__ import annotations",
        f"GRAMMAR_SHA256 = {hashlib.sha256(text.encode('utf-8')).hexdigest()!r}",
        f"__version__ = {lark.__version__!r}",
        "",
        _runtime(),
    ]
    for name, starts in PARSERS:
        # the options parse.parser needs: positions for the caret of an error, [] placeholders for the typer
        built = Lark(text, parser="lalr", start=starts, propagate_positions=True, maybe_placeholders=True)
        data, memo = built.memo_serialize([TerminalDef, Rule])
        data["parser"]["parser"] = _canonical_table(data["parser"]["parser"], starts)
        lines += [f"{name}_DATA = {pprint.pformat(data, width=120, sort_dicts=False)}",
                  f"{name}_MEMO = {pprint.pformat(memo, width=120, sort_dicts=False)}", ""]
    lines += [
        "Shift = 0",
        "Reduce = 1",
        "",
        "",
        "def expression_parser() -> Lark:",
        "    return Lark._load_from_dict(EXPRESSION_DATA, EXPRESSION_MEMO)",
        "",
        "",
        "def program_parser() -> Lark:",
        "    return Lark._load_from_dict(PROGRAM_DATA, PROGRAM_MEMO)",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = source()
    if "--check" in argv:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET} is not up to date: run python -m matcalc.frontend.generate_parser", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET} ({len(text):,} characters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
