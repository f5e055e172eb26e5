"""The one rule mechanism: every table of the engine (simplification, stable forms, differentials, adjoints,
vec) is a RuleSet of Rules.

A rule is a name, its statement (`lhs -> rhs`, what `matcalc rules` prints), the heads it applies to, an
optional guard, a builder, and an example on which it fires. What the builder is given depends on the table
(a rewrite rule's builder takes the node and returns its rewrite or None; a differential rule's takes the
node and its children's differentials), but finding the rules that apply to a node is one mechanism for
all: a RuleSet is indexed by head, so a node is offered only the rules written for its kind, in table
order. The strategies that apply rules (innermost to a fixpoint, first match, reverse accumulation) live
apart from the rules, in strategy.py and the readers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..core.ir import Expr, Func

# A head: a node type (a rule for it applies to its subclasses too), or a function's name (a rule for it
# applies to calls of that function).
Head = type | str


@dataclass(frozen=True)
class Rule:
    name: str
    statement: str  # "lhs -> rhs", as `matcalc rules` prints it
    heads: tuple[Head, ...]  # the kinds of node it applies to; () for any node
    build: Callable[..., Any]  # the table says what it is given and what it returns
    example: Any = ""  # an input on which the rule fires (its form is the table's)
    where: str = ""  # declarations the example needs
    guard: Callable[[Expr], bool] | None = None  # a further condition on the node, beyond its head

    def __str__(self) -> str:
        return f"{self.name}: {self.statement}"

    def matches_head(self, node: Expr) -> bool:
        return not self.heads or any(_head_matches(head, node) for head in self.heads)

    def applies(self, node: Expr) -> bool:
        """Whether the rule is written for this node: its head, then its guard."""
        return self.matches_head(node) and (self.guard is None or self.guard(node))

    def apply(self, node: Expr) -> Any:
        """The builder on the node alone (a rewrite rule's: the rewrite, or None), where the rule applies."""
        return self.build(node) if self.applies(node) else None


def _head_matches(head: Head, node: Expr) -> bool:
    if isinstance(head, str):
        return isinstance(node, Func) and node.name == head
    return isinstance(node, head)


class RuleSet:
    """An ordered table of rules, indexed by head: `for_node(e)` is the rules whose head fits e, in order.

    Tables compose with `+` (the rules of the first, then those of the second), and a table grows by its
    `rule` decorator. The index is built lazily per (node type, function name) and dropped when the table grows.
    """

    def __init__(self, title: str, rules: Iterable[Rule] = ()) -> None:
        self.title = title
        self._rules: list[Rule] = list(rules)
        self._index: dict[tuple[type, str | None], tuple[Rule, ...]] = {}

    def add(self, rule: Rule) -> Rule:
        if any(existing.name == rule.name for existing in self._rules):
            raise ValueError(f"the table {self.title!r} has a rule named {rule.name!r} already")
        self._rules.append(rule)
        self._index.clear()
        return rule

    def rule(self, name: str, statement: str, example: Any = "", where: str = "", *,
             on: tuple[Head, ...] = (), guard: Callable[[Expr], bool] | None = None,
             ) -> Callable[[Callable[..., Any]], Rule]:
        """A decorator: the function below becomes the builder of a new rule of this table."""

        def register(build: Callable[..., Any]) -> Rule:
            return self.add(Rule(name, statement, on, build, example, where, guard))

        return register

    def for_node(self, node: Expr) -> tuple[Rule, ...]:
        """The rules whose head fits the node (their guards not yet asked), in table order."""
        key = (type(node), node.name if isinstance(node, Func) else None)
        found = self._index.get(key)
        if found is None:
            found = self._index[key] = tuple(rule for rule in self._rules if rule.matches_head(node))
        return found

    def first(self, node: Expr) -> Rule | None:
        """The first rule that applies to the node (head and guard), or None."""
        for rule in self.for_node(node):
            if rule.guard is None or rule.guard(node):
                return rule
        return None

    def first_result(self, node: Expr, *given: Any) -> tuple[Rule, Any] | None:
        """(rule, result) for the first rule whose head and guard fit the node and whose builder, given the node and
        `given`, returns something (not None): the strategy of the tables whose builders may decline."""
        for rule in self.for_node(node):
            if rule.guard is None or rule.guard(node):
                result = rule.build(node, *given)
                if result is not None:
                    return rule, result
        return None

    def named(self, name: str) -> Rule:
        for rule in self._rules:
            if rule.name == name:
                return rule
        raise KeyError(name)

    def __add__(self, other: RuleSet) -> RuleSet:
        return RuleSet(f"{self.title} + {other.title}", [*self._rules, *other._rules])

    def __iter__(self) -> Iterator[Rule]:
        return iter(self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    def __getitem__(self, index: int) -> Rule:
        return self._rules[index]

    def __repr__(self) -> str:
        return f"RuleSet({self.title!r}, {len(self._rules)} rules)"


def arg_is(*kinds: Head) -> Callable[[Expr], bool]:
    """A guard: the argument of the node (a transpose, a call) is of one of these kinds, each a node type or a
    function's name, as a rule's heads are: `on=(Transpose,), guard=arg_is(MatMul)` is (A B)^T."""
    types = tuple(kind for kind in kinds if isinstance(kind, type))
    names = frozenset(kind for kind in kinds if isinstance(kind, str))
    if not names:
        return lambda e: isinstance(e.arg, types)
    return lambda e: isinstance(e.arg, types) or (isinstance(e.arg, Func) and e.arg.name in names)
