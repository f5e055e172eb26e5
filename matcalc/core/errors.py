"""The error hierarchy: every user-facing failure is a MatcalcError subclass with a clear message."""

from __future__ import annotations

MESSAGE_TEXT = 60  # expressions quoted in messages are abbreviated beyond this many characters


def abbreviate(text: str) -> str:
    """The text of an expression for a message: its two ends around '…' when long, so messages stay short
    (and building them stays linear in a long input)."""
    if len(text) <= MESSAGE_TEXT:
        return text
    half = MESSAGE_TEXT // 2 - 2
    return f"{text[:half]} … {text[-half:]}"


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
