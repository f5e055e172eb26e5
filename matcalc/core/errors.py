"""The error hierarchy: every user-facing failure is a MatcalcError subclass with a clear message."""

from __future__ import annotations

import re

MESSAGE_TEXT = 60  # expressions quoted in messages are abbreviated beyond this many characters


def abbreviate(text: str) -> str:
    """The text of an expression for a message: its two ends around '…' when long, so messages stay short
    (and building them stays linear in a long input)."""
    if len(text) <= MESSAGE_TEXT:
        return text
    half = MESSAGE_TEXT // 2 - 2
    return f"{text[:half]} … {text[-half:]}"


def where_hint(declaration: str) -> str:
    """A hint to declare something, as Python says it: `where="theta: vector"` (for_cli makes it `--where "..."`)."""
    return f'where="{declaration}"'


# A hint names an argument of the Python API; the command line's option for it, as the CLI says the hint.
_CLI_FORMS = ((re.compile(r'\bwhere="([^"\n]*)"'), r'--where "\1"'), (re.compile(r"\blayout='(\w+)'"), r"--layout \1"))


def for_cli(message: str) -> str:
    """A message as the command line says it: each Python argument a hint names (where="A: symmetric",
    layout='denominator') becomes its option (--where "A: symmetric", --layout denominator). The lines that quote
    the input under a caret (indented) are left as the user wrote them."""
    lines = message.split("\n")
    for index, line in enumerate(lines):
        if not line.startswith("  "):
            for pattern, option in _CLI_FORMS:
                line = pattern.sub(option, line)
            lines[index] = line
    return "\n".join(lines)


class MatcalcError(Exception):
    """Base of every error caused by the user's input (CLI exit code 2)."""


class ParseError(MatcalcError):
    """The text is not in the input language; the message shows the position and what was expected."""

    def __init__(self, message: str, text: str = "", position: int | None = None) -> None:
        self.text = text
        self.position = position
        super().__init__(message)


class ShapeError(MatcalcError):
    """Operands whose shapes do not fit; the message names the operands and their shapes."""


class ResultShapeError(ShapeError):
    """A well-formed expression whose shape is not the one required of it (a checked candidate's, say)."""


class DeclarationError(MatcalcError):
    """A `where` declaration that is malformed, unknown or conflicting."""


class UnsupportedError(MatcalcError):
    """A well-formed request the engine does not handle yet (e.g. a 3rd/4th-order tensor result)."""


class EvaluationError(MatcalcError):
    """Missing values or sizes that do not fit when evaluating numerically."""


class RewriteCycleError(Exception):
    """A simplification strategy revisited an expression: a bug in the rule table, never the user's fault."""
