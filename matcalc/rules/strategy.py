"""The strategies that apply rewrite rules (kept apart from the rules, which are data: rule.py).

A rewrite rule's builder takes a node and returns its rewrite, or None where the rule does not apply.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..core.errors import RewriteCycleError
from ..core.ir import Expr, walk
from .rule import Rule, RuleSet

MAX_REWRITES = 5_000
REWRITES_PER_NODE = 10
_ENTER, _CHILDREN, _REWRITTEN = range(3)  # the states of a frame of `normalize`


def apply_once(e: Expr, rule: Rule) -> Expr | None:
    """The rule applied at the first node (parents first) where it changes something, or None.

    A preorder search with an explicit stack: each entry keeps its parent's entry and its index
    there, so that the path is rebuilt bottom-up once the rule fires. A node met again has had its
    whole subtree searched already (without success): it is not searched twice.
    """
    seen: set[int] = set()
    stack: list[tuple[Expr, int, int]] = [(e, -1, -1)]  # (node, parent's place in `path`, index in the parent)
    path: list[tuple[Expr, int, int]] = []
    while stack:
        entry = stack.pop()
        node = entry[0]
        if id(node) in seen:
            continue
        seen.add(id(node))
        out = rule.apply(node)
        if out is not None and out != node:
            _, parent, index = entry
            while parent >= 0:
                above, parent_of_above, index_of_above = path[parent]
                children = above.children
                out = above.rebuild((*children[:index], out, *children[index + 1 :]))
                parent, index = parent_of_above, index_of_above
            return out
        path.append(entry)
        place = len(path) - 1
        children = node.children
        stack.extend((children[i], place, i) for i in range(len(children) - 1, -1, -1))
    return None


def normalize(e: Expr, rules: RuleSet | Iterable[Rule], trace: list[str] | None = None,
              max_rewrites: int | None = None) -> Expr:
    """Innermost strategy to a fixpoint: children first, then the first rule that fires, again.

    Memoised on structure (nodes are interned: equal subtrees are one object). Revisiting an
    expression still being normalised is a cycle, and more than `max_rewrites` rewrites is a
    runaway: both raise RewriteCycleError instead of hanging. The default cap grows with the
    expression (MAX_REWRITES, plus REWRITES_PER_NODE per distinct node: the size of a DAG, not of
    its tree, which can be exponential), so that a long input is not taken for a runaway.

    No recursion: an explicit stack of frames, each a node in one of three states, does what the
    recursive strategy did, in the same order (so the trace and the result are the same).
    """
    if max_rewrites is None:
        max_rewrites = MAX_REWRITES + REWRITES_PER_NODE * sum(1 for _ in walk(e))
    # memo and in_progress go by id (an Expr's __hash__ and __eq__ are Python calls); `kept` holds every
    # node whose id is a key, so that no id is reused while they are
    memo: dict[int, Expr] = {}
    kept: list[Expr] = []
    in_progress: set[int] = set()
    count = 0
    table = rules if isinstance(rules, RuleSet) else RuleSet("rules", rules)
    # a frame: (node, state, current); state _ENTER: not started; _CHILDREN: its children were pushed,
    # `current` is the node; _REWRITTEN: a rule rewrote `node` to `current`, which was pushed
    stack: list[tuple[Expr, int, Expr]] = [(e, _ENTER, e)]
    while stack:
        node, state, current = stack.pop()
        if state == _ENTER:
            if id(node) in memo:
                continue
            if id(node) in in_progress:
                raise RewriteCycleError(f"the rewrite rules cycle on {node}")
            in_progress.add(id(node))
            children = node.children
            if children:
                stack.append((node, _CHILDREN, node))
                stack.extend((child, _ENTER, child) for child in reversed(children) if id(child) not in memo)
                continue
        elif state == _CHILDREN:
            children = node.children
            normal = tuple(memo[id(child)] for child in children)
            if any(new is not old for new, old in zip(normal, children, strict=True)):
                current = node.rebuild(normal)
        else:  # _REWRITTEN: normalising `current` is done
            result = memo[id(current)]
            in_progress.discard(id(node))
            memo[id(node)] = memo[id(result)] = result
            kept.append(node)
            continue
        for rule in table.for_node(current):
            out = rule.build(current) if rule.guard is None or rule.guard(current) else None
            if out is not None and out is not current:
                count += 1
                if count > max_rewrites:
                    raise RewriteCycleError(f"more than {max_rewrites} rewrites: the rules do not settle on {node}")
                if trace is not None:
                    trace.append(rule.name)
                if id(out) in in_progress:
                    raise RewriteCycleError(f"the rewrite rules cycle on {out}")
                stack.append((node, _REWRITTEN, out))
                stack.append((out, _ENTER, out))
                break
        else:
            in_progress.discard(id(node))
            memo[id(node)] = memo[id(current)] = current
            kept.append(node)
    return memo[id(e)]

