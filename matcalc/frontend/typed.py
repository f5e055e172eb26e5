"""The typed syntax tree: what typecheck infers and lower turns into the IR.

Its own module so that the inference (typecheck) and the lowering (lower) share it without importing each
other: typecheck -> lower -> typed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# ---------------------------------------------------------------- dimensions


class DimVar:
    """An unknown dimension; `name` is set when a declaration names it."""

    __slots__ = ("name", "order")

    def __init__(self, order: int, name: str | None = None) -> None:
        self.order = order
        self.name = name


class DimProd:
    """A product of dimensions: the rows of vec(X), of A ⊗ B, the size of commutation(m, n).

    Its factors are kept as given and resolved only when compared or named: a factor may be bound later (the
    product of two unknowns becomes 6 once they are 2 and 3). Compared by identity, as DimVar is.
    """

    __slots__ = ("factors",)

    def __init__(self, factors: tuple[DimTerm, ...]) -> None:
        self.factors = factors


DimTerm = DimVar | int | DimProd


# ---------------------------------------------------------------- typed syntax


@dataclass(eq=False)  # compared by identity: a generated __eq__ would recurse over the depth
class Typed:
    """A syntax node with its inferred (not yet named) shape and source text."""

    op: str
    shape: tuple[DimTerm, DimTerm]
    text: str
    children: list[Typed] = field(default_factory=list)
    payload: object = None

    @property
    def is_scalar(self) -> bool:
        return self.shape == (1, 1)


@dataclass
class SymbolInfo:
    kind: str
    shape: tuple[DimTerm, DimTerm]

