"""Rewrite rules as data, and the strategy that applies them (kept apart from the rules).

A rule is named, one-directional (`lhs -> rhs`), and carries an example in the input language
on which it fires, so that every rule can be printed, tested and cited on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .errors import RewriteCycleError
from .ir import Expr

MAX_REWRITES = 5_000
REWRITES_PER_NODE = 10


@dataclass(frozen=True)
class RewriteRule:
    name: str
    statement: str  # "lhs -> rhs"
    apply: Callable[[Expr], Expr | None]  # the rewritten node, or None where the rule does not apply
    example: str  # an input on which the rule fires
    where: str = ""  # declarations the example needs

    def __str__(self) -> str:
        return f"{self.name}: {self.statement}"


def rule_table(table: list[RewriteRule]) -> Callable[..., Callable[[Callable[[Expr], Expr | None]], RewriteRule]]:
    """A decorator that appends a rule to `table`: @rule(name, statement, example, where=...)."""

    def rule(name: str, statement: str, example: str, where: str = "") -> Callable:
        def register(apply: Callable[[Expr], Expr | None]) -> RewriteRule:
            entry = RewriteRule(name, statement, apply, example, where)
            table.append(entry)
            return entry

        return register

    return rule


def apply_once(e: Expr, rule: RewriteRule) -> Expr | None:
    """The rule applied at the first node (parents first) where it changes something, or None."""
    out = rule.apply(e)
    if out is not None and out != e:
        return out
    for index, child in enumerate(e.children):
        new_child = apply_once(child, rule)
        if new_child is not None:
            children = (*e.children[:index], new_child, *e.children[index + 1 :])
            return e.rebuild(children)
    return None


def normalize(e: Expr, rules: list[RewriteRule], trace: list[str] | None = None,
              max_rewrites: int | None = None) -> Expr:
    """Innermost strategy to a fixpoint: children first, then the first rule that fires, again.

    Memoised on structure. Revisiting an expression still being normalised is a cycle, and more
    than `max_rewrites` rewrites is a runaway: both raise RewriteCycleError instead of hanging.
    The default cap grows with the expression (MAX_REWRITES, plus REWRITES_PER_NODE per node),
    so that a long input is not taken for a runaway.
    """
    e, tree_size = _shared(e)
    if max_rewrites is None:
        max_rewrites = MAX_REWRITES + REWRITES_PER_NODE * tree_size
    memo: dict[Expr, Expr] = {}
    in_progress: set[Expr] = set()
    count = 0

    def norm(node: Expr) -> Expr:
        nonlocal count
        done = memo.get(node)
        if done is not None:
            return done
        if node in in_progress:
            raise RewriteCycleError(f"the rewrite rules cycle on {node}")
        in_progress.add(node)
        current = node
        if current.children:
            children = tuple(norm(child) for child in current.children)
            if children != current.children:
                current = current.rebuild(children)
        result = current
        for rule in rules:
            out = rule.apply(current)
            if out is not None and out != current:
                count += 1
                if count > max_rewrites:
                    raise RewriteCycleError(f"more than {max_rewrites} rewrites: the rules do not settle on {node}")
                if trace is not None:
                    trace.append(rule.name)
                result = norm(out) if out not in in_progress else _cycle(out)
                break
        in_progress.discard(node)
        memo[node] = result
        memo[result] = result
        return result

    return norm(e)


def _cycle(e: Expr) -> Expr:
    raise RewriteCycleError(f"the rewrite rules cycle on {e}")


def _shared(e: Expr) -> tuple[Expr, int]:
    """e with its equal subtrees made one object, and its size as a tree (what walk(e) would count).

    Structural equality compares two distinct but equal trees node by node. A differential
    repeats its factors in every term of a product rule, often as distinct copies (a ./ a ./ ...
    parses each a anew), so every memo lookup below would cost the size of a subtree and the
    whole run the square of the input. Once equal subtrees are one object, equality stops at
    `is` one level down. One pass over the distinct nodes, without recursion; the nodes are
    rebuilt field by field, not through the smart constructors, so that the structure is kept.
    """
    canonical: dict[int, Expr] = {}  # id of a node of e (all alive as long as e) -> its shared copy
    size: dict[int, int] = {}
    table: dict[Expr, Expr] = {}
    stack: list[tuple[Expr, bool]] = [(e, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in canonical:
            continue
        if not children_done:
            stack.append((node, True))
            stack.extend((child, False) for child in node.children if id(child) not in canonical)
            continue
        children = node.children
        size[id(node)] = 1 + sum(size[id(child)] for child in children)
        copy = node
        if any(canonical[id(child)] is not child for child in children):
            copy = type(node)(*[_with_shared(getattr(node, name), canonical) for name in node._field_names])
        canonical[id(node)] = table.setdefault(copy, copy)  # children shared: this compares one level only
    return canonical[id(e)], size[id(e)]


def _with_shared(value: object, canonical: dict[int, Expr]) -> object:
    """A field's value with each child replaced by its shared copy."""
    if isinstance(value, Expr):
        return canonical.get(id(value), value)
    if isinstance(value, tuple):
        return tuple(canonical.get(id(item), item) for item in value)
    return value
